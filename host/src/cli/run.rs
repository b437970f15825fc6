//! `weir run` and `weir validate`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::config::PipelineConfig;
use crate::pipeline::build::build;
use crate::pipeline::run::{RunSummary, run_to_end};

/// Runs a pipeline to the end and prints its summary.
pub fn run(config_path: &Path, plugin_dir: Option<PathBuf>) -> Result<()> {
    let config = PipelineConfig::load(config_path)?;
    let plugin_dir = plugin_dir.unwrap_or_else(|| config.plugin_dir.clone());
    let built = build(&config, &plugin_dir)?;
    let summary = run_to_end(built)?;
    print_summary(&summary);
    Ok(())
}

/// Validates a config and says what it holds.
pub fn validate(config_path: &Path) -> Result<()> {
    let config = PipelineConfig::load(config_path)?;
    println!(
        "{}: valid ({} stages, {} sinks)",
        config_path.display(),
        config.stages.len(),
        config.sinks.len()
    );
    Ok(())
}

fn print_summary(summary: &RunSummary) {
    let stats = &summary.stats;
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
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
