//! `weir run` and `weir validate`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Result;

use super::config_reload::ConfigReloader;
use crate::admin::{self, AdminConfig};
use crate::config::{PipelineConfig, SourceConfig};
use crate::kafka::daemon::{self, DaemonOptions};
use crate::pipeline::PipelineStats;
use crate::pipeline::build::build;
use crate::pipeline::run::run_to_end;

/// How `weir run` was asked to run.
pub struct RunArgs {
    /// The pipeline config.
    pub config: PathBuf,
    /// Overrides the config's plugin folder.
    pub plugin_dir: Option<PathBuf>,
    /// Kafka: stop once the input is consumed.
    pub bounded: bool,
    /// Kafka: this instance's stable id.
    pub instance_id: Option<String>,
    /// Overrides `[admin] listen`.
    pub admin_listen: Option<String>,
    /// Kafka: longest drain after SIGTERM.
    pub drain_timeout: std::time::Duration,
}

/// Runs a pipeline and prints its summary: a file source to its end, a Kafka source until
/// SIGTERM/SIGINT (or, bounded, the end of its input).
pub fn run(args: RunArgs) -> Result<()> {
    let mut config = PipelineConfig::load(&args.config)?;
    if let Some(listen) = args.admin_listen {
        config.admin.listen = listen;
    }
    let plugin_dir = args.plugin_dir.unwrap_or_else(|| config.plugin_dir.clone());
    let instance = args.instance_id.unwrap_or_else(default_instance_id);
    let (_telemetry, otlp_metrics) = crate::telemetry::install(&config.telemetry, &instance)?;
    let status = admin::Status::new(&config);
    start_admin(&config.admin, &status, otlp_metrics)?;
    publish_config_metrics(&config);
    if let SourceConfig::File(_) = config.source {
        let built = build(&config, &plugin_dir)?;
        status.set_plugins(built.factory.registry().clone());
        ConfigReloader::new(args.config.clone(), built.factory.registry().clone(), None)?
            .reload_on_hangup()?;
        status.set_ready(true);
        let summary = run_to_end(built, &*shutdown_flag()?)?;
        print_summary(&summary.stats, summary.elapsed);
        if summary.stopped {
            println!(
                "stopped by a signal before the end of the input: open windows were not closed"
            );
            tracing::info!("Stopped by a signal; the sinks closed and published what they took.");
        }
        return Ok(());
    }
    let mut options = DaemonOptions::new(&instance);
    options
        .bounded
        .store(args.bounded, std::sync::atomic::Ordering::Relaxed);
    options.shutdown = shutdown_flag()?;
    drain_watchdog(options.shutdown.clone(), args.drain_timeout)?;
    let factory = daemon::factory(&config, &plugin_dir)?;
    status.set_plugins(factory.registry().clone());
    options.status = Some(status);
    let sinks = options.new_config.clone();
    ConfigReloader::new(args.config.clone(), factory.registry().clone(), Some(sinks))?
        .reload_on_hangup()?;
    let summary = daemon::run_with(factory, &config, &options)?;
    print_summary(&summary.stats, summary.elapsed);
    let counts = summary.checkpoints;
    println!(
        "checkpoints       {:>10}  ({} failed, {} recoveries)",
        counts.committed, counts.failed, counts.recoveries
    );
    for (sink, state) in &summary.breakers {
        println!("breaker {sink:<9} {state:>10?}");
    }
    Ok(())
}

/// The gauges that describe the configuration: the source (its consumer group, for the
/// dashboard's `group` variable) and each stage's state limit (for `WeirStateNearLimit`).
fn publish_config_metrics(config: &PipelineConfig) {
    let (kind, group) = match &config.source {
        SourceConfig::File(_) => ("file", String::new()),
        SourceConfig::Kafka(kafka) => ("kafka", kafka.group.clone()),
    };
    metrics::gauge!("weir_source_info", "kind" => kind, "group" => group).set(1.0);
    for stage in &config.stages {
        metrics::gauge!("weir_stage_state_limit_bytes", "stage" => stage.name.clone())
            .set(stage.state_limit.0 as f64);
    }
}

/// Installs the metrics recorders (Prometheus unless the admin endpoint is `off`, OTLP when
/// `otlp` is given) and serves the admin endpoint.
fn start_admin(
    config: &AdminConfig,
    status: &Arc<admin::Status>,
    otlp: Option<crate::telemetry::OtlpRecorder>,
) -> Result<()> {
    let address = config
        .address()
        .map_err(|e| anyhow::anyhow!("admin.listen: {e}"))?;
    let metrics = admin::install_recorders(address.is_some(), otlp)
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    let Some(address) = address else {
        return Ok(());
    };
    let bound = admin::serve(address, status.clone(), metrics)
        .map_err(|e| anyhow::anyhow!("admin.listen: binding {address}: {e}"))?;
    tracing::info!(address = %bound, "Admin endpoint listening (/metrics, /healthz, /readyz, /plugins, /pipeline).");
    Ok(())
}

/// A flag set by the first SIGTERM or SIGINT; a second one exits at once (exactly-once
/// recovery covers it like a crash).
pub fn shutdown_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())?;
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(flag)
}

/// Once shutdown is asked for, gives the drain `timeout`, then exits the process: a drain
/// stuck on an unanswering broker or store must not keep a rolling restart waiting. The
/// uncommitted epoch is redone by whoever takes the partitions, as after a crash.
fn drain_watchdog(shutdown: Arc<AtomicBool>, timeout: std::time::Duration) -> Result<()> {
    std::thread::Builder::new()
        .name("weir-drain".into())
        .spawn(move || {
            while !shutdown.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            std::thread::sleep(timeout);
            tracing::error!(
                ?timeout,
                "Drain did not finish within the drain timeout; exiting without the final commit."
            );
            eprintln!("weir: drain timed out after {timeout:?}");
            std::process::exit(3);
        })?;
    Ok(())
}

/// The host name: stable across restarts of the same machine or pod.
fn default_instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "weir".into())
}

/// Prints counts and throughput.
pub fn print_summary(stats: &PipelineStats, elapsed: std::time::Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!("records in        {:>10}", stats.records_in);
    println!("decoded           {:>10}", stats.decoded);
    println!("timers fired      {:>10}", stats.timers_fired);
    for (route, n) in &stats.routes.by_route {
        println!("route {route:<12}{n:>10}");
    }
    for (reason, n) in &stats.routes.dead_letters {
        println!("dead letter: {reason:<20}{n:>6}");
    }
    println!(
        "elapsed           {:>9.2}s  ({:.0} records/s)",
        secs,
        stats.records_in as f64 / secs
    );
}
