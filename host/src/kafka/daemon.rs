//! The Kafka source and its driver loop: a consumer group (cooperative-sticky, manual
//! offsets) whose records go to one [`super::task::PartitionTask`] per assigned partition,
//! with the [`Coordinator`] committing an epoch every `checkpoint.interval`, on revocation
//! and on shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;

use super::config::KafkaSourceConfig;
use super::coordinator::{CheckpointCounts, Coordinator};
use crate::config::{ConfigError, PipelineConfig, SourceConfig};
use crate::error::Result;
use crate::flow::{Provenance, SourceRecord};
use crate::kafka_client::client_config;
use crate::pipeline::PipelineStats;
use crate::pipeline::build::PipelineFactory;
use crate::sinks::kafka::headers::to_pairs;
use crate::trace_parent::TraceParent;

/// How a daemon run behaves beyond its config.
#[derive(Clone)]
pub struct DaemonOptions {
    /// Names this instance's transactional producer; stable across restarts, unique per
    /// running instance.
    pub instance_id: String,
    /// Stop once every assigned partition is read to its end, closing every window. May be
    /// set while running (the demo sets it when its producer is done).
    pub bounded: Arc<AtomicBool>,
    /// Set to stop: the daemon commits a final epoch and leaves the group.
    pub shutdown: Arc<AtomicBool>,
    /// Updated with the instance's counts as it runs (for progress displays).
    pub progress: Option<Arc<Mutex<PipelineStats>>>,
    /// Readiness and breaker states for the admin endpoint.
    pub status: Option<Arc<crate::admin::Status>>,
    /// A reloaded config whose sink changes the daemon applies at its next epoch boundary.
    pub new_config: PendingConfig,
}

/// A reloaded config waiting for the daemon.
pub type PendingConfig = Arc<Mutex<Option<PipelineConfig>>>;

impl DaemonOptions {
    /// Options for an unbounded run as `instance_id`.
    pub fn new(instance_id: &str) -> Self {
        DaemonOptions {
            instance_id: instance_id.to_string(),
            bounded: Arc::new(AtomicBool::new(false)),
            shutdown: Arc::new(AtomicBool::new(false)),
            progress: None,
            status: None,
            new_config: Arc::default(),
        }
    }
}

/// What a daemon run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonSummary {
    /// Counts of every partition the instance ran.
    pub stats: PipelineStats,
    /// Checkpoint protocol counts.
    pub checkpoints: CheckpointCounts,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Each sink's circuit breaker at the end.
    pub breakers: Vec<(String, crate::sinks::resilience::BreakerState)>,
}

/// Consumer callbacks: rebalances go to the coordinator, errors and statistics to logs and
/// metrics.
struct DaemonContext {
    coordinator: Arc<Mutex<Coordinator>>,
    /// Set once the consumer is abandoned: its rebalances (its close revokes everything) no
    /// longer reach the coordinator, which belongs to the consumer that replaced it.
    retired: AtomicBool,
}

impl DaemonContext {
    fn coordinator(&self) -> Option<MutexGuard<'_, Coordinator>> {
        (!self.retired.load(Ordering::SeqCst)).then(|| lock(&self.coordinator))
    }
}

fn lock(coordinator: &Mutex<Coordinator>) -> MutexGuard<'_, Coordinator> {
    coordinator.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientContext for DaemonContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka consumer error.");
        metrics::counter!("weir_kafka_client_errors_total", "client" => "consumer").increment(1);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    crate::partition_gauges::set(
                        "weir_source_consumer_lag_records",
                        topic,
                        *partition,
                        None,
                        p.consumer_lag as f64,
                    );
                }
            }
        }
    }
}

impl ConsumerContext for DaemonContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance
            && let Some(mut coordinator) = self.coordinator()
        {
            coordinator.revoke(consumer, partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                if let Some(mut coordinator) = self.coordinator() {
                    coordinator.assign(consumer, partitions);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "Rebalance failed."),
            Rebalance::Revoke(_) => {}
        }
    }
}

fn to_record(message: &BorrowedMessage<'_>, topic: Arc<str>) -> SourceRecord {
    let headers = message.headers().map(to_pairs).unwrap_or_default();
    SourceRecord {
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().unwrap_or_default().to_vec(),
        timestamp: message.timestamp().to_millis(),
        provenance: Provenance {
            source: topic,
            partition: message.partition(),
            offset: message.offset(),
            trace: TraceParent::from_headers(&headers),
        },
        headers,
    }
}

