//! Sinks: where routed records end up. One trait, [`Sink`], for every destination, plus the
//! dead-letter output, [`DeadLetterSink`]. Each sink is a folder with its config and its
//! implementation; [`memory`] has in-memory versions for tests.

pub mod batch;
pub mod commit_record;
pub mod dead_letter;
pub mod files;
pub mod kafka;
pub mod memory;
pub mod ndjson;
pub mod parquet;
pub mod postgres;
pub mod redis;
pub mod resilience;
pub mod staging;

use std::sync::Arc;

use serde::Deserialize;

pub use batch::{RecordView, SinkBatch};
pub use dead_letter::DeadLetterSink;
use kafka::{KafkaSink, KafkaSinkConfig, OutputProducer};

use resilience::Breakers;
use staging::Scope;

/// A sink failed as a whole (not one record).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing to the destination failed.
    #[error("sink {sink}: {reason}")]
    Io {
        /// Sink name.
        sink: String,
        /// What failed.
        reason: String,
    },
    /// The sink could not be built from its config.
    #[error("sink {sink}: invalid setup: {reason}")]
    Setup {
        /// Sink name.
        sink: String,
        /// Why.
        reason: String,
    },
}

/// A record a sink refused (for example, one that does not fit the schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index in the batch given to [`Sink::write`].
    pub index: usize,
    /// Why, naming the field where there is one.
    pub reason: String,
}

/// A destination for routed records.
///
/// Contract: `write` accepts records in order and may buffer them; it returns the records it
/// refuses (they go to the dead-letter output) and fails as a whole only when the destination
/// fails. After `flush` returns, everything written so far is durable. After `close`, nothing
/// more is written and everything is visible.
///
/// Under checkpoints, an epoch ends with `prepare_commit`: everything written is durable but
/// need not be visible, and the sink returns its commit record, which the partition's
/// checkpoint keeps. Once the epoch has committed, `commit` makes the output the record names
/// visible; it is idempotent, because recovery redoes it. `recover` starts a sink from the
/// committed checkpoint's record (or from nothing): it redoes the commit and carries on from
/// the record; what epochs that never committed left staged it drops at its next `commit`,
/// which proves the instance still owns the partition (an instance the group dropped may
/// recover, and must not drop what its successor staged).
pub trait Sink: Send {
    /// The sink's name from the config.
    fn name(&self) -> &str;
    /// Takes records; returns the ones refused.
    fn write(&mut self, records: &SinkBatch) -> Result<Vec<Rejection>, SinkError>;
    /// Makes everything written durable.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Flushes, finalizes files and releases resources.
    fn close(&mut self) -> Result<(), SinkError>;
    /// Ends the epoch: makes its output durable and returns the sink's commit record.
    fn prepare_commit(&mut self) -> Result<Option<Vec<u8>>, SinkError> {
        self.flush()?;
        Ok(None)
    }
    /// The epoch of `record` committed: makes its output visible. Idempotent.
    fn commit(&mut self, _record: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }
    /// Starts from the committed checkpoint's record: redoes its commit and carries on from
    /// it; output staged by epochs that never committed is dropped at the next `commit`.
    fn recover(&mut self, _record: Option<&[u8]>) -> Result<(), SinkError> {
        Ok(())
    }
    /// Whether the sink needs an epoch to end even without new input (a file due to roll).
    fn wants_commit(&self) -> bool {
        false
    }
    /// The input has ended (a bounded run): the next epoch finishes every open file.
    fn finish_files(&mut self) {}
    /// The source partition's watermark moved to `watermark` (event time, ms).
    fn observe_watermark(&mut self, _watermark: i64) {}
}

/// Each sink's commit record of one epoch, by sink name.
pub type CommitRecords = Vec<(String, Vec<u8>)>;

