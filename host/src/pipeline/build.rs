//! Builds running pipelines from a validated config. A [`PipelineFactory`] opens the geo
//! database and loads every stage's plugin once into the [`PluginRegistry`] (and can watch
//! the plugin folder for new versions); it then builds one [`PartitionPipeline`] per source
//! partition (fresh instances, state and sinks), and [`build`] wires a file source.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::decode::RecordDecoder;
use super::partition::PartitionPipeline;
use super::plugin_poller::PluginPoller;
use super::plugin_source::PluginSource;
use super::plugins::PluginRegistry;
use super::router::Router;
use super::stage::Stage;
use super::wasm_stage::WasmStage;
use super::watcher::{DEBOUNCE, PluginWatcher};
use crate::config::{ConfigError, PipelineConfig, SourceConfig};
use crate::error::Result;
use crate::kafka::ValueFormat;
use crate::runtime::{EngineSettings, GeoDb, PluginEngine};
use crate::sinks::dead_letter::{DeadLetterFile, DeadLetterTopic};
use crate::sinks::files::OutputFiles;
use crate::sinks::parquet::Writers;
use crate::sinks::resilience::Breakers;
use crate::sinks::{DeadLetterSink, SinkConfig, SinkContext, SinkError};
use crate::source::Source;
use crate::source::avro::AvroDecoder;
use crate::source::file::FileSource;
use crate::source::json_schema::JsonSchemaDecoder;
use crate::source::protobuf::ProtobufDecoder;
use crate::source::registry::{Patience, SchemaRegistry};
use crate::source::schemas::ToJson;
use crate::state::{WatermarkConfig, WatermarkTracker};

/// A pipeline ready to run, with its source.
pub struct BuiltPipeline {
    /// The data path of each (virtual) partition: records go to the one their key hashes to.
    pub partitions: Vec<PartitionPipeline>,
    /// The field holding the key (what partitions the input).
    pub key_field: String,
    /// Threads the partitions run on.
    pub workers: usize,
    /// Where records come from.
    pub source: Box<dyn Source>,
    /// Records per batch.
    pub batch_size: usize,
    /// What built it: the plugin registry (watching for new versions) and the config.
    pub factory: PipelineFactory,
}

/// Builds partition pipelines for one config; plugins are compiled once, into a
/// [`PluginRegistry`] whose new versions every pipeline it built picks up.
pub struct PipelineFactory {
    config: PipelineConfig,
    source: Arc<PluginSource>,
    /// How often `source` is polled for new versions, if at all.
    poll_interval: Option<Duration>,
    registry: Arc<PluginRegistry>,
    breakers: Breakers,
    files: OutputFiles,
    watcher: Option<PluginWatcher>,
    poller: Option<PluginPoller>,
    /// Turns registry-framed values into JSON, for such a topic; shared by every partition.
    converter: Option<Arc<dyn ToJson>>,
    /// The schema registry's client, when the config has one.
    schema_registry: Option<SchemaRegistry>,
}

/// `config` with the columns of every Parquet sink that names a `schema_subject` filled in
/// from the registry, asked with `patience`.
fn with_subject_columns(
    config: &PipelineConfig,
    registry: Option<&SchemaRegistry>,
    patience: Patience,
) -> Result<PipelineConfig, ConfigError> {
    let mut config = config.clone();
    for (name, sink) in &mut config.sinks {
        let (SinkConfig::Parquet(parquet) | SinkConfig::Delta(parquet)) = sink else {
            continue;
        };
        let Some(subject) = &parquet.schema_subject else {
            continue;
        };
        let invalid = |reason: String| ConfigError::Invalid {
            field: format!("sinks.{name}.schema_subject"),
            reason,
        };
        let registry = registry.ok_or_else(|| invalid("needs a [schema_registry]".into()))?;
        parquet.schema = crate::sinks::parquet::columns_of_subject(registry, subject, patience)
            .map_err(invalid)?;
        tracing::info!(sink = %name, subject, columns = parquet.schema.len(), "Parquet columns from the schema registry.");
    }
    Ok(config)
}

