//! The admin HTTP endpoint (`[admin] listen`, 127.0.0.1:9898 by default): Prometheus metrics,
//! liveness and readiness, the loaded plugins and the pipeline's shape with its breakers. A
//! small blocking server on its own thread; the data path only updates [`Status`].

mod http;
mod metrics_exporter;
mod process_metrics;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use http::serve;
pub use metrics_exporter::install_recorders;

use crate::config::PipelineConfig;
use crate::pipeline::plugins::PluginRegistry;
use crate::sinks::SinkConfig;
use crate::sinks::resilience::BreakerState;
use crate::units::HumanDuration;

/// `[admin]`: where the admin endpoint listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` to listen on (port 0 picks a free one), or `off`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `/healthz` fails once a thread that moves records (the Kafka driver, a file worker)
    /// has not finished a turn of its loop for this long.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: HumanDuration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_listen(),
            stall_timeout: default_stall_timeout(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9898".into()
}

/// Longer than the longest legitimate turn: an epoch commit's deadline with the default
/// checkpoint timeout is 65 s.
fn default_stall_timeout() -> HumanDuration {
    HumanDuration::from_secs(120)
}

impl AdminConfig {
    /// The address to listen on; `None` when the endpoint is off.
    pub fn address(&self) -> Result<Option<SocketAddr>, String> {
        if self.listen == "off" {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|e| format!("{:?} is not `host:port` or `off`: {e}", self.listen))
    }
}

/// What the running pipeline tells the endpoint.
pub struct Status {
    started: Instant,
    /// When it started, in seconds since the Unix epoch.
    started_unix: f64,
    stall_timeout: Duration,
    ready: AtomicBool,
    breakers: Mutex<Vec<(String, BreakerState)>>,
    pipeline: Mutex<serde_json::Value>,
    plugins: Mutex<Option<Arc<PluginRegistry>>>,
}

impl Status {
    /// The status of a pipeline about to start: not ready yet.
    pub fn new(config: &PipelineConfig) -> Arc<Self> {
        Arc::new(Status {
            started: Instant::now(),
            started_unix: chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
            stall_timeout: config.admin.stall_timeout.0,
            ready: AtomicBool::new(false),
            breakers: Mutex::new(Vec::new()),
            pipeline: Mutex::new(describe(config)),
            plugins: Mutex::new(None),
        })
    }

    /// Ready: partitions assigned and their state restored (a file source: running).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the pipeline is ready.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The sinks' breaker states now.
    pub fn set_breakers(&self, states: Vec<(String, BreakerState)>) {
        *self.breakers.lock().unwrap_or_else(|p| p.into_inner()) = states;
    }

    /// The pipeline's shape after a config reload.
    pub fn set_pipeline(&self, config: &PipelineConfig) {
        *self.pipeline.lock().unwrap_or_else(|p| p.into_inner()) = describe(config);
    }

    /// Where `/plugins` reads the stages' versions, calls and rejections.
    pub fn set_plugins(&self, registry: Arc<PluginRegistry>) {
        *self.plugins.lock().unwrap_or_else(|p| p.into_inner()) = Some(registry);
    }

    fn breakers(&self) -> Vec<(String, BreakerState)> {
        self.breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `/healthz`: whether the threads that move records are turning (`false` once one has
    /// been stuck past the stall timeout), with the uptime, readiness and breakers.
    fn health(&self) -> (bool, serde_json::Value) {
        let stalled = crate::liveness::stalled(self.stall_timeout);
        let healthy = stalled.is_empty();
        let stalled: Vec<_> = stalled
            .into_iter()
            .map(|(thread, silent)| {
                serde_json::json!({ "thread": thread, "seconds": silent.as_secs_f64() })
            })
            .collect();
        let body = serde_json::json!({
            "status": if healthy { "ok" } else { "stalled" },
            "stalled": stalled,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "ready": self.ready(),
            "breakers": self.breakers().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        });
        (healthy, body)
    }

    /// `/pipeline`: stages, routes and sinks, with each sink's breaker.
    fn pipeline(&self) -> serde_json::Value {
        let mut pipeline = self
            .pipeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let breakers: std::collections::BTreeMap<_, _> = self.breakers().into_iter().collect();
        if let Some(sinks) = pipeline["sinks"].as_array_mut() {
            for sink in sinks {
                let name = sink["name"].as_str().unwrap_or_default().to_string();
                sink["breaker"] = serde_json::json!(breakers.get(&name));
            }
        }
        pipeline
    }

    fn plugins(&self) -> serde_json::Value {
        let registry = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let statuses = registry.as_ref().map(|r| r.statuses()).unwrap_or_default();
        serde_json::json!(statuses)
    }
}

/// The shape of a pipeline: source, stages, sinks and the routes they take.
fn describe(config: &PipelineConfig) -> serde_json::Value {
    let source = match &config.source {
        crate::config::SourceConfig::File(f) => {
            serde_json::json!({ "type": "file", "path": f.path })
        }
        crate::config::SourceConfig::Kafka(k) => serde_json::json!({
            "type": "kafka", "topics": k.topics, "group": k.group,
        }),
    };
    let stages: Vec<_> = config
        .stages
        .iter()
        .map(|s| serde_json::json!({ "name": s.name, "plugin": s.plugin }))
        .collect();
    let sinks: Vec<_> = config
        .sinks
        .iter()
        .map(|(name, sink)| {
            let kind = match sink {
                SinkConfig::Parquet(_) => "parquet",
                SinkConfig::Delta(_) => "delta",
                SinkConfig::Ndjson(_) => "ndjson",
                SinkConfig::Kafka(_) => "kafka",
                SinkConfig::Redis(_) => "redis",
                SinkConfig::Postgres(_) => "postgres",
            };
            serde_json::json!({ "name": name, "type": kind, "routes": sink.routes() })
        })
        .collect();
    serde_json::json!({ "source": source, "stages": stages, "sinks": sinks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_an_address_or_not_at_all_and_names_bad_values() {
        let listen = |s: &str| {
            AdminConfig {
                listen: s.into(),
                ..AdminConfig::default()
            }
            .address()
        };
        assert_eq!(
            listen("127.0.0.1:9898").unwrap(),
            Some("127.0.0.1:9898".parse().unwrap())
        );
        assert_eq!(AdminConfig::default().listen, "127.0.0.1:9898");
        assert_eq!(listen("off").unwrap(), None);
        assert!(listen("localhost").unwrap_err().contains("host:port"));
    }
}
