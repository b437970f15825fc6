//! Committing an epoch: each changed partition stages its output and writes its checkpoint,
//! the offsets (naming the checkpoints) commit with the transaction, then the output is
//! published and what the new checkpoints replace is deleted.

use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::Coordinator;
use crate::checkpoint::partition_prefix;
use crate::checkpoint::protocol::mark_committed;
use crate::error::Result;
use crate::kafka::task::{Epoch, PartitionTask, Prepared};
use crate::telemetry::spans;

impl Coordinator {
    /// Commits an epoch: stages every changed partition's output, writes its checkpoint,
    /// commits the offsets (naming the checkpoints) with the transaction, then publishes. A
    /// failure fails the epoch here: the sinks may have given up part of it (a part whose
    /// upload failed is gone from the sink), so nothing may commit again before the rewind,
    /// whoever calls next (the revocation that follows a failed final commit, say).
    pub fn checkpoint<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        if self.recovering {
            return Ok(());
        }
        self.commit_epoch(consumer)
            .inspect_err(|e| self.fail_epoch(consumer, e))
    }

    fn commit_epoch<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
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
        let span = spans::epoch_commit(&name);
        let partitions = self
            .commit_changed(consumer, &name, started)
            .inspect_err(|e| span.fail(e))?;
        span.set("weir.partitions", partitions as i64);
        Ok(())
    }

    /// Commits the epoch named `name`, which has changes; returns how many partitions it
    /// committed.
    fn commit_changed<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        name: &str,
        started: Instant,
    ) -> Result<usize> {
        let epoch = Epoch {
            name,
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
        let mut phases = Phases::new(started);
        phases.ended("prepare");
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
        phases.ended("commit");
        self.counts.committed += 1;
        crate::failpoint::hit("committed");
        // The markers first: a broker without offset metadata leaves them the only record of
        // which checkpoint committed, so nothing is published before they are written.
        for p in &staged {
            let prefix = partition_prefix(&self.source.group, &p.key.0, p.key.1);
            mark_committed(&self.store, &prefix, &p.chain)?;
        }
        phases.ended("markers");
        for p in staged {
            if let Some(task) = self.tasks.get_mut(&p.key) {
                for stale in task.committed(p.chain, &p.sinks)? {
                    self.store.delete(&stale)?;
                }
            }
        }
        phases.ended("publish");
        self.open_transaction()?;
        // The next epoch is due an interval after this one started, not after it ended.
        (self.epoch_started, self.committed_at) = (started, Instant::now());
        metrics::histogram!("weir_checkpoint_duration_seconds").record(started.elapsed());
        metrics::counter!("weir_checkpoint_epochs_total").increment(1);
        metrics::gauge!("weir_checkpoint_last_commit_timestamp_seconds")
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        tracing::debug!(epoch = name, partitions = offsets.count(), took = ?started.elapsed(), "Epoch committed.");
        Ok(offsets.count())
    }
}

/// Times the phases of an epoch's commit, each from the end of the one before, into
/// `weir_checkpoint_phase_seconds{phase}`: `prepare` (stage the output, write the
/// checkpoints), `commit` (the offsets, with the transaction), `markers`, `publish` (the sinks
/// publish; what the new checkpoints replace is deleted).
struct Phases {
    last: Instant,
}

impl Phases {
    fn new(started: Instant) -> Self {
        Phases { last: started }
    }

    fn ended(&mut self, phase: &'static str) {
        let now = Instant::now();
        metrics::histogram!("weir_checkpoint_phase_seconds", "phase" => phase)
            .record(now - self.last);
        self.last = now;
    }
}
