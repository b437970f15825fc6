//! The [`Coordinator`]: the instance's assigned partitions, its transaction and its
//! checkpoint store, and the epoch protocol over them: checkpoint (each partition stages its
//! output and writes its checkpoint, the offsets commit with the transaction, then the output
//! is published), restore on assignment, and rewind after a failed epoch. The decisions over
//! the store are in `checkpoint::protocol`; the producer's lifecycle in
//! [`super::transaction`]. The driver and the rebalance callbacks call it, one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::config::{KafkaSourceConfig, StartPosition};
use super::restore::{BrokerCommit, restore_task};
use super::task::{Epoch, PartitionKey, PartitionTask, Prepared};
use super::transaction::EpochTransaction;
use crate::checkpoint::protocol::mark_committed;
use crate::checkpoint::{CheckpointStore, partition_prefix, safe_name};
use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::flow::SourceRecord;
use crate::pipeline::PipelineStats;
use crate::pipeline::build::PipelineFactory;
use crate::sinks::kafka::OutputProducer;

/// Counts of the checkpoint protocol.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CheckpointCounts {
    /// Epochs committed.
    pub committed: u64,
    /// Epochs that failed and were rewound.
    pub failed: u64,
    /// Recoveries (rewinds to the committed state) that succeeded.
    pub recoveries: u64,
}

/// The instance's partitions and epoch protocol.
pub struct Coordinator {
    factory: PipelineFactory,
    source: KafkaSourceConfig,
    incremental: bool,
    timeout: Duration,
    transaction: EpochTransaction,
    store: CheckpointStore,
    assigned: BTreeSet<PartitionKey>,
    tasks: BTreeMap<PartitionKey, PartitionTask>,
    retired: PipelineStats,
    recovering: bool,
    assigned_once: bool,
    epoch_started: Instant,
    epoch_seq: u64,
    counts: CheckpointCounts,
    /// Threads that run the partitions' batches side by side (none: the driver runs them).
    workers: Option<rayon::ThreadPool>,
}

