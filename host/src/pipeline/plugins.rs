//! The plugin registry: each stage's current plugin version (component, `init` config, load
//! time, call statistics) in a [`StageSlot`] that the stage checks at every batch boundary.
//! A reload compiles (or finds in the cache by sha256), type-checks and trial-`init`s the new
//! version with each stage's config off the hot path, and publishes it only if every step
//! passes; otherwise the rejection is recorded and the running version stays.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::plugin_source::PluginSource;
use super::stage_breaker::StageBreaker;
use crate::config::{ConfigError, PipelineConfig, StageConfig};
use crate::error::Result;
use crate::runtime::{
    CallStats, CallSummary, GeoDb, InstanceLabels, InstanceSettings, Plugin, PluginEngine,
    PluginInstance, RuntimeError, sha256_hex,
};

/// Compiled components kept by sha256, so switching back to a recent version skips compiling.
const CACHED_VERSIONS: usize = 16;

/// One version of a stage: the plugin, the config its `init` gets, and how its calls went.
#[derive(Debug)]
pub struct StageVersion {
    /// The compiled plugin.
    pub plugin: Plugin,
    /// The stage's `config` table, as `init` receives it.
    pub config: Vec<(String, String)>,
    /// When this version was published (RFC 3339).
    pub loaded_at: String,
    /// Calls into this version, over every partition.
    pub stats: CallStats,
    /// Opens when most of this version's records fail; a new version starts closed.
    pub breaker: StageBreaker,
}

impl StageVersion {
    /// A version of `stage`: `plugin` with `config`, loaded now, its breaker closed.
    fn new(
        stage: &str,
        breaker_open: Duration,
        plugin: Plugin,
        config: Vec<(String, String)>,
    ) -> Self {
        StageVersion {
            plugin,
            config,
            loaded_at: chrono::Utc::now().to_rfc3339(),
            stats: CallStats::default(),
            breaker: StageBreaker::new(stage, breaker_open),
        }
    }
}

/// Where a stage finds its current version. Publishing bumps the generation; stages compare
/// it with theirs (one atomic load) before each batch.
#[derive(Debug)]
pub struct StageSlot {
    stage: String,
    plugin: String,
    settings: InstanceSettings,
    breaker_open: Duration,
    generation: AtomicU64,
    current: Mutex<Arc<StageVersion>>,
    /// The version a partition of the stage last swapped to: what `/plugins` shows as serving
    /// (a published version only serves from the stage's next batch).
    serving: Mutex<Arc<StageVersion>>,
}

impl StageSlot {
    /// The slot of stage `stage`, running `plugin` with `config`; its breaker stays open
    /// `breaker_open` once tripped.
    pub fn new(
        stage: &str,
        plugin: Plugin,
        settings: InstanceSettings,
        config: Vec<(String, String)>,
        breaker_open: Duration,
    ) -> Self {
        let version = Arc::new(StageVersion::new(stage, breaker_open, plugin, config));
        StageSlot {
            stage: stage.to_string(),
            plugin: version.plugin.name().to_string(),
            settings,
            breaker_open,
            generation: AtomicU64::new(0),
            current: Mutex::new(version.clone()),
            serving: Mutex::new(version),
        }
    }

    /// The stage's name.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The name of the plugin the stage runs (its file is `<plugin>.wasm`).
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The instance limits of the stage.
    pub fn settings(&self) -> InstanceSettings {
        self.settings
    }

    /// The generation of the current version.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current version and its generation.
    pub fn current(&self) -> (u64, Arc<StageVersion>) {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (self.generation(), current.clone())
    }

    /// A partition of the stage swapped to `version`.
    pub fn swapped_to(&self, version: &Arc<StageVersion>) {
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = version.clone();
    }

