//! [`PartitionTask`]: one assigned partition: its pipeline, the records waiting for it, the
//! next offset to process, the checkpoint its committed offset names, and its part of an
//! epoch (stage the output, write the checkpoint, publish once the epoch commits).

use std::sync::Arc;

use crate::checkpoint::protocol::{offset_metadata, save, superseded};
use crate::checkpoint::{
    CHECKPOINT_VERSION, CheckpointChain, CheckpointStore, PartitionCheckpoint, checkpoint_name,
    partition_prefix,
};
use crate::error::Result;
use crate::flow::SourceRecord;
use crate::pipeline::{PartitionPipeline, PipelineStats};
use crate::sinks::CommitRecords;

/// A partition: topic and number.
pub type PartitionKey = (Arc<str>, i32);

/// What an epoch's checkpoints share.
pub struct Epoch<'a> {
    /// The epoch's id, part of every checkpoint's name.
    pub name: &'a str,
    /// The consumer group (the checkpoints' top folder).
    pub group: &'a str,
    /// Whether a checkpoint may hold only the changes since the committed one.
    pub incremental: bool,
    /// Where checkpoints go.
    pub store: &'a CheckpointStore,
}

/// A partition's part of an epoch, staged and checkpointed, waiting for the commit.
pub struct Prepared {
    /// The partition.
    pub key: PartitionKey,
    /// The offset to commit.
    pub next: i64,
    /// The offset metadata naming the checkpoint.
    pub metadata: String,
    /// The chain the checkpoint ends, once committed.
    pub chain: CheckpointChain,
    /// Each sink's commit record, applied once the epoch commits.
    pub sinks: CommitRecords,
}

/// One assigned partition.
pub struct PartitionTask {
    topic: Arc<str>,
    partition: i32,
    pipeline: PartitionPipeline,
    queue: Vec<SourceRecord>,
    /// The offset after the last processed record; `None` before the first one when the
    /// group had no committed offset.
    next_offset: Option<i64>,
    /// The checkpoint named by the committed offset and those its state builds on.
    committed: Option<CheckpointChain>,
    /// Whether state or output changed since the last checkpoint.
    changed: bool,
    /// Whether the consumer has paused this partition.
    paused: bool,
    /// Bounded runs: the partition's low and high offsets, once fetched.
    end: Option<(i64, i64)>,
    /// Checkpoints of epochs that never committed, found when the task was restored: deleted
    /// after its next commit, which proves this instance still owns the partition (an
    /// instance the group dropped may restore too, and must not delete what its successor
    /// wrote and has not committed yet).
    leftovers: Vec<String>,
}

impl PartitionTask {
    /// A task over a built (and possibly restored) pipeline, with the `leftovers` its restore
    /// found.
    pub fn new(
        key: PartitionKey,
        pipeline: PartitionPipeline,
        next_offset: Option<i64>,
        committed: Option<CheckpointChain>,
        leftovers: Vec<String>,
    ) -> Self {
        PartitionTask {
            topic: key.0,
            partition: key.1,
            pipeline,
            queue: Vec::new(),
            next_offset,
            committed,
            changed: false,
            paused: false,
            end: None,
            leftovers,
        }
    }

    /// Source topic.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Source partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Whether this is the task of `topic` and `partition`.
    pub fn is(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && &*self.topic == topic
    }

    /// Queues a record; drops one below the next offset (re-delivered after a seek).
    pub fn enqueue(&mut self, record: SourceRecord) {
        if self
            .next_offset
            .is_some_and(|next| record.provenance.offset < next)
        {
            return;
        }
        self.queue.push(record);
    }

    /// Records waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Processes the waiting records in batches of `batch_size`, or lets an idle partition's
    /// watermark advance. A failed batch stays queued.
    pub fn run(&mut self, batch_size: usize) -> Result<()> {
        if self.queue.is_empty() {
            self.changed |= self.pipeline.on_idle()?;
            return Ok(());
        }
        while !self.queue.is_empty() {
            let take = self.queue.len().min(batch_size.max(1));
            self.pipeline.process(&self.queue[..take])?;
            if let Some(last) = self.queue.get(take - 1) {
                self.next_offset = Some(last.provenance.offset + 1);
            }
            self.queue.drain(..take);
            self.changed = true;
        }
        Ok(())
    }