/// The factory of a Kafka pipeline: plugins loaded for up to 16 partitions and watched.
pub fn factory(config: &PipelineConfig, plugin_dir: &std::path::Path) -> Result<PipelineFactory> {
    let mut factory = PipelineFactory::new(config, plugin_dir, 16)?;
    factory.watch_plugins()?;
    Ok(factory)
}

/// Runs a pipeline with a Kafka source until `options.shutdown` is set (or, bounded, until
/// the input is consumed).
pub fn run(
    config: &PipelineConfig,
    plugin_dir: &std::path::Path,
    options: &DaemonOptions,
) -> Result<DaemonSummary> {
    let factory = factory(config, plugin_dir)?;
    if let Some(status) = &options.status {
        status.set_plugins(factory.registry().clone());
    }
    run_with(factory, config, options)
}

/// Runs the pipelines `factory` builds, as [`run`] does.
pub fn run_with(
    factory: PipelineFactory,
    config: &PipelineConfig,
    options: &DaemonOptions,
) -> Result<DaemonSummary> {
    let SourceConfig::Kafka(source) = &config.source else {
        return Err(ConfigError::Invalid {
            field: "source".into(),
            reason: "the Kafka daemon needs a [source.kafka] table".into(),
        }
        .into());
    };
    let consumer_properties = source.consumer_client_properties();
    let producer_properties = source.producer_client_properties();
    let started = Instant::now();
    let coordinator = Arc::new(Mutex::new(Coordinator::new(
        config,
        source,
        factory,
        producer_properties,
        &options.instance_id,
    )?));
    let topics: Vec<&str> = source.topics.iter().map(String::as_str).collect();
    // A consumer that failed for good (librdkafka's fatal errors, such as a static member
    // fenced by its own rejoin after a lost session) is replaced by a new one: its epoch is
    // abandoned and the partitions come back through the group.
    let (consumer, outcome) = loop {
        let consumer = consumer(
            source,
            &consumer_properties,
            &options.instance_id,
            coordinator.clone(),
        )?;
        consumer.subscribe(&topics)?;
        tracing::info!(brokers = %source.brokers, topics = ?source.topics, group = %source.group, instance = %options.instance_id, delivery = ?config.checkpoint.delivery, "Consuming.");
        match drive(&consumer, &coordinator, source, config, options) {
            Ok(Ended::ConsumerFailed(reason)) => {
                tracing::warn!(%reason, "The consumer failed for good; its epoch is abandoned and a new consumer joins the group.");
                metrics::counter!("weir_source_consumer_restarts_total").increment(1);
                lock(&coordinator).abandon_partitions(&consumer, &reason);
                retire(consumer);
            }
            Ok(Ended::Stopped) => break (consumer, Ok(())),
            Err(e) => break (consumer, Err(e)),
        }
    };
    let final_commit = {
        let mut c = lock(&coordinator);
        c.checkpoint(&consumer)
    };
    consumer.unsubscribe();
    drop(consumer);
    outcome?;
    final_commit?;
    let c = lock(&coordinator);
    Ok(DaemonSummary {
        stats: c.stats(),
        checkpoints: c.counts(),
        elapsed: started.elapsed(),
        breakers: c.breakers(),
    })
}

/// Closes an abandoned consumer on a thread of its own: closing polls until librdkafka says
/// the consumer is closed, which a consumer cut off from its group coordinator may not say
/// for a long time, and the new consumer must not wait for it. Its rebalances are ignored.
fn retire(consumer: BaseConsumer<DaemonContext>) {
    consumer.context().retired.store(true, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("weir-consumer-close".into())
        .spawn(move || {
            let started = Instant::now();
            drop(consumer);
            tracing::info!(took = ?started.elapsed(), "The abandoned consumer is closed.");
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "No thread to close the abandoned consumer on; it was closed here.");
    }
}

/// The consumer's `fetch.wait.max.ms` unless `[source.kafka]`'s properties set it.
pub const DEFAULT_FETCH_WAIT_MS: &str = "100";

fn consumer(
    source: &KafkaSourceConfig,
    properties: &std::collections::BTreeMap<String, String>,
    instance_id: &str,
    coordinator: Arc<Mutex<Coordinator>>,
) -> Result<BaseConsumer<DaemonContext>> {
    let mut config = client_config(&source.brokers, properties);
    if source.static_membership {
        config.set("group.instance.id", instance_id);
    }
    config
        .set("group.id", &source.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", source.start.as_reset())
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "5000")
        // librdkafka waits up to 500 ms for a fetch to fill; a broker that holds the fetch for
        // its whole wait adds that to every record's latency.
        .set("fetch.wait.max.ms", DEFAULT_FETCH_WAIT_MS);
    for (key, value) in properties {
        config.set(key, value);
    }
    Ok(config.create_with_context(DaemonContext {
        coordinator,
        retired: AtomicBool::new(false),
    })?)
}

/// The wait after a recovery before the next, while no epoch has committed since.
const FIRST_RECOVERY_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between recoveries.
const MAX_RECOVERY_BACKOFF: Duration = Duration::from_secs(10);

/// Whether a bounded run has read every partition to its end. Brokers that cannot say now
/// (an outage, a slow answer) are asked again at the next turn rather than ending the run.
fn at_end(c: &mut Coordinator, consumer: &BaseConsumer<DaemonContext>) -> bool {
    c.at_end(consumer).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "Could not read the partitions' ends; asking again.");
        false
    })
}

