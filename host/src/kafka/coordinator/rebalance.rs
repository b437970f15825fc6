//! What the group's rebalances do to the coordinator: assigned partitions are restored from
//! their committed checkpoints, revoked ones commit their epoch first (or abandon it when the
//! group has already dropped this member), and a consumer given up drops them all.

use std::sync::Arc;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::Coordinator;
use crate::error::Error;
use crate::kafka::task::PartitionKey;

impl Coordinator {
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
        for (topic, partition) in &keys {
            crate::partition_gauges::own(topic, *partition);
        }
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
        } else {
            // A commit that fails fails the epoch (aborted): the partitions' new owners redo it.
            let _ = self.checkpoint(consumer);
        }
        for elem in partitions.elements() {
            let key: PartitionKey = (Arc::from(elem.topic()), elem.partition());
            crate::partition_gauges::release(&key.0, key.1);
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
        crate::partition_gauges::release_all();
    }
}
