//! Builds running pipelines from a validated config. A [`PipelineFactory`] opens the geo
//! database and compiles every stage's plugin once; it then builds one [`PartitionPipeline`]
//! per source partition (fresh instances, state and sinks), and [`build`] wires a file source.

use std::path::Path;
use std::sync::Arc;

use super::decode::RecordDecoder;
use super::partition::PartitionPipeline;
use super::router::Router;
use super::stage::{Stage, WasmStage};
use crate::config::{ConfigError, PipelineConfig, SourceConfig};
use crate::error::Result;
use crate::kafka::DeadLetterTopic;
use crate::runtime::{EngineSettings, GeoDb, InstanceSettings, Plugin, PluginEngine};
use crate::sinks::dead_letter::DeadLetterFile;
use crate::sinks::resilience::Breakers;
use crate::sinks::{DeadLetterSink, SinkContext, SinkError};
use crate::source::Source;
use crate::source::file::FileSource;
use crate::state::{WatermarkConfig, WatermarkTracker};

/// A pipeline ready to run, with its source.
pub struct BuiltPipeline {
    /// The data path.
    pub pipeline: PartitionPipeline,
    /// Where records come from.
    pub source: Box<dyn Source>,
    /// Records per batch.
    pub batch_size: usize,
}

/// Builds partition pipelines for one config; plugins are compiled once.
pub struct PipelineFactory {
    config: PipelineConfig,
    engine: Arc<PluginEngine>,
    geo: Option<Arc<GeoDb>>,
    plugins: Vec<Plugin>,
    breakers: Breakers,
}

/// The engine settings a config needs for `partitions` partitions at once.
pub fn engine_settings(config: &PipelineConfig, partitions: u32) -> EngineSettings {
    let stages = u32::try_from(config.stages.len()).unwrap_or(u32::MAX);
    EngineSettings {
        max_memory_bytes: config.max_memory_limit(),
        max_instances: 16 + stages * 4 * partitions.max(1),
        ..Default::default()
    }
}

impl PipelineFactory {
    /// Opens the geo database and loads every stage's plugin from `plugin_dir`. The engine's
    /// instance pool is sized for `partitions` partitions.
    pub fn new(config: &PipelineConfig, plugin_dir: &Path, partitions: u32) -> Result<Self> {
        let engine = Arc::new(PluginEngine::new(&engine_settings(config, partitions))?);
        let geo = match &config.geo {
            Some(geo) => Some(Arc::new(GeoDb::open(&geo.database)?)),
            None => None,
        };
        let mut plugins = Vec::new();
        for (i, stage) in config.stages.iter().enumerate() {
            let path = plugin_dir.join(format!("{}.wasm", stage.plugin));
            if !path.is_file() {
                return Err(ConfigError::Invalid {
                    field: format!("stages[{i}].plugin"),
                    reason: format!(
                        "{} does not exist (build plugins with `cargo xtask build-plugins`)",
                        path.display()
                    ),
                }
                .into());
            }
            plugins.push(engine.load_file(&path)?);
        }
        Ok(PipelineFactory {
            config: config.clone(),
            engine,
            geo,
            plugins,
            breakers: Breakers::default(),
        })
    }

    /// Instantiates and initializes every stage (fresh state).
    pub fn stages(&self) -> Result<Vec<Box<dyn Stage>>> {
        let mut stages: Vec<Box<dyn Stage>> = Vec::new();
        for (stage, plugin) in self.config.stages.iter().zip(&self.plugins) {
            let settings = InstanceSettings {
                memory_limit: stage.memory_limit.0,
                cpu_limit: stage.cpu_limit.0,
            };
            let wasm = WasmStage::new(
                self.engine.clone(),
                &stage.name,
                plugin.clone(),
                settings,
                self.geo.clone(),
                stage.plugin_config(),
            )?;
            tracing::debug!(stage = %stage.name, plugin = %stage.plugin, version = wasm.plugin().1.get(..12).unwrap_or(""), "Instantiated stage.");
            stages.push(Box::new(wasm));
        }
        Ok(stages)
    }

    /// A whole partition pipeline: stages, sinks and dead-letter output for `context`.
    pub fn pipeline(&self, context: &SinkContext) -> Result<PartitionPipeline> {
        let context = SinkContext {
            breakers: self.breakers.clone(),
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
            (None, Some(path), _) => Box::new(DeadLetterFile::create(path)?),
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
            RecordDecoder::new(&self.config.event),
            self.stages()?,
            router,
            watermark,
        ))
    }

    /// Each stage's plugin, as the admin endpoint lists them.
    pub fn plugin_statuses(&self) -> Vec<crate::admin::PluginStatus> {
        let loaded_at = chrono::Utc::now().to_rfc3339();
        self.config
            .stages
            .iter()
            .zip(&self.plugins)
            .map(|(stage, plugin)| crate::admin::PluginStatus {
                stage: stage.name.clone(),
                plugin: stage.plugin.clone(),
                sha256: plugin.sha256.to_string(),
                loaded_at: loaded_at.clone(),
            })
            .collect()
    }

    /// The sinks' circuit breakers, shared by every pipeline this factory builds.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The config this factory builds.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }
}

/// Builds the pipeline of a file source.
pub fn build(config: &PipelineConfig, plugin_dir: &Path) -> Result<BuiltPipeline> {
    let SourceConfig::File(file) = &config.source else {
        return Err(ConfigError::Invalid {
            field: "source".into(),
            reason: "a kafka source runs through the Kafka daemon, not the file runner".into(),
        }
        .into());
    };
    let factory = PipelineFactory::new(config, plugin_dir, 1)?;
    for stage in &config.stages {
        tracing::info!(stage = %stage.name, plugin = %stage.plugin, "Loaded stage.");
    }
    Ok(BuiltPipeline {
        pipeline: factory.pipeline(&SinkContext::default())?,
        source: Box::new(FileSource::open(&file.path)?),
        batch_size: file.batch_size,
    })
}
