//! [`PartitionTask`]: one assigned partition: its pipeline, the records waiting for it, the
//! next offset to process and the checkpoint its committed offset names.

use std::sync::Arc;

use crate::checkpoint::CheckpointChain;
use crate::error::Result;
use crate::pipeline::{PartitionPipeline, PipelineStats};
use crate::source::SourceRecord;

/// One assigned partition.
pub struct PartitionTask {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    pipeline: PartitionPipeline,
    queue: Vec<SourceRecord>,
    /// The offset after the last processed record; `None` before the first one when the
    /// group had no committed offset.
    pub next_offset: Option<i64>,
    /// The checkpoint named by the committed offset and those its state builds on.
    pub committed: Option<CheckpointChain>,
    /// Whether state or output changed since the last checkpoint.
    pub changed: bool,
    /// Whether the consumer has paused this partition.
    pub paused: bool,
    /// Bounded runs: the partition's low and high offsets, once fetched.
    pub end: Option<(i64, i64)>,
}

impl PartitionTask {
    /// A task over a built (and possibly restored) pipeline.
    pub fn new(
        topic: Arc<str>,
        partition: i32,
        pipeline: PartitionPipeline,
        next_offset: Option<i64>,
        committed: Option<CheckpointChain>,
    ) -> Self {
        PartitionTask {
            topic,
            partition,
            pipeline,
            queue: Vec::new(),
            next_offset,
            committed,
            changed: false,
            paused: false,
            end: None,
        }
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

    /// The pipeline.
    pub fn pipeline(&mut self) -> &mut PartitionPipeline {
        &mut self.pipeline
    }

    /// Counts so far.
    pub fn stats(&self) -> PipelineStats {
        self.pipeline.stats()
    }
}