    /// Whether the consumer should pause (`Some(true)`) or resume (`Some(false)`) the
    /// partition: paused past `max_buffered` waiting records, resumed below `batch_size`.
    pub fn pause_change(&mut self, max_buffered: usize, batch_size: usize) -> Option<bool> {
        let change = if !self.paused && self.queue.len() > max_buffered {
            Some(true)
        } else if self.paused && self.queue.len() < batch_size {
            Some(false)
        } else {
            None
        };
        if let Some(paused) = change {
            self.paused = paused;
        }
        change
    }

    /// Bounded runs: whether everything up to the partition's end has been processed, the
    /// end being what `fetch_end` (low and high offsets) says when first asked.
    pub fn at_end(&mut self, fetch_end: impl FnOnce() -> Result<(i64, i64)>) -> Result<bool> {
        if !self.queue.is_empty() {
            return Ok(false);
        }
        let (low, high) = match self.end {
            Some(end) => end,
            None => *self.end.insert(fetch_end()?),
        };
        Ok(self.next_offset.unwrap_or(low) >= high)
    }

    /// Whether the partition has anything to commit; asks the sinks too (a file due to roll).
    pub fn wants_commit(&mut self) -> bool {
        self.changed |= self.pipeline.wants_commit();
        self.changed
    }

    /// Bounded runs: closes every window and makes the next epoch finish every open file.
    pub fn finish(&mut self) -> Result<()> {
        self.pipeline.drain_windows()?;
        self.pipeline.finish_files();
        self.changed = true;
        Ok(())
    }

    /// Stages the output and writes the checkpoint: changes on top of the committed chain,
    /// with a slice of a rolling snapshot when one is due (see `CheckpointChain::next_slice`),
    /// or a full snapshot when there is no chain to build on. `None` when the partition has
    /// nothing to commit.
    pub fn prepare(&mut self, epoch: &Epoch<'_>) -> Result<Option<Prepared>> {
        let Some(next) = self.next_offset.filter(|_| self.changed) else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let sinks = self.pipeline.prepare_commit()?;
        let staged = started.elapsed();
        let name = checkpoint_name(next, epoch.name);
        let prefix = partition_prefix(epoch.group, &self.topic, self.partition);
        let base = self
            .committed
            .as_ref()
            .filter(|c| epoch.incremental && !c.full_due());
        let (state, chain, slice) = match base {
            Some(committed) => {
                let slice = committed.next_slice(self.pipeline.state_bytes());
                let (state, change_bytes) = self.pipeline.changes(slice)?;
                let chain = committed.extended(name.clone(), change_bytes, slice);
                (state, chain, slice)
            }
            None => (
                self.pipeline.snapshot()?,
                CheckpointChain::new(&prefix, Vec::new(), name.clone()),
                None,
            ),
        };
        let (topic, partition) = (&self.topic, self.partition);
        let chain_length = chain.checkpoints() as f64;
        crate::partition_gauges::set(
            "weir_state_snapshot_bytes",
            topic,
            partition,
            None,
            state.len() as f64,
        );
        crate::partition_gauges::set(
            "weir_checkpoint_chain_length",
            topic,
            partition,
            None,
            chain_length,
        );
        let checkpoint = PartitionCheckpoint {
            version: CHECKPOINT_VERSION,
            offset: next,
            base: chain.base(),
            state: state.into(),
            sinks,
        };
        let stored = chain.key();
        let full = checkpoint.base.is_empty();
        let written = checkpoint.state.len();
        save(epoch.store, &stored, &checkpoint)?;
        crate::failpoint::hit("checkpoint-written");
        tracing::debug!(%topic, partition, full, slice = ?slice.map(|s| s.index), state_bytes = written, ?staged, took = ?started.elapsed(), "Checkpoint written.");
        Ok(Some(Prepared {
            key: (self.topic.clone(), self.partition),
            next,
            metadata: offset_metadata(&name),
            chain,
            sinks: checkpoint.sinks,
        }))
    }

    /// The epoch committed with `chain`: publishes the sinks' output (their commit records
    /// `sinks`) and returns the checkpoints no committed state needs any more: those the new
    /// chain no longer builds on, and the restore's leftovers.
    pub fn committed(
        &mut self,
        chain: CheckpointChain,
        sinks: &CommitRecords,
    ) -> Result<Vec<String>> {
        self.pipeline.commit(sinks)?;
        let mut stale = superseded(self.committed.as_ref(), &chain);
        stale.append(&mut self.leftovers);
        self.committed = Some(chain);
        self.changed = false;
        Ok(stale)
    }

    /// The pipeline.
    pub fn pipeline(&mut self) -> &mut PartitionPipeline {
        &mut self.pipeline
    }

    /// Counts so far.
    pub fn stats(&self) -> PipelineStats {
        self.pipeline.stats()
    }
}
