//! `weir table`: maintenance of the Delta tables a config's sinks write.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::config::PipelineConfig;
use crate::sinks::SinkConfig;
use crate::sinks::parquet::{CompactOptions, compact};
use crate::units::parse_size;

/// A table command.
#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Join the small files of each partition of a `type = "delta"` sink's table into large
    /// ones, in a commit of its own (safe while the pipeline writes), then delete the files
    /// removed longer ago than the retention.
    Compact {
        /// The pipeline config.
        #[arg(long, short)]
        config: PathBuf,
        /// The sink whose table to compact.
        #[arg(long)]
        sink: String,
        /// A partition is compacted once it has this many small files.
        #[arg(long, default_value_t = 8)]
        min_files: usize,
        /// Files below this size are small; joined files grow to about it.
        #[arg(long, default_value = "128MiB", value_parser = parse_size)]
        target_size: usize,
        /// Delete files removed (by this or earlier compactions) longer ago than this; `0s`
        /// deletes them at once (readers of older versions then fail), `off` keeps them.
        #[arg(long, default_value = "7d")]
        retention: String,
    },
}

/// Runs a table command.
pub fn execute(cmd: TableCommand) -> Result<()> {
    match cmd {
        TableCommand::Compact {
            config,
            sink,
            min_files,
            target_size,
            retention,
        } => {
            let pipeline = PipelineConfig::load(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let Some(SinkConfig::Delta(table)) = pipeline.sinks.get(&sink) else {
                bail!(
                    "{}: sink {sink:?} is not a `type = \"delta\"` sink",
                    config.display()
                );
            };
            let retention = match retention.as_str() {
                "off" => None,
                text => Some(humantime::parse_duration(text).context("--retention")?),
            };
            let options = CompactOptions {
                min_files,
                target_size: target_size as u64,
                retention,
            };
            let report = compact(table, options)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("compacting {}", table.path))?;
            println!(
                "{}: {} files before, {} after; {} partitions compacted{}; {} files vacuumed",
                table.path,
                report.files_before,
                report.files_after,
                report.partitions,
                report
                    .version
                    .map(|v| format!(" in table version {v}"))
                    .unwrap_or_default(),
                report.vacuumed
            );
            Ok(())
        }
    }
}
