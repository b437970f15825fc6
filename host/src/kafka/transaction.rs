//! [`EpochTransaction`]: the instance's producer and the epoch's transaction on it. Opened
//! when an epoch starts, committed with the consumed offsets (the commit point), aborted when
//! the epoch fails; a producer left unusable is dropped and a new one (which fences the old
//! one's transactional id) is made at the next open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};

use crate::checkpoint::Delivery;
use crate::error::{Error, Result};
use crate::sinks::kafka::producer::is_fatal;
use crate::sinks::kafka::{OutputProducer, ProducerSettings};

/// The producer and whether a transaction is open on it.
pub struct EpochTransaction {
    brokers: String,
    properties: BTreeMap<String, String>,
    delivery: Delivery,
    transactional_id: String,
    timeout: Duration,
    producer: Option<Arc<OutputProducer>>,
    open: bool,
    /// Failed deliveries counted when the last epoch committed (at-least-once).
    failures_seen: u64,
}

impl EpochTransaction {
    /// No producer yet: the first [`Self::open`] makes it.
    pub fn new(
        brokers: &str,
        properties: BTreeMap<String, String>,
        delivery: Delivery,
        transactional_id: String,
        timeout: Duration,
    ) -> Self {
        EpochTransaction {
            brokers: brokers.to_string(),
            properties,
            delivery,
            transactional_id,
            timeout,
            producer: None,
            open: false,
            failures_seen: 0,
        }
    }

    /// Makes the producer if there is none and opens a transaction if none is open. Returns
    /// the producer and whether a transaction was opened now.
    pub fn open(&mut self) -> Result<(Arc<OutputProducer>, bool)> {
        let producer = match &self.producer {
            Some(producer) => producer.clone(),
            None => {
                let producer = Arc::new(OutputProducer::new(&ProducerSettings {
                    brokers: &self.brokers,
                    properties: &self.properties,
                    delivery: self.delivery,
                    transactional_id: &self.transactional_id,
                    timeout: self.timeout,
                })?);
                self.failures_seen = producer.failures();
                self.producer = Some(producer.clone());
                producer
            }
        };
        if self.open {
            return Ok((producer, false));
        }
        producer.begin()?;
        self.open = true;
        Ok((producer, true))
    }

    /// The commit point: the transaction with the offsets (exactly-once), or an offset commit
    /// once every output is acknowledged (at-least-once). A member the group has already
    /// dropped cannot commit: the broker refuses offsets sent with a stale group generation
    /// (KIP-447), and the transaction aborts with everything the epoch produced.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> Result<()> {
        let producer = self
            .producer
            .clone()
            .ok_or_else(|| Error::Commit("no producer".into()))?;
        match self.delivery {
            Delivery::ExactlyOnce => {
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| Error::Commit("the consumer has no group metadata".into()))?;
                producer.commit(offsets, &group)?;
            }
            Delivery::AtLeastOnce => {
                producer.flush()?;
                let failures = producer.failures();
                if failures > self.failures_seen {
                    self.failures_seen = failures;
                    return Err(Error::Commit("a Kafka output was not delivered".into()));
                }
                consumer.commit(offsets, CommitMode::Sync)?;
            }
        }
        self.open = false;
        Ok(())
    }

    /// The epoch failed with `error`: aborts the open transaction, and drops the producer
    /// when the abort failed or `error` left it unusable.
    pub fn abort(&mut self, error: &Error) {
        if self.open
            && let Some(producer) = &self.producer
            && let Err(e) = producer.abort()
        {
            tracing::warn!(error = %e, fatal = is_fatal(&e), "Aborting the transaction failed; the producer will be re-created.");
            self.producer = None;
        }
        self.open = false;
        if matches!(error, Error::Kafka(e) if is_fatal(e)) {
            self.producer = None;
        }
    }
}
