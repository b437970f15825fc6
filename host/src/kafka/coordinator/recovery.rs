//! The rewind to the committed state: a failed epoch aborts its transaction and pauses every
//! partition; recovery rebuilds each assigned partition from its committed checkpoint (which
//! one is committed: [`crate::kafka::restore`]) and seeks back to its offset.

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::Coordinator;
use crate::error::{Error, Result};
use crate::kafka::config::StartPosition;
use crate::kafka::restore::{BrokerCommit, restore_task};
use crate::kafka::task::PartitionKey;
use crate::sinks::staging::Scope;

impl Coordinator {
    /// Drops every partition's task, keeping its counts in the totals.
    pub(super) fn retire_tasks(&mut self) {
        for task in std::mem::take(&mut self.tasks).into_values() {
            self.retired.add(&task.stats());
        }
    }

    /// Builds the tasks of `keys` from their committed checkpoints; with `seek`, also moves
    /// the consumer to the checkpoints' offsets. Without it, returns whether the consumer
    /// must still be moved: the broker's committed offset, where it starts reading, is not
    /// the checkpoint's.
    pub(super) fn restore<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        keys: &[PartitionKey],
        seek: bool,
    ) -> Result<bool> {
        if keys.is_empty() {
            return Ok(false);
        }
        let producer = self.open_transaction()?;
        let table_writers = self.table_writers(consumer)?;
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
                table_writers.as_ref(),
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

    /// Every partition of the source topics, by writer name, when a sink marks complete
    /// hours: an hour of its table is complete once all of them have passed it.
    fn table_writers<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
    ) -> Result<Option<Arc<[String]>>> {
        if !self.factory.marks_completion() {
            return Ok(None);
        }
        let mut writers = Vec::new();
        for topic in &self.source.topics {
            let metadata = consumer.fetch_metadata(Some(topic), self.timeout)?;
            for found in metadata.topics() {
                for p in found.partitions() {
                    let scope = Scope {
                        topic: topic.clone(),
                        partition: p.id(),
                    };
                    writers.push(scope.label());
                }
            }
        }
        Ok(Some(writers.into()))
    }

    /// An epoch failed: abort its transaction and rewind every partition to its committed
    /// checkpoint (at the next [`Self::recover`]).
    pub(super) fn fail_epoch<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: &Error,
    ) {
        self.counts.failed += 1;
        metrics::counter!("weir_checkpoint_failures_total").increment(1);
        tracing::warn!(%error, "Epoch failed; rewinding to the last committed checkpoint.");
        self.start_recovery(consumer, error);
    }

    /// Pauses every partition until [`Self::recover`] rebuilds them, and aborts the open
    /// transaction (because of `error`): it holds what the rebuilt tasks had produced in this
    /// epoch, which they produce again.
    pub(super) fn start_recovery<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: &Error,
    ) {
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
}