/// The converter of registry-framed values to JSON, when the source's records are framed.
fn converter(
    config: &PipelineConfig,
    registry: Option<&SchemaRegistry>,
) -> Option<Arc<dyn ToJson>> {
    let SourceConfig::Kafka(kafka) = &config.source else {
        return None;
    };
    let (ValueFormat::Avro | ValueFormat::Protobuf | ValueFormat::JsonSchema, Some(registry)) =
        (kafka.format, registry.cloned())
    else {
        return None;
    };
    Some(match kafka.format {
        ValueFormat::Protobuf => Arc::new(ProtobufDecoder::new(registry)),
        ValueFormat::JsonSchema => Arc::new(JsonSchemaDecoder::new(registry)),
        _ => Arc::new(AvroDecoder::new(registry)),
    })
}

/// The engine settings a config needs for `partitions` partitions at once.
pub fn engine_settings(config: &PipelineConfig, partitions: u32) -> EngineSettings {
    let stages = u32::try_from(config.stages.len()).unwrap_or(u32::MAX);
    EngineSettings {
        max_memory_bytes: config.max_memory_limit(),
        // Room for a reload: a trial instance per stage, and each partition's swap.
        max_instances: 16 + stages * 4 * partitions.max(1),
        ..Default::default()
    }
}

impl PipelineFactory {
    /// Opens the geo database and loads every stage's plugin from `plugin_dir` (a folder or
    /// an `s3://` prefix). The engine's instance pool is sized for `partitions` partitions.
    pub fn new(config: &PipelineConfig, plugin_dir: &Path, partitions: u32) -> Result<Self> {
        let breakers = Breakers::default();
        let schema_registry = match &config.schema_registry {
            Some(registry) => Some(
                SchemaRegistry::new(registry, &breakers)
                    .map_err(|(field, reason)| ConfigError::Invalid { field, reason })?,
            ),
            None => None,
        };
        let config = &with_subject_columns(config, schema_registry.as_ref(), Patience::Wait)?;
        let source = PluginSource::open(plugin_dir, &config.plugins.s3).map_err(|reason| {
            ConfigError::Invalid {
                field: "plugin_dir".into(),
                reason,
            }
        })?;
        let engine = Arc::new(PluginEngine::new(&engine_settings(config, partitions))?);
        let geo = match &config.geo {
            Some(geo) => Some(Arc::new(GeoDb::open(&geo.database)?)),
            None => None,
        };
        let registry = PluginRegistry::load(config, &source, engine, geo)?;
        Ok(PipelineFactory {
            config: config.clone(),
            source: Arc::new(source),
            poll_interval: config.plugins.poll_interval(plugin_dir),
            registry: Arc::new(registry),
            breakers,
            files: OutputFiles::default(),
            watcher: None,
            poller: None,
            converter: converter(config, schema_registry.as_ref()),
            schema_registry,
        })
    }

    /// Starts watching the plugin folder (and polling the plugin source, when it is an
    /// object store or `[plugins] poll_interval` asks for it): new versions of the stages'
    /// plugins are loaded and swapped in while the pipelines run.
    pub fn watch_plugins(&mut self) -> Result<()> {
        let cannot = |e: &dyn std::fmt::Display| ConfigError::Invalid {
            field: "plugin_dir".into(),
            reason: format!("cannot watch {}: {e}", self.source.describe()),
        };
        if let Some(dir) = self.source.folder() {
            let watcher = PluginWatcher::start(self.registry.clone(), dir, DEBOUNCE)
                .map_err(|e| cannot(&e))?;
            self.watcher = Some(watcher);
        }
        if let Some(interval) = self.poll_interval {
            let poller = PluginPoller::start(self.registry.clone(), self.source.clone(), interval)
                .map_err(|e| cannot(&e))?;
            self.poller = Some(poller);
        }
        Ok(())
    }

    /// Instantiates and initializes every stage (fresh state) at its current version.
    pub fn stages(&self) -> Result<Vec<Box<dyn Stage>>> {
        let mut stages: Vec<Box<dyn Stage>> = Vec::new();
        for slot in self.registry.slots() {
            let wasm = WasmStage::in_slot(
                self.registry.engine().clone(),
                slot.clone(),
                self.registry.geo().cloned(),
            )?;
            tracing::debug!(stage = %slot.stage(), version = wasm.plugin().1.get(..12).unwrap_or(""), "Instantiated stage.");
            stages.push(Box::new(wasm));
        }
        Ok(stages)
    }

