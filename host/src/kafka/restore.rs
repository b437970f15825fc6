//! Rebuilding one assigned partition from its committed checkpoint: which checkpoint the
//! broker's committed offset names, the state its chain builds, the sinks' redo of the
//! committed epoch, and the offset to read from.

use std::sync::Arc;

use super::task::{PartitionKey, PartitionTask};
use crate::checkpoint::protocol::{self, committed_checkpoint, uncommitted};
use crate::checkpoint::{CheckpointStore, partition_prefix};
use crate::error::Result;
use crate::flow::Provenance;
use crate::pipeline::build::PipelineFactory;
use crate::sinks::SinkContext;
use crate::sinks::kafka::OutputProducer;
use crate::sinks::parquet::Writers;
use crate::sinks::staging::Scope;

/// What the broker has committed for a partition: the offset and its metadata.
pub struct BrokerCommit<'a> {
    /// The committed offset, if any.
    pub offset: Option<i64>,
    /// The commit's metadata (weir's names the checkpoint).
    pub metadata: &'a str,
}

/// Builds the task of `key` (in `group`) from its committed checkpoint (see
/// [`protocol::committed_checkpoint`]), its Kafka sinks producing on `producer`; the
/// checkpoints of epochs that never committed go with the task's next commit. Returns the
/// task and the offset to read from: the checkpoint's, which can differ from the broker's.
pub fn restore_task(
    factory: &PipelineFactory,
    store: &CheckpointStore,
    group: &str,
    key: PartitionKey,
    broker: BrokerCommit<'_>,
    producer: &Arc<OutputProducer>,
    table_writers: Option<&Arc<[String]>>,
) -> Result<(PartitionTask, Option<i64>)> {
    let (topic, partition) = (&key.0, key.1);
    let broker_offset = broker.offset;
    let scope = Scope {
        topic: topic.to_string(),
        partition,
    };
    let context = SinkContext {
        writers: table_writers.map(|all| Writers {
            this: scope.label(),
            all: all.clone(),
        }),
        scope: Some(scope),
        producer: Some(producer.clone()),
        ..SinkContext::default()
    };
    let mut pipeline = factory.pipeline(&context)?;
    let prefix = partition_prefix(group, topic, partition);
    let stored = store.list(&prefix)?;
    let committed = committed_checkpoint(store, &prefix, &stored, broker_offset, broker.metadata)?;
    let mut offset = broker_offset;
    let mut sink_records = None;
    let mut chain = None;
    let mut from_full = None;
    if let Some(checkpoint) = &committed {
        let plan = protocol::restore_plan(store, &prefix, checkpoint)?;
        pipeline.restore(plan.snapshot.as_deref(), &plan.changes)?;
        from_full = Some(plan.snapshot.is_some());
        if broker_offset != Some(plan.checkpoint.offset) {
            tracing::warn!(%topic, partition, broker = ?broker_offset, checkpoint = plan.checkpoint.offset, "The broker's committed offset differs from the committed checkpoint's; reading from the checkpoint's.");
        }
        offset = Some(plan.checkpoint.offset);
        sink_records = Some(plan.checkpoint.sinks);
        chain = Some(plan.chain);
    } else if let Some(o) = broker_offset {
        tracing::warn!(%topic, partition, offset = o, "No weir checkpoint matches the committed offset; starting with empty state.");
    }
    if let Some(next) = offset {
        pipeline.resume_after(Provenance {
            source: topic.clone(),
            partition,
            offset: next - 1,
            trace: None,
        });
    }
    pipeline.recover_sinks(sink_records.as_deref())?;
    let leftovers = uncommitted(&stored, chain.as_ref()).cloned().collect();
    tracing::info!(%topic, partition, offset = ?offset, checkpoint = ?committed, chain = chain.as_ref().map_or(0, |c| c.checkpoints()), ?from_full, "Partition restored.");
    let task = PartitionTask::new(key, pipeline, offset, chain, leftovers);
    Ok((task, offset))
}
