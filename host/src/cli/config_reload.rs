//! SIGHUP reloads the pipeline config file. Safe changes apply live: the stages' `config`
//! tables through the plugin registry (each `init`ed once before it counts), sink changes
//! through the Kafka daemon, which commits an epoch and rebuilds its partitions from that
//! checkpoint. Anything else is refused with the field and the reason, and the running
//! pipeline goes on unchanged.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use crate::config::PipelineConfig;
use crate::config::reload::{ReloadPlan, plan};
use crate::kafka::daemon::PendingConfig;
use crate::pipeline::plugins::PluginRegistry;

/// Reloads one config file into a running pipeline.
pub struct ConfigReloader {
    path: PathBuf,
    running: toml::Table,
    registry: Arc<PluginRegistry>,
    sinks: Option<PendingConfig>,
}

fn read_text(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn table(path: &std::path::Path, text: &str) -> Result<toml::Table, String> {
    toml::from_str(text).map_err(|e| format!("invalid config {}: {e}", path.display()))
}

impl ConfigReloader {
    /// Starts from the file as it is now. Without `sinks` (a file source), only the stages'
    /// `config` tables can change live.
    pub fn new(
        path: PathBuf,
        registry: Arc<PluginRegistry>,
        sinks: Option<PendingConfig>,
    ) -> Result<Self> {
        let running = read_text(&path)
            .and_then(|text| table(&path, &text))
            .map_err(anyhow::Error::msg)?;
        Ok(ConfigReloader {
            path,
            running,
            registry,
            sinks,
        })
    }

    /// Reads the file again and applies what changed, or refuses it all with the reasons.
    pub fn reload(&mut self) -> Result<ReloadPlan, String> {
        // Read once: the file the config and the comparison come from must be the same.
        let text = read_text(&self.path)?;
        let config = PipelineConfig::parse(&self.path, &text).map_err(|e| e.to_string())?;
        let table = table(&self.path, &text)?;
        let plan = plan(&self.running, &table).map_err(|refused| refused.join("; "))?;
        let sinks = match (&self.sinks, plan.sinks.is_empty()) {
            (_, true) => None,
            (Some(sinks), false) => Some(sinks),
            (None, false) => {
                return Err(format!(
                    "{}: sink changes apply live only with a Kafka source",
                    plan.sinks.join(", ")
                ));
            }
        };
        self.registry.reconfigure(&config.stages)?;
        if let Some(sinks) = sinks {
            *sinks.lock().unwrap_or_else(|p| p.into_inner()) = Some(config);
        }
        self.running = table;
        Ok(plan)
    }

    /// Reloads on every SIGHUP, on a thread of its own; logs and counts each outcome
    /// (`weir_config_reloads_total{result}`).
    pub fn reload_on_hangup(mut self) -> Result<()> {
        let hangup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())?;
        std::thread::Builder::new()
            .name("weir-sighup".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    if hangup.swap(false, Ordering::Relaxed) {
                        self.reload_and_report();
                    }
                }
            })?;
        Ok(())
    }

    fn reload_and_report(&mut self) {
        let path = self.path.display().to_string();
        match self.reload() {
            Ok(plan) if plan.is_empty() => {
                tracing::info!(config = %path, "SIGHUP: the config is unchanged.");
                metrics::counter!("weir_config_reloads_total", "result" => "unchanged")
                    .increment(1);
            }
            Ok(plan) => {
                tracing::info!(config = %path, stages = ?plan.stages, sinks = ?plan.sinks, "SIGHUP: config reloaded; stages switch at their next batch, sinks at the next epoch.");
                metrics::counter!("weir_config_reloads_total", "result" => "applied").increment(1);
            }
            Err(reason) => {
                tracing::warn!(config = %path, %reason, "SIGHUP: config reload refused; the running pipeline is unchanged.");
                metrics::counter!("weir_config_reloads_total", "result" => "refused").increment(1);
            }
        }
    }
}
