//! Reads a whole topic once: every partition from its first retained record to the end it
//! had when reading started. `weir dlq replay` and the tests read topics this way.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::Result;

/// Assigns every non-empty partition of `topic` to `consumer` from its start and hands each
/// record to `each`, until every partition reached its end or nothing arrived for `timeout`.
pub fn read_to_end<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<()>,
) -> Result<()> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for found in metadata.topics() {
        for p in found.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            if high > low {
                ends.insert(p.id(), high);
                assignment.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            }
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let mut quiet_since = Instant::now();
    while !ends.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            // A transactional topic ends in a control record, which is never delivered.
            for elem in consumer.position()?.elements() {
                if let Offset::Offset(position) = elem.offset()
                    && ends
                        .get(&elem.partition())
                        .is_some_and(|end| position >= *end)
                {
                    ends.remove(&elem.partition());
                }
            }
            if quiet_since.elapsed() > timeout {
                break;
            }
            continue;
        };
        quiet_since = Instant::now();
        let message = message?;
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
        each(&message)?;
    }
    Ok(())
}