impl Coordinator {
    /// Opens the checkpoint store and the producer (with its first transaction).
    pub fn new(
        config: &PipelineConfig,
        source: &KafkaSourceConfig,
        factory: PipelineFactory,
        producer_properties: BTreeMap<String, String>,
        instance_id: &str,
    ) -> Result<Self> {
        let store = CheckpointStore::open(&config.checkpoint)?;
        let workers = match config.runtime.workers() {
            1 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("weir-worker-{i}"))
                    .build()
                    .map_err(|e| Error::Commit(format!("cannot start {n} workers: {e}")))?,
            ),
        };
        let transaction = EpochTransaction::new(
            &source.brokers,
            producer_properties,
            config.checkpoint.delivery,
            format!("weir-{}-{}", safe_name(&source.group), instance_id),
            config.checkpoint.timeout.0,
        );
        let mut coordinator = Coordinator {
            factory,
            source: source.clone(),
            incremental: config.checkpoint.incremental,
            timeout: config.checkpoint.timeout.0,
            transaction,
            store,
            assigned: BTreeSet::new(),
            tasks: BTreeMap::new(),
            retired: PipelineStats::default(),
            recovering: false,
            assigned_once: false,
            epoch_started: Instant::now(),
            epoch_seq: 0,
            counts: CheckpointCounts::default(),
            workers,
        };
        coordinator.open_transaction()?;
        Ok(coordinator)
    }

    /// Opens the epoch's transaction if none is open (the epoch starts now if so).
    fn open_transaction(&mut self) -> Result<Arc<OutputProducer>> {
        let (producer, opened) = self.transaction.open()?;
        if opened {
            self.epoch_started = Instant::now();
        }
        Ok(producer)
    }

    /// Whether an epoch has been open for `interval`.
    pub fn checkpoint_due(&self, interval: Duration) -> bool {
        self.epoch_started.elapsed() >= interval
    }

    /// Whether a failed epoch still has to be rewound.
    pub fn recovering(&self) -> bool {
        self.recovering
    }

    /// Protocol counts.
    pub fn counts(&self) -> CheckpointCounts {
        self.counts
    }

    /// Ready: partitions were assigned (possibly none) and restored, and no rewind is due.
    pub fn ready(&self) -> bool {
        self.assigned_once && !self.recovering
    }

    /// Sets every partition's gauges (watermark lag, state size).
    pub fn publish_gauges(&mut self) {
        for task in self.tasks.values_mut() {
            let (topic, partition) = (task.topic().clone(), task.partition());
            task.pipeline().publish_gauges(&topic, partition);
        }
    }

    /// Each sink's circuit breaker state.
    pub fn breakers(&self) -> Vec<(String, crate::sinks::resilience::BreakerState)> {
        self.factory.breakers().states()
    }

    /// Counts of every partition this instance has run, including ones given up.
    pub fn stats(&self) -> PipelineStats {
        let mut stats = self.retired.clone();
        for task in self.tasks.values() {
            stats.add(&task.stats());
        }
        stats
    }

    /// Hands a record to its partition's task; records of partitions not (or no longer)
    /// assigned, or polled while a failed epoch is being rewound, are dropped: they are read
    /// again from the committed offset.
    pub fn dispatch(
        &mut self,
        topic: &str,
        partition: i32,
        make: impl FnOnce(Arc<str>) -> SourceRecord,
    ) {
        if self.recovering {
            return;
        }
        // A handful of partitions: a scan, without allocating a key per record.
        if let Some(task) = self.tasks.values_mut().find(|t| t.is(topic, partition)) {
            let record = make(task.topic().clone());
            task.enqueue(record);
        }
    }

    /// Runs every task once: side by side on the workers, when there are several of both.
    pub fn run_tasks(&mut self) -> Result<()> {
        use rayon::prelude::*;
        let batch_size = self.source.batch_size;
        match &self.workers {
            Some(pool) if self.tasks.len() > 1 => {
                let mut tasks: Vec<&mut PartitionTask> = self.tasks.values_mut().collect();
                pool.install(|| tasks.par_iter_mut().try_for_each(|t| t.run(batch_size)))
            }
            _ => {
                for task in self.tasks.values_mut() {
                    task.run(batch_size)?;
                }
                Ok(())
            }
        }
    }

    /// Threads running partitions.
    pub fn workers(&self) -> usize {
        self.workers
            .as_ref()
            .map_or(1, rayon::ThreadPool::current_num_threads)
    }

    /// Pauses partitions with too much waiting and resumes drained ones.
    pub fn update_pauses<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let mut pause = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        for task in self.tasks.values_mut() {
            let list = match task.pause_change(self.source.max_buffered, self.source.batch_size) {
                Some(true) => &mut pause,
                Some(false) => &mut resume,
                None => continue,
            };
            list.add_partition(task.topic(), task.partition());
        }
        if pause.count() > 0
            && let Err(e) = consumer.pause(&pause)
        {
            tracing::warn!(error = %e, "Pausing partitions failed.");
        }
        if resume.count() > 0
            && let Err(e) = consumer.resume(&resume)
        {
            tracing::warn!(error = %e, "Resuming partitions failed.");
        }
    }

    /// Partitions were assigned: restore each from its committed checkpoint.
    pub fn assign<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        let keys: Vec<PartitionKey> = partitions
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        self.assigned.extend(keys.iter().cloned());
        if self.recovering {
            return;
        }
        match self.restore(consumer, &keys, false) {
            // The consumer would start at the broker's offset, not the checkpoint's: the
            // driver's rewind seeks every partition to its checkpoint and resumes them.
            Ok(true) => self.start_recovery(
                consumer,
                &Error::Commit("an assigned partition must be read from its checkpoint".into()),
            ),
            Ok(false) => {
                // A partition paused by an earlier failed epoch stays paused across a lost
                // and regained assignment; these are ours afresh.
                if let Err(e) = consumer.resume(partitions) {
                    tracing::warn!(error = %e, "Resuming assigned partitions failed.");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Restoring assigned partitions failed; will retry.");
                self.start_recovery(consumer, &e);
                return;
            }
        }
        self.assigned_once = true;
        tracing::info!(partitions = ?keys, "Partitions assigned.");
    }

    /// Partitions are being revoked: commit the epoch first, then give them up.
    pub fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        if consumer.assignment_lost() {
            // What the epoch produced must not commit with a later one: the partitions' new
            // owners redo it. A rewind under way has aborted it already, and nothing runs
            // until the rewind is done.
            tracing::warn!("Assignment lost; its uncommitted epoch is abandoned.");
            if !self.recovering {
                self.fail_epoch(
                    consumer,
                    &Error::Commit("the group dropped this member (assignment lost)".into()),
                );
            }
        } else if let Err(e) = self.checkpoint(consumer) {
            self.fail_epoch(consumer, &e);
        }
        for elem in partitions.elements() {
            let key: PartitionKey = (Arc::from(elem.topic()), elem.partition());
            self.assigned.remove(&key);
            if let Some(task) = self.tasks.remove(&key) {
                self.retired.add(&task.stats());
            }
        }
        tracing::info!(count = partitions.count(), "Partitions revoked.");
    }

    /// The consumer is gone for good: abort the epoch and drop every partition without
    /// committing; a new consumer gets partitions (and restores them) through the group.
    pub fn abandon_partitions<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        reason: &str,
    ) {
        self.fail_epoch(consumer, &Error::Commit(reason.to_string()));
        self.retire_tasks();
        self.assigned.clear();
    }

    /// Drops every partition's task, keeping its counts in the totals.
    fn retire_tasks(&mut self) {
        for task in std::mem::take(&mut self.tasks).into_values() {
            self.retired.add(&task.stats());
        }
    }

    /// Builds the tasks of `keys` from their committed checkpoints; with `seek`, also moves
    /// the consumer to the checkpoints' offsets. Without it, returns whether the consumer
    /// must still be moved: the broker's committed offset, where it starts reading, is not
    /// the checkpoint's.
    fn restore<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        keys: &[PartitionKey],
        seek: bool,
    ) -> Result<bool> {
        if keys.is_empty() {
            return Ok(false);
        }
        let producer = self.open_transaction()?;
        let mut query = TopicPartitionList::new();
        for (topic, partition) in keys {
            query.add_partition(topic, *partition);
        }
        let committed = consumer.committed_offsets(query, self.timeout)?;
        let mut positions = TopicPartitionList::new();
        let mut moved = false;
        for elem in committed.elements() {
            let topic: Arc<str> = Arc::from(elem.topic());
            let partition = elem.partition();
            let broker_offset = match elem.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let committed = BrokerCommit {
                offset: broker_offset,
                metadata: elem.metadata(),
            };
            let (task, offset) = restore_task(
                &self.factory,
                &self.store,
                &self.source.group,
                (topic.clone(), partition),
                committed,
                &producer,
            )?;
            moved |= offset != broker_offset;
            let position = match offset {
                Some(o) => Offset::Offset(o),
                None if self.source.start == StartPosition::Latest => Offset::End,
                None => Offset::Beginning,
            };
            positions.add_partition_offset(&topic, partition, position)?;
            if let Some(old) = self.tasks.insert((topic, partition), task) {
                self.retired.add(&old.stats());
            }
        }
        if seek {
            consumer.seek_partitions(positions, self.timeout)?;
            return Ok(false);
        }
        Ok(moved)
    }

    /// Commits an epoch: stages every changed partition's output, writes its checkpoint,
    /// commits the offsets (naming the checkpoints) with the transaction, then publishes.
    pub fn checkpoint<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        if self.recovering {
            return Ok(());
        }
        let started = Instant::now();
        let mut changed = false;
        for task in self.tasks.values_mut() {
            changed |= task.wants_commit();
        }
        if !changed {
            self.epoch_started = started;
            return Ok(());
        }
        crate::failpoint::hit("epoch-start");
        self.epoch_seq += 1;
        let name = format!(
            "{}-{:06}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%3f"),
            self.epoch_seq
        );
        let epoch = Epoch {
            name: &name,
            group: &self.source.group,
            incremental: self.incremental,
            store: &self.store,
        };
        // Each changed partition stages its output and writes its checkpoint: side by side on
        // the workers, as their Parquet parts are encoded here.
        let prepared: Vec<Result<Option<Prepared>>> = {
            use rayon::prelude::*;
            let mut tasks: Vec<&mut PartitionTask> = self.tasks.values_mut().collect();
            match &self.workers {
                Some(pool) if tasks.len() > 1 => pool.install(|| {
                    tasks
                        .par_iter_mut()
                        .map(|task| task.prepare(&epoch))
                        .collect()
                }),
                _ => tasks.iter_mut().map(|task| task.prepare(&epoch)).collect(),
            }
        };
        let mut offsets = TopicPartitionList::new();
        let mut staged = Vec::new();
        for prepared in prepared {
            let Some(p) = prepared? else { continue };
            let (topic, partition) = (&p.key.0, p.key.1);
            offsets.add_partition_offset(topic, partition, Offset::Offset(p.next))?;
            if let Some(mut elem) = offsets.find_partition(topic, partition) {
                elem.set_metadata(p.metadata.clone());
            }
            staged.push(p);
        }
        self.transaction.commit(consumer, &offsets)?;
        self.counts.committed += 1;
        crate::failpoint::hit("committed");
        // The markers first: a broker without offset metadata leaves them the only record of
        // which checkpoint committed, so nothing is published before they are written.
        for p in &staged {
            let prefix = partition_prefix(&self.source.group, &p.key.0, p.key.1);
            mark_committed(&self.store, &prefix, &p.chain)?;
        }
        for p in staged {
            if let Some(task) = self.tasks.get_mut(&p.key) {
                for stale in task.committed(p.chain, &p.sinks)? {
                    self.store.delete(&stale)?;
                }
            }
        }
        self.open_transaction()?;
        metrics::histogram!("weir_checkpoint_duration_seconds").record(started.elapsed());
        metrics::counter!("weir_checkpoint_epochs_total").increment(1);
        tracing::debug!(epoch = name, partitions = offsets.count(), took = ?started.elapsed(), "Epoch committed.");
        Ok(())
    }

    /// An epoch failed: abort its transaction and rewind every partition to its committed
    /// checkpoint (at the next [`Self::recover`]).
    pub fn fail_epoch<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, error: &Error) {
        self.counts.failed += 1;
        metrics::counter!("weir_checkpoint_failures_total").increment(1);
        tracing::warn!(%error, "Epoch failed; rewinding to the last committed checkpoint.");
        self.start_recovery(consumer, error);
    }

    /// Pauses every partition until [`Self::recover`] rebuilds them, and aborts the open
    /// transaction (because of `error`): it holds what the rebuilt tasks had produced in this
    /// epoch, which they produce again.
    fn start_recovery<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, error: &Error) {
        self.transaction.abort(error);
        self.recovering = true;
        if let Ok(assignment) = consumer.assignment()
            && let Err(e) = consumer.pause(&assignment)
        {
            tracing::warn!(error = %e, "Pausing partitions failed.");
        }
    }

    /// Rebuilds every assigned partition from its committed checkpoint and seeks back to the
    /// committed offset; partitions resume once this succeeds.
    pub fn recover<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        // Rebuilding partitions the group gave away would redo and clean up their sinks under
        // the new owner: wait for the rebalance to say what is ours.
        if consumer.assignment_lost() {
            return Err(Error::Commit(
                "assignment lost; waiting for the rebalance before recovering".into(),
            ));
        }
        let keys: Vec<PartitionKey> = self.assigned.iter().cloned().collect();
        self.retire_tasks();
        self.restore(consumer, &keys, true)?;
        let assignment = consumer.assignment()?;
        consumer.resume(&assignment)?;
        self.recovering = false;
        self.counts.recoveries += 1;
        metrics::counter!("weir_checkpoint_recoveries_total").increment(1);
        tracing::info!(
            partitions = keys.len(),
            "Recovered from the last committed checkpoint."
        );
        Ok(())
    }

    /// Bounded runs: whether every assigned partition has been read to its end, the end
    /// being the partition's offsets when a task first asks (fetched once per task).
    pub fn at_end<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<bool> {
        if self.tasks.is_empty() || self.recovering {
            return Ok(false);
        }
        for task in self.tasks.values_mut() {
            let (topic, partition) = (task.topic().clone(), task.partition());
            let fetch = || Ok(consumer.fetch_watermarks(&topic, partition, self.timeout)?);
            if !task.at_end(fetch)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A config reload changed the sinks: commits the epoch, then rebuilds every partition
    /// from that checkpoint with sinks and routes from `config`. Should the commit fail, the
    /// rewind that follows rebuilds with `config` too.
    pub fn reconfigure<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        config: PipelineConfig,
    ) -> Result<()> {
        self.factory.set_config(config);
        self.checkpoint(consumer)?;
        self.start_recovery(consumer, &Error::Commit("the sinks changed".into()));
        if let Err(e) = self.recover(consumer) {
            tracing::warn!(error = %e, "Rebuilding with the new sinks failed; retrying.");
        }
        Ok(())
    }

    /// Bounded runs: closes every window and commits the final epoch.
    pub fn finish<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        for task in self.tasks.values_mut() {
            task.finish()?;
        }
        self.checkpoint(consumer)
    }
}