    fn serving(&self) -> Arc<StageVersion> {
        self.serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The labels an instance of `plugin` in this stage logs and counts with.
    pub fn labels(&self, plugin: &Plugin) -> InstanceLabels {
        InstanceLabels {
            stage: self.stage.as_str().into(),
            plugin: self.plugin.as_str().into(),
            version: plugin.version().into(),
        }
    }

    fn publish(&self, plugin: Plugin, config: Vec<(String, String)>) {
        let version = StageVersion::new(&self.stage, self.breaker_open, plugin, config);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(version);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Why a plugin file was last refused.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejection {
    /// When (RFC 3339).
    pub at: String,
    /// sha256 of the refused file.
    pub sha256: String,
    /// What failed: reading, compiling, the world check or `init`.
    pub reason: String,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new version is published to these stages; they swap at their next batch.
    Loaded {
        /// Short sha256 of the new version.
        version: String,
        /// Stages that run it.
        stages: Vec<String>,
    },
    /// The file is the version already running.
    Unchanged,
    /// No stage runs a plugin of this name.
    Unused,
    /// Refused; the running version stays.
    Rejected(String),
}

/// One stage's plugin as `/plugins` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    /// The stage running it.
    pub stage: String,
    /// Plugin name.
    pub plugin: String,
    /// sha256 of the component serving: the version the stage runs (swapped in).
    pub sha256: String,
    /// When the serving version was loaded (RFC 3339).
    pub loaded_at: String,
    /// sha256 of a version loaded but not yet swapped in (the stage swaps at its next batch).
    pub pending_sha256: Option<String>,
    /// Calls, failures and latency of this version.
    #[serde(flatten)]
    pub calls: CallSummary,
    /// The last file of this plugin that was refused, if any.
    pub last_rejection: Option<Rejection>,
    /// `open` while the stage's breaker refuses calls (see `StageBreaker`), else `closed`.
    pub breaker: &'static str,
}

/// Every stage's slot, the engine that compiles for them and the cache of compiled versions.
pub struct PluginRegistry {
    engine: Arc<PluginEngine>,
    geo: Option<Arc<GeoDb>>,
    slots: Vec<Arc<StageSlot>>,
    compiled: Mutex<HashMap<(String, String), Plugin>>,
    rejections: Mutex<BTreeMap<String, Rejection>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl PluginRegistry {
    /// Loads every stage's plugin from `source`; at start a missing or broken plugin is an
    /// error.
    pub fn load(
        config: &PipelineConfig,
        source: &PluginSource,
        engine: Arc<PluginEngine>,
        geo: Option<Arc<GeoDb>>,
    ) -> Result<Self> {
        let mut registry = PluginRegistry {
            engine,
            geo,
            slots: Vec::new(),
            compiled: Mutex::new(HashMap::new()),
            rejections: Mutex::new(BTreeMap::new()),
        };
        for (i, stage) in config.stages.iter().enumerate() {
            let invalid = |reason: String| ConfigError::Invalid {
                field: format!("stages[{i}].plugin"),
                reason,
            };
            let Some(bytes) = source.read(&stage.plugin).map_err(invalid)? else {
                return Err(invalid(format!(
                    "{} does not exist: build the plugin's crate with `cargo build \
                     --release --target wasm32-wasip2` and copy its .wasm there as \
                     {}.wasm (or point plugin_dir at the place that has it)",
                    source.location(&stage.plugin),
                    stage.plugin
                ))
                .into());
            };
            let plugin = registry.compile(&stage.plugin, &bytes)?;
            let slot = StageSlot::new(
                &stage.name,
                plugin,
                stage.instance_settings(),
                stage.plugin_config(),
                stage.breaker_open.0,
            );
            registry.slots.push(Arc::new(slot));
        }
        Ok(registry)
    }

    /// The engine every version is compiled for.
    pub fn engine(&self) -> &Arc<PluginEngine> {
        &self.engine
    }

    /// The geo database plugins reach.
    pub fn geo(&self) -> Option<&Arc<GeoDb>> {
        self.geo.as_ref()
    }

    /// The stages' slots, in pipeline order.
    pub fn slots(&self) -> &[Arc<StageSlot>] {
        &self.slots
    }

    /// Compiles and type-checks `bytes`, or takes the compiled version with the same name
    /// and sha256.
    fn compile(&self, name: &str, bytes: &[u8]) -> std::result::Result<Plugin, RuntimeError> {
        let key = (name.to_string(), sha256_hex(bytes));
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plugin) = compiled.get(&key) {
            return Ok(plugin.clone());
        }
        drop(compiled);
        let plugin = self.engine.load_bytes(name, bytes)?;
        compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if compiled.len() >= CACHED_VERSIONS {
            compiled.clear();
        }
        compiled.insert(key, plugin.clone());
        Ok(plugin)
    }

    /// Instantiates `plugin` for `slot` and runs its `init` with `config`, then drops it.
    fn trial(
        &self,
        slot: &StageSlot,
        plugin: &Plugin,
        config: &[(String, String)],
    ) -> std::result::Result<(), RuntimeError> {
        PluginInstance::new(
            &self.engine,
            plugin,
            slot.labels(plugin),
            slot.settings,
            self.geo.clone(),
            config,
        )
        .map(drop)
    }

    /// Loads the plugin file at `path` as the new version of every stage running a plugin
    /// of its name. Logs and counts the outcome (`weir_plugin_reloads_total{plugin,result}`).
    pub fn reload_file(&self, path: &Path) -> ReloadOutcome {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !self.slots.iter().any(|s| s.plugin == name) {
            tracing::debug!(file = %path.display(), "No stage runs this plugin; ignored.");
            return ReloadOutcome::Unused;
        }
        match std::fs::read(path) {
            Ok(bytes) => self.reload_bytes(&name, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(plugin = %name, "Plugin file removed; the running version stays.");
                ReloadOutcome::Unchanged
            }
            Err(e) => self.reject(&name, &[], format!("cannot read the file: {e}")),
        }
    }

    /// Loads `bytes` as the new version of every stage running the plugin `name`, as
    /// [`Self::reload_file`] does with a file's bytes.
    pub fn reload_bytes(&self, name: &str, bytes: &[u8]) -> ReloadOutcome {
        let slots: Vec<&Arc<StageSlot>> = self.slots.iter().filter(|s| s.plugin == name).collect();
        if slots.is_empty() {
            return ReloadOutcome::Unused;
        }
        let sha = sha256_hex(bytes);
        if slots.iter().all(|s| s.current().1.plugin.sha256() == sha) {
            return ReloadOutcome::Unchanged;
        }
        // The same bytes as the last rejection (a second event of one rename, a poll that
        // raced a write) are not tried again: they would fail the same way.
        let rejections = self.rejections.lock().unwrap_or_else(|p| p.into_inner());
        if rejections.get(name).is_some_and(|r| r.sha256 == sha) {
            return ReloadOutcome::Unchanged;
        }
        drop(rejections);
        let plugin = match self.compile(name, bytes) {
            Ok(plugin) => plugin,
            Err(e) => return self.reject(name, bytes, rejection_reason(e)),
        };
        for slot in &slots {
            if let Err(e) = self.trial(slot, &plugin, &slot.current().1.config) {
                return self.reject(name, bytes, rejection_reason(e));
            }
        }
        for slot in &slots {
            let config = slot.current().1.config.clone();
            slot.publish(plugin.clone(), config);
        }
        let stages: Vec<String> = slots.iter().map(|s| s.stage.clone()).collect();
        metrics::counter!("weir_plugin_reloads_total", "plugin" => name.to_string(), "result" => "loaded")
            .increment(1);
        tracing::info!(plugin = %name, version = plugin.version(), ?stages, "Plugin loaded; its stages swap at their next batch.");
        ReloadOutcome::Loaded {
            version: plugin.version().to_string(),
            stages,
        }
    }

    fn reject(&self, name: &str, bytes: &[u8], reason: String) -> ReloadOutcome {
        metrics::counter!("weir_plugin_reloads_total", "plugin" => name.to_string(), "result" => "rejected")
            .increment(1);
        let running: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.plugin == name)
            .map(|s| s.current().1.plugin.version().to_string())
            .collect();
        tracing::warn!(plugin = %name, %reason, ?running, "Plugin file rejected; the running version keeps serving.");
        self.rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                name.to_string(),
                Rejection {
                    at: chrono::Utc::now().to_rfc3339(),
                    sha256: sha256_hex(bytes),
                    reason: reason.clone(),
                },
            );
        ReloadOutcome::Rejected(reason)
    }