/// One sink in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "kebab-case")]
pub enum SinkConfig {
    /// Parquet files, Hive-partitioned by event time.
    Parquet(parquet::ParquetSinkConfig),
    /// A Delta Lake table: the Parquet sink's files, added to the table's log as each epoch
    /// commits.
    Delta(parquet::ParquetSinkConfig),
    /// Newline-delimited JSON file.
    Ndjson(ndjson::NdjsonSinkConfig),
    /// Kafka topics, produced inside the checkpoint's transaction.
    Kafka(KafkaSinkConfig),
    /// Redis hashes: a feature store.
    Redis(redis::RedisSinkConfig),
    /// PostgreSQL tables: an analytics store.
    Postgres(postgres::PostgresSinkConfig),
}

/// What a sink instance is built for: the partition whose output it stages (Kafka source),
/// and the instance's producer (Kafka sinks and the dead-letter topic).
#[derive(Clone, Default)]
pub struct SinkContext {
    /// The source partition, when output is staged per checkpoint epoch.
    pub scope: Option<Scope>,
    /// The instance's Kafka producer.
    pub producer: Option<Arc<OutputProducer>>,
    /// The instance's circuit breakers, one per sink name, shared by its partitions.
    pub breakers: Breakers,
    /// The run's output files, one per path, shared by its partitions.
    pub files: files::OutputFiles,
    /// The writers that fill a table together (for completion markers): every source
    /// partition, and which one this is.
    pub writers: Option<parquet::Writers>,
    /// The schema registry, for sinks that write registered formats.
    pub registry: Option<crate::source::registry::SchemaRegistry>,
}

impl SinkConfig {
    /// The routes this sink takes.
    pub fn routes(&self) -> &[String] {
        match self {
            SinkConfig::Parquet(c) | SinkConfig::Delta(c) => &c.routes,
            SinkConfig::Ndjson(c) => &c.routes,
            SinkConfig::Kafka(c) => &c.routes,
            SinkConfig::Redis(c) => &c.routes,
            SinkConfig::Postgres(c) => &c.routes,
        }
    }

    /// Checks the sink's settings; errors are `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.routes().is_empty() {
            return Err(("routes".into(), "must list at least one route".into()));
        }
        match self {
            SinkConfig::Parquet(c) => c.validate(),
            SinkConfig::Delta(c) => c.validate_for_delta(),
            SinkConfig::Ndjson(_) => Ok(()),
            SinkConfig::Kafka(c) => c.validate(),
            SinkConfig::Redis(c) => c.validate(),
            SinkConfig::Postgres(c) => c.validate(),
        }
    }

    /// Builds the sink (creates folders and files).
    pub fn build(&self, name: &str, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(match self {
            SinkConfig::Parquet(c) => Box::new(
                parquet::ParquetSink::new(
                    name,
                    c,
                    context.scope.clone(),
                    context.breakers.get(name, &c.retry),
                )?
                .writing_with(context.writers.clone()),
            ),
            SinkConfig::Delta(c) => Box::new(
                parquet::ParquetSink::new(
                    name,
                    c,
                    context.scope.clone(),
                    context.breakers.get(name, &c.retry),
                )?
                .writing_with(context.writers.clone())
                .logging_to_delta(c)?,
            ),
            SinkConfig::Redis(c) => Box::new(redis::RedisSink::new(
                name,
                c,
                context.scope.clone(),
                context.breakers.get(name, &c.retry),
            )?),
            SinkConfig::Postgres(c) => Box::new(postgres::PostgresSink::new(
                name,
                c,
                context.scope.clone(),
                context.breakers.get(name, &c.retry),
            )?),
            SinkConfig::Ndjson(c) => Box::new(ndjson::NdjsonSink::new(name, c, &context.files)?),
            SinkConfig::Kafka(c) => {
                let producer = context.producer.clone().ok_or_else(|| SinkError::Setup {
                    sink: name.to_string(),
                    reason: "a kafka sink needs a kafka source (it shares its transaction)".into(),
                })?;
                Box::new(KafkaSink::new(name, c, producer, context.registry.clone())?)
            }
        })
    }
}

/// The wall clock in epoch milliseconds (file ages, commit sequence numbers).
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn io_error(sink: &str, what: impl std::fmt::Display) -> SinkError {
    SinkError::Io {
        sink: sink.to_string(),
        reason: what.to_string(),
    }
}
