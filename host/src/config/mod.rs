//! The pipeline config file (TOML): parsed with unknown fields refused, then checked by a pure
//! [`PipelineConfig::validate`] that names the bad field. Building the running pipeline from
//! it (which does I/O) lives in [`crate::pipeline::build`].

mod env;
pub mod reload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::units::{ByteSize, HumanDuration};

use crate::checkpoint::CheckpointConfig;
use crate::kafka::KafkaSourceConfig;
use crate::sinks::SinkConfig;

/// A config that cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// Config path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown field or a value of the wrong type.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// Config path.
        path: PathBuf,
        /// The parser's message (it names the field and line).
        message: String,
    },
    /// A field has a value that parses but cannot work.
    #[error("invalid config: `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `stages[1].memory_limit`.
        field: String,
        /// Why it cannot work.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A whole pipeline: source, how to read events, stages, sinks and the dead-letter output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Folder, or object-store prefix (`s3://bucket/dir`), holding `<plugin>.wasm` files.
    /// Overridden by `--plugin-dir` / `WEIR_PLUGIN_DIR`.
    #[serde(default = "default_plugin_dir")]
    pub plugin_dir: PathBuf,
    /// How new plugin versions are found besides the folder watcher.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Where records come from.
    pub source: SourceConfig,
    /// How the key and event time are read from each record.
    #[serde(default)]
    pub event: EventConfig,
    /// Watermark settings.
    #[serde(default)]
    pub time: TimeConfig,
    /// The geo database plugins reach through the `geo` capability.
    #[serde(default)]
    pub geo: Option<GeoConfig>,
    /// The transform stages, in order.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// Sinks by name; each takes the routes it lists.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Where dead letters go.
    pub dead_letter: DeadLetterConfig,
    /// Checkpoints of a Kafka source: interval, store and delivery guarantee.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// The admin HTTP endpoint.
    #[serde(default)]
    pub admin: crate::admin::AdminConfig,
    /// How the instance uses the machine's cores.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Spans and metrics over OpenTelemetry's OTLP.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The schema registry that Avro records name their schemas in.
    #[serde(default)]
    pub schema_registry: Option<crate::source::registry::RegistryConfig>,
}

/// How new plugin versions are found: a folder is watched (inotify); an `s3://` plugin_dir, or
/// a folder on a network volume whose writers inotify does not see, is polled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// How often the plugin files are checked for new versions. Default: every 10 s for an
    /// `s3://` plugin_dir; a folder is only polled when this is set.
    #[serde(default)]
    pub poll_interval: Option<HumanDuration>,
    /// S3 options of an `s3://` plugin_dir.
    #[serde(default)]
    pub s3: crate::storage::S3Options,
}

impl PluginsConfig {
    /// The poll interval, if the plugin files are polled at all.
    pub fn poll_interval(&self, plugin_dir: &std::path::Path) -> Option<std::time::Duration> {
        let remote = plugin_dir.to_str().is_some_and(|d| d.starts_with("s3://"));
        match self.poll_interval {
            Some(interval) => Some(interval.0),
            None => remote.then_some(std::time::Duration::from_secs(10)),
        }
    }
}

/// How the instance uses the machine's cores.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads that run partitions, each partition on one thread at a time (default: the
    /// machine's cores). They share the compiled plugins, the geo database and the producer.
    #[serde(default)]
    pub workers: Option<usize>,
}

impl RuntimeConfig {
    /// The worker count: as configured, else the machine's cores.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

fn default_plugin_dir() -> PathBuf {
    PathBuf::from("target/plugins")
}

/// Where records come from: a `[source.file]` or a `[source.kafka]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum SourceConfig {
    /// Newline-delimited JSON from a file, a folder of `.ndjson`/`.jsonl` files, or `-` (stdin).
    File(FileSourceConfig),
    /// A Kafka consumer group.
    Kafka(KafkaSourceConfig),
}