    /// A whole partition pipeline: stages, sinks and dead-letter output for `context`.
    pub fn pipeline(&self, context: &SinkContext) -> Result<PartitionPipeline> {
        let context = SinkContext {
            breakers: self.breakers.clone(),
            files: self.files.clone(),
            registry: self.schema_registry.clone(),
            ..context.clone()
        };
        let mut sinks = Vec::new();
        for (name, sink) in &self.config.sinks {
            sinks.push((sink.build(name, &context)?, sink.routes().to_vec()));
        }
        let dead_letters: Box<dyn DeadLetterSink> = match (
            &self.config.dead_letter.topic,
            &self.config.dead_letter.path,
            &context.producer,
        ) {
            (Some(topic), _, Some(producer)) => {
                Box::new(DeadLetterTopic::new(topic, producer.clone()))
            }
            (None, Some(path), _) => Box::new(DeadLetterFile::create(path, &self.files)?),
            _ => {
                return Err(SinkError::Setup {
                    sink: "dead_letter".into(),
                    reason: "a dead-letter topic needs a kafka source".into(),
                }
                .into());
            }
        };
        let router = Router::new(sinks, dead_letters);
        let watermark = WatermarkTracker::new(WatermarkConfig {
            out_of_orderness: self.config.time.out_of_orderness.0,
            idle_timeout: self.config.time.idle_timeout.0,
        });
        Ok(PartitionPipeline::new(
            RecordDecoder::new(&self.config.event).with_converter(self.converter.clone()),
            self.stages()?,
            router,
            watermark,
        ))
    }

    /// The plugin registry: each stage's version, for reloads and the admin endpoint.
    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.registry
    }

    /// Replaces the config that sinks and routes are built from (a config reload; the
    /// stages' `config` tables go through [`PluginRegistry::reconfigure`]), with the columns
    /// of its `schema_subject` tables from the registry (asked without waiting: a registry that
    /// cannot answer now refuses the reload rather than stall the pipeline); an error leaves
    /// the config as it was. Pipelines built before keep theirs.
    pub fn set_config(&mut self, config: PipelineConfig) -> Result<(), ConfigError> {
        self.config =
            with_subject_columns(&config, self.schema_registry.as_ref(), Patience::Tries)?;
        Ok(())
    }

    /// The sinks' circuit breakers, shared by every pipeline this factory builds.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// Whether a sink marks complete hours, and so needs to know every writer of its table.
    pub fn marks_completion(&self) -> bool {
        self.config.sinks.values().any(
            |sink| matches!(sink, crate::sinks::SinkConfig::Parquet(c) | crate::sinks::SinkConfig::Delta(c) if c.completion.is_some()),
        )
    }

    /// The config this factory builds.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }
}

/// Builds the pipeline of a file source: one partition pipeline per virtual partition
/// (`source.file.partitions`, default the workers), on `runtime.workers` threads.
pub fn build(config: &PipelineConfig, plugin_dir: &Path) -> Result<BuiltPipeline> {
    let SourceConfig::File(file) = &config.source else {
        return Err(ConfigError::Invalid {
            field: "source".into(),
            reason: "a kafka source runs through the Kafka daemon, not the file runner".into(),
        }
        .into());
    };
    let workers = config.runtime.workers();
    let partitions = file.partitions.unwrap_or(workers).max(1);
    let mut factory = PipelineFactory::new(
        config,
        plugin_dir,
        u32::try_from(partitions).unwrap_or(u32::MAX),
    )?;
    for stage in &config.stages {
        tracing::info!(stage = %stage.name, plugin = %stage.plugin, "Loaded stage.");
    }
    factory.watch_plugins()?;
    // This run's partitions fill each table together: an hour is complete once all have
    // passed it. Named by run, so a backfill does not wait on the partitions of another run.
    let run = format!(
        "file-{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        rand::random::<u16>()
    );
    let all: Arc<[String]> = (0..partitions).map(|p| format!("{run}-{p}")).collect();
    let pipelines = (0..partitions)
        .map(|p| {
            factory.pipeline(&SinkContext {
                writers: Some(Writers {
                    this: all[p].clone(),
                    all: all.clone(),
                }),
                ..SinkContext::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(BuiltPipeline {
        partitions: pipelines,
        key_field: config.event.key_field.clone(),
        workers: workers.min(partitions),
        source: Box::new(FileSource::open(&file.path, file.batch_timeout.0)?),
        batch_size: file.batch_size,
        factory,
    })
}
