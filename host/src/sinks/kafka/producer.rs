//! The instance's one Kafka producer: idempotent always, transactional under exactly-once. It
//! carries the Kafka sinks' records and the dead-letter topic's, and its transaction commit
//! (with the consumed offsets) is the checkpoint's commit point.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, TopicPartitionList};

use crate::checkpoint::Delivery;
use crate::kafka_client::client_config;

/// Counts failed deliveries, so a checkpoint never commits offsets past a lost record.
#[derive(Default)]
pub struct DeliveryTracker {
    failures: AtomicU64,
}

impl ClientContext for DeliveryTracker {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka producer error.");
        metrics::counter!("weir_kafka_client_errors_total", "client" => "producer").increment(1);
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, message)) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("weir_sink_delivery_failures_total", "sink" => "kafka").increment(1);
            tracing::warn!(%error, topic = message.topic(), "Kafka delivery failed.");
        }
    }
}

/// The producer.
pub struct OutputProducer {
    producer: ThreadedProducer<DeliveryTracker>,
    delivery: Delivery,
    timeout: Duration,
}

/// Where the producer connects and how it delivers.
pub struct ProducerSettings<'a> {
    /// `bootstrap.servers`.
    pub brokers: &'a str,
    /// Resolved librdkafka properties.
    pub properties: &'a std::collections::BTreeMap<String, String>,
    /// Exactly-once (transactional) or at-least-once (idempotent).
    pub delivery: Delivery,
    /// `transactional.id`: stable per instance, so a restarted instance fences its
    /// predecessor's open transaction.
    pub transactional_id: &'a str,
    /// Timeout of transactional calls and flushes.
    pub timeout: Duration,
}

impl OutputProducer {
    /// Creates the producer and, under exactly-once, registers its transactional id.
    pub fn new(settings: &ProducerSettings<'_>) -> KafkaResult<Self> {
        let mut config = client_config(settings.brokers, settings.properties);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        if settings.delivery == Delivery::ExactlyOnce {
            config
                .set("transactional.id", settings.transactional_id)
                .set("transaction.timeout.ms", "60000");
        }
        let producer: ThreadedProducer<DeliveryTracker> =
            config.create_with_context(DeliveryTracker::default())?;
        if settings.delivery == Delivery::ExactlyOnce {
            producer.init_transactions(settings.timeout)?;
        }
        Ok(OutputProducer {
            producer,
            delivery: settings.delivery,
            timeout: settings.timeout,
        })
    }

    /// Queues a record, waiting while librdkafka's queue is full.
    pub fn send(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        headers: OwnedHeaders,
        timestamp: i64,
    ) -> KafkaResult<()> {
        let mut record = BaseRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(headers)
            .timestamp(timestamp);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// How records are delivered.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// Deliveries that failed since the producer started.
    pub fn failures(&self) -> u64 {
        self.producer.context().failures.load(Ordering::Relaxed)
    }

    /// Opens the next epoch's transaction (exactly-once only).
    pub fn begin(&self) -> KafkaResult<()> {
        match self.delivery {
            Delivery::ExactlyOnce => self.producer.begin_transaction(),
            Delivery::AtLeastOnce => Ok(()),
        }
    }

    /// Adds the consumed offsets to the transaction and commits it: the commit point.
    pub fn commit(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> KafkaResult<()> {
        self.producer
            .send_offsets_to_transaction(offsets, group, self.timeout)?;
        self.producer.commit_transaction(self.timeout)
    }

    /// Aborts the open transaction (exactly-once) after a failed epoch.
    pub fn abort(&self) -> KafkaResult<()> {
        match self.delivery {
            Delivery::ExactlyOnce => self.producer.abort_transaction(self.timeout),
            // No transaction to abort: drop what is queued; the rewound epoch re-sends it.
            Delivery::AtLeastOnce => {
                self.producer
                    .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
                Ok(())
            }
        }
    }

    /// Waits until every queued record is acknowledged.
    pub fn flush(&self) -> KafkaResult<()> {
        self.producer.flush(self.timeout)
    }
}

/// Whether a failed transactional call left the producer unusable (it must be re-created).
pub fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        _ => false,
    }
}
