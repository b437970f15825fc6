//! [`EpochTransaction`]: the instance's producer and the epoch's transaction on it. Opened
//! when an epoch starts, committed with the consumed offsets (the commit point), aborted when
//! the epoch fails; a producer left unusable is dropped and a new one (which fences the old
//! one's transactional id) is made at the next open.
//!
//! The commit runs on a thread of its own under a deadline: librdkafka 2.12 can wait forever
//! in `send_offsets_to_transaction` once the group coordinator's broker is gone
//! (confluentinc/librdkafka#5456, #5511), whatever timeout it is given. Past the deadline the
//! producer is abandoned to that thread and the epoch fails; the producer made next fences the
//! old one before the rewind reads the committed offsets, so a commit that returns late can
//! no longer land.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
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
                let offsets = offsets.clone();
                // Two transactional calls, each with the timeout, and room to spare.
                let deadline = 2 * self.timeout + Duration::from_secs(5);
                match within(deadline, move || producer.commit(&offsets, &group))? {
                    Some(result) => result?,
                    None => {
                        self.abandon_producer(deadline);
                        return Err(Error::Commit(format!(
                            "the transaction commit did not return within {deadline:?}"
                        )));
                    }
                }
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

    /// Gives up a producer stuck in a transactional call: its thread keeps it until the call
    /// returns, and the next [`Self::open`] makes a new one with the same transactional id,
    /// which fences it (its open transaction aborts; its late commit is refused).
    fn abandon_producer(&mut self, waited: Duration) {
        tracing::error!(
            ?waited,
            "The producer is stuck in a transactional call (librdkafka waits for a group \
             coordinator that is gone); abandoning it for a new one that fences it."
        );
        metrics::counter!("weir_kafka_producers_abandoned_total").increment(1);
        self.producer = None;
        self.open = false;
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

/// Runs `call` on a thread of its own and waits at most `deadline` for it. `None`: the call
/// has not returned; it goes on running, and whatever it holds stays with it.
fn within<T: Send + 'static>(
    deadline: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<Option<T>> {
    let (done, result) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("weir-txn-commit".into())
        .spawn(move || {
            // The receiver is gone when the caller stopped waiting: nothing to tell.
            let _ = done.send(call());
        })
        .map_err(|e| Error::Commit(format!("cannot start the commit's thread: {e}")))?;
    Ok(result.recv_timeout(deadline).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_returns_in_time_gives_its_result() {
        assert_eq!(within(Duration::from_secs(5), || 7).unwrap(), Some(7));
    }

    #[test]
    fn a_call_past_its_deadline_is_left_running() {
        let (release, wait) = mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let outcome = within(Duration::from_millis(50), move || wait.recv().is_ok());
        assert_eq!(outcome.unwrap(), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        release.send(()).expect("the call is still waiting");
    }

    /// librdkafka's mock cluster with the group coordinator's broker down: the offsets'
    /// commit waits for it past every timeout (confluentinc/librdkafka#5456), so the watchdog
    /// gives the producer up; the next one fences it, and commits once the broker is back.
    #[test]
    fn a_commit_stuck_on_a_gone_group_coordinator_fails_the_epoch_and_a_new_producer_commits() {
        use rdkafka::ClientConfig;
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::mocking::{MockCluster, MockCoordinator};

        let cluster = MockCluster::new(3).unwrap();
        cluster.create_topic("clicks", 1, 3).unwrap();
        cluster
            .coordinator(MockCoordinator::Transaction("weir-stuck".into()), 1)
            .unwrap();
        cluster
            .coordinator(MockCoordinator::Group("stuck".into()), 2)
            .unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "stuck")
            .create()
            .unwrap();
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("clicks", 0, rdkafka::Offset::Offset(1))
            .unwrap();
        let timeout = Duration::from_secs(1);
        let mut transaction = EpochTransaction::new(
            &cluster.bootstrap_servers(),
            BTreeMap::new(),
            Delivery::ExactlyOnce,
            "weir-stuck".into(),
            timeout,
        );
        transaction.open().unwrap();
        cluster.broker_down(2).unwrap();

        let started = std::time::Instant::now();
        let error = transaction.commit(&consumer, &offsets).unwrap_err();
        assert!(
            error.to_string().contains("did not return within"),
            "{error}"
        );
        assert!(started.elapsed() < 4 * timeout + Duration::from_secs(10));
        assert!(transaction.producer.is_none(), "the stuck producer is kept");

        cluster.broker_up(2).unwrap();
        transaction.abort(&error);
        transaction.open().unwrap();
        transaction.commit(&consumer, &offsets).unwrap();
    }
}