    /// Applies new `config` tables to the stages (a config reload). Every changed stage's
    /// running plugin is trial-`init`ed with its new table first; if any refuses, nothing
    /// changes. Returns the stages that changed.
    pub fn reconfigure(&self, stages: &[StageConfig]) -> std::result::Result<Vec<String>, String> {
        let mut changes = Vec::new();
        for (slot, stage) in self.slots.iter().zip(stages) {
            let config = stage.plugin_config();
            let (_, version) = slot.current();
            if version.config == config {
                continue;
            }
            self.trial(slot, &version.plugin, &config)
                .map_err(|e| format!("stages[{}].config: {}", slot.stage, rejection_reason(e)))?;
            changes.push((slot, version.plugin.clone(), config));
        }
        let names = changes.iter().map(|(s, _, _)| s.stage.clone()).collect();
        for (slot, plugin, config) in changes {
            slot.publish(plugin, config);
        }
        Ok(names)
    }

    /// Each stage's current version, its calls and the plugin's last rejection.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let rejections = self.rejections.lock().unwrap_or_else(|p| p.into_inner());
        self.slots
            .iter()
            .map(|slot| {
                let (_, loaded) = slot.current();
                let version = slot.serving();
                let pending = !Arc::ptr_eq(&loaded, &version)
                    && loaded.plugin.sha256() != version.plugin.sha256();
                PluginStatus {
                    stage: slot.stage.clone(),
                    plugin: slot.plugin.clone(),
                    sha256: version.plugin.sha256().to_string(),
                    loaded_at: version.loaded_at.clone(),
                    pending_sha256: pending.then(|| loaded.plugin.sha256().to_string()),
                    calls: version.stats.summary(),
                    last_rejection: rejections.get(&slot.plugin).cloned(),
                    breaker: version.breaker.state(),
                }
            })
            .collect()
    }
}

/// The reason a rejection records: the error without the "plugin X rejected" preamble.
fn rejection_reason(error: RuntimeError) -> String {
    crate::error::one_line(&match error {
        RuntimeError::Rejected { reason, .. } => reason,
        RuntimeError::Init { reason, .. } => format!("init failed: {reason}"),
        other => other.to_string(),
    })
}