/// The NDJSON file source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, a folder, or `-` for standard input.
    pub path: PathBuf,
    /// Records per batch handed to the stages.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Virtual partitions the input is split into by key hash (default: the workers), so a
    /// backfill uses every core; each has its own state, watermark and output files.
    #[serde(default)]
    pub partitions: Option<usize>,
    /// Standard input: how long a batch waits to fill before what arrived is processed.
    #[serde(default = "default_file_batch_timeout")]
    pub batch_timeout: HumanDuration,
}

fn default_batch_size() -> usize {
    512
}

fn default_file_batch_timeout() -> HumanDuration {
    HumanDuration::from_millis(50)
}

/// How to read the key and the event time of a record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// JSON field holding the entity key (string or number). Falls back to the record key.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// JSON field holding the event time: an RFC 3339 string or epoch milliseconds. Falls
    /// back to the record timestamp.
    #[serde(default = "default_time_field")]
    pub time_field: String,
    /// Largest record value accepted; a larger one is dead-lettered (`too large`).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// How far ahead of the wall clock an event time may be. A time further ahead (a device
    /// with a wrong clock) would move the watermark and make every other event late, so it is
    /// dead-lettered (`invalid time`), as are times before 1970.
    #[serde(default = "default_max_future")]
    pub max_future: HumanDuration,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            key_field: default_key_field(),
            time_field: default_time_field(),
            max_bytes: default_max_bytes(),
            max_future: default_max_future(),
        }
    }
}

fn default_max_bytes() -> ByteSize {
    ByteSize(1 << 20)
}

fn default_max_future() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}

fn default_key_field() -> String {
    "user_id".into()
}

fn default_time_field() -> String {
    "ts".into()
}

/// Watermark settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// How far the watermark trails the newest event time.
    #[serde(default = "default_out_of_orderness")]
    pub out_of_orderness: HumanDuration,
    /// After this long without records, the watermark advances with processing time.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            out_of_orderness: default_out_of_orderness(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_out_of_orderness() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

/// The MaxMind database behind the `geo` capability.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// Path of a GeoLite2-City or GeoLite2-Country `.mmdb` file.
    pub database: PathBuf,
}

/// One transform stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Stage name, unique in the pipeline; used in metrics, logs and dead letters.
    pub name: String,
    /// Plugin name: the stage runs `<plugin_dir>/<plugin>.wasm`.
    pub plugin: String,
    /// Linear memory limit of one instance.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// Time budget of one call into the plugin.
    #[serde(default = "default_cpu_limit")]
    pub cpu_limit: HumanDuration,
    /// Largest output (all outputs' bytes together) one input record or timer may produce.
    #[serde(default = "default_output_limit")]
    pub output_limit: ByteSize,
    /// Largest state (keys and values) the stage may hold in one partition.
    #[serde(default = "default_state_limit")]
    pub state_limit: ByteSize,
    /// Most pending timers the stage may hold in one partition.
    #[serde(default = "default_timer_limit")]
    pub timer_limit: usize,
    /// Lifetime, in event time since the last write, of the stage's state entries whose name
    /// the plugin gave no lifetime of its own; none: they live until deleted.
    #[serde(default)]
    pub state_ttl: Option<HumanDuration>,
    /// How long the stage's breaker stays open once most of a batch failed: records skip the
    /// plugin and go to the dead-letter output, and timers wait.
    #[serde(default = "default_breaker_open")]
    pub breaker_open: HumanDuration,
    /// Key/value settings passed to the plugin's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
}

fn default_memory_limit() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_output_limit() -> ByteSize {
    ByteSize(1 << 20)
}

fn default_state_limit() -> ByteSize {
    ByteSize(1 << 30)
}

fn default_timer_limit() -> usize {
    1_000_000
}

fn default_breaker_open() -> HumanDuration {
    HumanDuration(crate::pipeline::stage_breaker::DEFAULT_OPEN)
}

fn default_cpu_limit() -> HumanDuration {
    HumanDuration::from_millis(500)
}

