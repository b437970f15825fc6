//! Builds a running pipeline from a validated config: opens the geo database, loads and
//! instantiates every stage's plugin, creates the sinks, the dead-letter output and the source.

use std::path::Path;
use std::sync::Arc;

use super::decode::RecordDecoder;
use super::partition::PartitionPipeline;
use super::router::Router;
use super::stage::{Stage, WasmStage};
use crate::config::{ConfigError, PipelineConfig, SourceConfig};
use crate::error::Result;
use crate::runtime::{EngineSettings, GeoDb, InstanceSettings, PluginEngine};
use crate::sinks::dead_letter::DeadLetterFile;
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

/// The engine settings a config needs.
pub fn engine_settings(config: &PipelineConfig) -> EngineSettings {
    let stages = u32::try_from(config.stages.len()).unwrap_or(u32::MAX);
    EngineSettings {
        max_memory_bytes: config.max_memory_limit(),
        max_instances: 16 + stages * 4,
        ..Default::default()
    }
}

/// Opens the geo database named in the config, if any.
pub fn open_geo(config: &PipelineConfig) -> Result<Option<Arc<GeoDb>>> {
    Ok(match &config.geo {
        Some(geo) => Some(Arc::new(GeoDb::open(&geo.database)?)),
        None => None,
    })
}

/// Loads and initializes every stage of `config` from `plugin_dir`.
pub fn build_stages(
    config: &PipelineConfig,
    plugin_dir: &Path,
    engine: &Arc<PluginEngine>,
    geo: Option<Arc<GeoDb>>,
) -> Result<Vec<Box<dyn Stage>>> {
    let mut stages: Vec<Box<dyn Stage>> = Vec::new();
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
        let plugin = engine.load_file(&path)?;
        let settings = InstanceSettings {
            memory_limit: stage.memory_limit.0,
            cpu_limit: stage.cpu_limit.0,
        };
        let wasm = WasmStage::new(
            engine.clone(),
            &stage.name,
            plugin,
            settings,
            geo.clone(),
            stage.plugin_config(),
        )?;
        tracing::info!(stage = %stage.name, plugin = %stage.plugin, version = wasm.plugin().1.get(..12).unwrap_or(""), "Loaded stage.");
        stages.push(Box::new(wasm));
    }
    Ok(stages)
}

/// Builds the whole pipeline.
pub fn build(config: &PipelineConfig, plugin_dir: &Path) -> Result<BuiltPipeline> {
    let engine = Arc::new(PluginEngine::new(&engine_settings(config))?);
    let geo = open_geo(config)?;
    let stages = build_stages(config, plugin_dir, &engine, geo)?;
    let mut sinks = Vec::new();
    for (name, sink) in &config.sinks {
        sinks.push((sink.build(name)?, sink.routes().to_vec()));
    }
    let router = Router::new(
        sinks,
        Box::new(DeadLetterFile::create(&config.dead_letter.path)?),
    );
    let watermark = WatermarkTracker::new(WatermarkConfig {
        out_of_orderness: config.time.out_of_orderness.0,
        idle_timeout: config.time.idle_timeout.0,
    });
    let pipeline =
        PartitionPipeline::new(RecordDecoder::new(&config.event), stages, router, watermark);
    let (source, batch_size): (Box<dyn Source>, usize) = match &config.source {
        SourceConfig::File(f) => (Box::new(FileSource::open(&f.path)?), f.batch_size),
    };
    Ok(BuiltPipeline {
        pipeline,
        source,
        batch_size,
    })
}
