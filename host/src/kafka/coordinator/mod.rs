//! The [`Coordinator`]: the instance's assigned partitions, its transaction and its
//! checkpoint store, and the epoch protocol over them. Committing an epoch is in [`epoch`],
//! what the group's rebalances do in [`rebalance`], the rewind to the committed state in
//! [`recovery`]; the decisions over the store are in `checkpoint::protocol`, the producer's
//! lifecycle in [`super::transaction`]. The driver and the rebalance callbacks call it, one
//! at a time.

mod epoch;
mod rebalance;
mod recovery;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::config::KafkaSourceConfig;
use super::task::{PartitionKey, PartitionTask};
use super::transaction::EpochTransaction;
use crate::checkpoint::{CheckpointStore, safe_name};
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
    /// When the running epoch started: when the one before it began to commit (epochs
    /// follow each other every interval, start to start, so a commit's stall does not
    /// lengthen the next epoch), or when its transaction opened.
    epoch_started: Instant,
    /// When the last commit ended.
    committed_at: Instant,
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
            committed_at: Instant::now(),
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

    /// Whether an epoch is due: `interval` after the last one started, and at least a
    /// quarter of it after the last commit ended, so that commits slower than the interval
    /// still leave time to process between them.
    pub fn checkpoint_due(&self, interval: Duration) -> bool {
        self.epoch_started.elapsed() >= interval && self.committed_at.elapsed() >= interval / 4
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

    /// Runs every task once: side by side on the workers, when there are several of both. A
    /// failure fails the epoch (a failed batch may have left output in the sinks).
    pub fn run_tasks<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        self.run_each_task()
            .inspect_err(|e| self.fail_epoch(consumer, e))
    }

    fn run_each_task(&mut self) -> Result<()> {
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
    /// from that checkpoint with sinks and routes from `config`. Should the commit fail (the
    /// epoch fails), the rewind that follows rebuilds with `config` too. A config whose
    /// registry columns cannot be had is refused, and the running one stays.
    pub fn reconfigure<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        config: PipelineConfig,
    ) {
        if let Err(e) = self.factory.set_config(config) {
            tracing::error!(error = %e, "Config reload refused; the running config stays.");
            return;
        }
        if self.checkpoint(consumer).is_err() {
            return;
        }
        self.start_recovery(consumer, &Error::Commit("the sinks changed".into()));
        if let Err(e) = self.recover(consumer) {
            tracing::warn!(error = %e, "Rebuilding with the new sinks failed; retrying.");
        }
    }

    /// Bounded runs: closes every window and commits the final epoch; a failure fails the
    /// epoch.
    pub fn finish<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let finished: Result<()> = self.tasks.values_mut().try_for_each(PartitionTask::finish);
        finished.inspect_err(|e| self.fail_epoch(consumer, e))?;
        self.checkpoint(consumer)
    }
}