impl StageConfig {
    /// The per-call limits of the stage's instances.
    pub fn instance_settings(&self) -> crate::runtime::InstanceSettings {
        crate::runtime::InstanceSettings {
            memory_limit: self.memory_limit.0,
            cpu_limit: self.cpu_limit.0,
            output_limit: self.output_limit.0,
            state_limit: self.state_limit.0,
            timer_limit: self.timer_limit,
            state_ttl: self.state_ttl.map(|d| d.0),
        }
    }

    /// The `config` table as the string pairs `init` receives.
    pub fn plugin_config(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect()
    }
}

/// Where dead letters go: a file (file source) or a topic (Kafka source).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// NDJSON file receiving one object per dead letter: reason, stage, plugin, source and the
    /// original record.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Topic receiving the original record with `weir.dlq.*` headers, in the epoch's
    /// transaction.
    #[serde(default)]
    pub topic: Option<String>,
}

/// Routes that always exist: `main` is what the last stage emits.
pub const MAIN_ROUTE: &str = "main";

impl PipelineConfig {
    /// Reads, parses and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates the config text read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        };
        // Read straight from the text (errors then name the line) unless variables must be
        // expanded first.
        let config: PipelineConfig = if text.contains("${") {
            let mut value: toml::Value = toml::from_str(text).map_err(parse_error)?;
            env::interpolate(&mut value, "")
                .map_err(|(field, reason)| ConfigError::Invalid { field, reason })?;
            value.try_into().map_err(parse_error)?
        } else {
            toml::from_str(text).map_err(parse_error)?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot: names, limits, routes. Does no I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_source()?;
        if let Some(registry) = &self.schema_registry {
            registry
                .validate()
                .map_err(|(field, reason)| invalid(field, reason))?;
        }
        self.telemetry
            .validate()
            .map_err(|(field, reason)| invalid(format!("telemetry.{field}"), reason))?;
        self.admin
            .address()
            .map_err(|reason| invalid("admin.listen", &reason))?;
        if self.event.key_field.is_empty() {
            return Err(invalid("event.key_field", "must not be empty"));
        }
        if self.event.time_field.is_empty() {
            return Err(invalid("event.time_field", "must not be empty"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, stage) in self.stages.iter().enumerate() {
            let field = |f: &str| format!("stages[{i}].{f}");
            if stage.name.is_empty() || !names.insert(stage.name.as_str()) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is empty or used by another stage", stage.name),
                ));
            }
            let valid_plugin = !stage.plugin.is_empty()
                && stage
                    .plugin
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_plugin {
                return Err(invalid(
                    field("plugin"),
                    format!(
                        "{:?} must be a plugin name (letters, digits, - and _)",
                        stage.plugin
                    ),
                ));
            }
            if stage.memory_limit.0 < (1 << 20) || stage.memory_limit.0 > (4 << 30) {
                return Err(invalid(
                    field("memory_limit"),
                    "must be between 1MiB and 4GiB",
                ));
            }
            if stage.cpu_limit.0 < std::time::Duration::from_millis(1)
                || stage.cpu_limit.0 > std::time::Duration::from_secs(600)
            {
                return Err(invalid(field("cpu_limit"), "must be between 1ms and 10m"));
            }
            if stage.output_limit.0 < 1024 {
                return Err(invalid(field("output_limit"), "must be at least 1KiB"));
            }
            if stage.state_limit.0 < 1024 {
                return Err(invalid(field("state_limit"), "must be at least 1KiB"));
            }
            if stage.timer_limit == 0 {
                return Err(invalid(field("timer_limit"), "must be at least 1"));
            }
            if stage
                .state_ttl
                .is_some_and(|d| d.0 < std::time::Duration::from_secs(1))
            {
                return Err(invalid(field("state_ttl"), "must be at least 1s"));
            }
            if stage.breaker_open.0.is_zero() {
                return Err(invalid(field("breaker_open"), "must be longer than zero"));
            }
        }
        if self.sinks.is_empty() {
            return Err(invalid("sinks", "at least one sink is needed"));
        }
        let mut has_main = false;
        for (name, sink) in &self.sinks {
            sink.validate()
                .map_err(|(field, reason)| invalid(format!("sinks.{name}.{field}"), reason))?;
            let needs_registry = match sink {
                SinkConfig::Kafka(kafka) => {
                    (kafka.format != crate::sinks::kafka::OutputFormat::Json).then_some("format")
                }
                SinkConfig::Parquet(parquet) | SinkConfig::Delta(parquet) => {
                    parquet.schema_subject.as_ref().map(|_| "schema_subject")
                }
                _ => None,
            };
            if let (Some(field), None) = (needs_registry, &self.schema_registry) {
                return Err(invalid(
                    format!("sinks.{name}.{field}"),
                    "the schema comes from a registry: add a [schema_registry] table with its url",
                ));
            }
            has_main |= sink.routes().iter().any(|r| r == MAIN_ROUTE);
        }
        if !has_main {
            return Err(invalid(
                "sinks",
                format!("no sink takes route `{MAIN_ROUTE}` (what the last stage emits)"),
            ));
        }
        self.checkpoint
            .validate()
            .map_err(|(field, reason)| invalid(format!("checkpoint.{field}"), reason))?;
        Ok(())
    }

    /// The source's own settings, and which outputs a source kind can feed.
    fn validate_source(&self) -> Result<(), ConfigError> {
        let batch_size = match &self.source {
            SourceConfig::File(f) => f.batch_size,
            SourceConfig::Kafka(k) => k.batch_size,
        };
        let kind = match &self.source {
            SourceConfig::File(_) => "file",
            SourceConfig::Kafka(_) => "kafka",
        };
        if batch_size == 0 || batch_size > 100_000 {
            return Err(invalid(
                format!("source.{kind}.batch_size"),
                "must be between 1 and 100000",
            ));
        }
        if self.runtime.workers.is_some_and(|w| w == 0 || w > 1024) {
            return Err(invalid("runtime.workers", "must be between 1 and 1024"));
        }
        if let SourceConfig::File(f) = &self.source
            && f.partitions.is_some_and(|p| p == 0 || p > 1024)
        {
            return Err(invalid(
                "source.file.partitions",
                "must be between 1 and 1024",
            ));
        }
        let dead_letter = (&self.dead_letter.path, &self.dead_letter.topic);
        match &self.source {
            SourceConfig::File(_) => {
                if dead_letter.0.is_none() || dead_letter.1.is_some() {
                    return Err(invalid(
                        "dead_letter",
                        "a file source writes dead letters to a file: set `path` (not `topic`)",
                    ));
                }
                if let Some((name, _)) = self
                    .sinks
                    .iter()
                    .find(|(_, s)| matches!(s, SinkConfig::Kafka(_)))
                {
                    return Err(invalid(
                        format!("sinks.{name}"),
                        "a kafka sink needs a kafka source (it commits in the source's transaction)",
                    ));
                }
            }
            SourceConfig::Kafka(kafka) => {
                kafka
                    .validate()
                    .map_err(|(field, reason)| invalid(format!("source.kafka.{field}"), reason))?;
                if kafka.format != crate::kafka::ValueFormat::Json && self.schema_registry.is_none()
                {
                    return Err(invalid(
                        "source.kafka.format",
                        format!(
                            "{} records name their schema in a registry: add a \
                             [schema_registry] table with its url",
                            kafka.format.name()
                        ),
                    ));
                }
                if dead_letter.1.as_ref().is_none_or(String::is_empty) || dead_letter.0.is_some() {
                    return Err(invalid(
                        "dead_letter",
                        "a kafka source writes dead letters to a topic in its transaction: set \
                         `topic` (not `path`)",
                    ));
                }
                if let Some((name, _)) = self
                    .sinks
                    .iter()
                    .find(|(_, s)| matches!(s, SinkConfig::Ndjson(_)))
                {
                    return Err(invalid(
                        format!("sinks.{name}"),
                        "an ndjson sink cannot take part in checkpoints; use parquet or kafka",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The largest memory limit of any stage.
    pub fn max_memory_limit(&self) -> usize {
        self.stages
            .iter()
            .map(|s| s.memory_limit.0)
            .max()
            .unwrap_or(64 << 20)
    }
}