/// Why [`drive`] returned.
enum Ended {
    /// Shutdown was asked for, or a bounded run read its input to the end.
    Stopped,
    /// The consumer hit a fatal error and can do nothing more.
    ConsumerFailed(String),
}

fn drive(
    consumer: &BaseConsumer<DaemonContext>,
    coordinator: &Mutex<Coordinator>,
    source: &KafkaSourceConfig,
    config: &PipelineConfig,
    options: &DaemonOptions,
) -> Result<Ended> {
    let interval = config.checkpoint.interval.0;
    let mut backoff = FIRST_RECOVERY_BACKOFF;
    let mut next_recovery = Instant::now();
    let mut last_progress = Instant::now();
    // A round reads a batch per worker, so that every worker has one to run.
    let round = source.batch_size * lock(coordinator).workers();
    let mut messages = Vec::with_capacity(round);
    let heart = crate::liveness::Heart::new("kafka driver");
    while !options.shutdown.load(Ordering::Relaxed) {
        heart.beat();
        crate::failpoint::hit("poll");
        let deadline = Instant::now() + source.batch_timeout.0;
        while messages.len() < round {
            let left = deadline.saturating_duration_since(Instant::now());
            match consumer.poll(left) {
                Some(Ok(message)) => messages.push(message),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Consuming failed.");
                    metrics::counter!("weir_source_errors_total").increment(1);
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        return Ok(Ended::ConsumerFailed(format!("{code:?}: {reason}")));
                    }
                }
                None => break,
            }
            if left.is_zero() {
                break;
            }
        }
        let idle = messages.is_empty();
        let mut c = lock(coordinator);
        for message in messages.drain(..) {
            c.dispatch(message.topic(), message.partition(), |topic| {
                to_record(&message, topic)
            });
        }
        if c.recovering() {
            if let Some(status) = &options.status {
                status.set_ready(false);
                status.set_breakers(c.breakers());
            }
            if Instant::now() >= next_recovery {
                // Each recovery before an epoch has committed again waits longer for the next:
                // a sink or a schema registry that stays down fails every epoch at once, and
                // is retried with backoff rather than at the rate of polls.
                let wait = crate::sinks::resilience::jittered(backoff);
                if let Err(e) = c.recover(consumer) {
                    tracing::warn!(error = %e, retry_in = ?wait, "Recovery failed.");
                }
                next_recovery = Instant::now() + wait;
                backoff = (backoff * 2).min(MAX_RECOVERY_BACKOFF);
            }
            continue;
        }
        // A failure below fails the epoch; the rewind starts at the next turn.
        if c.run_tasks(consumer).is_err() {
            continue;
        }
        let reloaded = options
            .new_config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(new) = reloaded {
            if let Some(status) = &options.status {
                status.set_pipeline(&new);
            }
            c.reconfigure(consumer, new);
            continue;
        }
        c.update_pauses(consumer);
        if c.checkpoint_due(interval) {
            if c.checkpoint(consumer).is_err() {
                continue;
            }
            backoff = FIRST_RECOVERY_BACKOFF;
        }
        if last_progress.elapsed() >= Duration::from_millis(250) {
            if let Some(progress) = &options.progress {
                *progress.lock().unwrap_or_else(|p| p.into_inner()) = c.stats();
            }
            if let Some(status) = &options.status {
                status.set_ready(c.ready());
                status.set_breakers(c.breakers());
                c.publish_gauges();
            }
            last_progress = Instant::now();
        }
        if idle && options.bounded.load(Ordering::Relaxed) && at_end(&mut c, consumer) {
            if c.finish(consumer).is_err() {
                continue;
            }
            tracing::info!("Input consumed to its end; stopping.");
            break;
        }
    }
    Ok(Ended::Stopped)
}
