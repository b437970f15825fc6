//! `weir dlq`: replay dead letters once their cause is fixed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::config::PipelineConfig;
use crate::kafka::replay::{ReplayFilter, replay};

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Re-publish dead letters' original records (default: to their source topic). Offsets
    /// already replayed are recorded and skipped next time.
    Replay {
        /// The pipeline config (names the brokers, the DLQ topic and the checkpoint store).
        #[arg(long, short)]
        config: PathBuf,
        /// Only reasons matching this regular expression.
        #[arg(long)]
        reason: Option<String>,
        /// Only dead letters raised at this stage (`decode`, a stage name, `sink:<name>`).
        #[arg(long)]
        stage: Option<String>,
        /// Only dead letters written since this time: RFC 3339, or a duration ago (`2h`).
        #[arg(long)]
        since: Option<String>,
        /// Publish to this topic instead of each record's source topic.
        #[arg(long)]
        to: Option<String>,
        /// Count what would be replayed; publish and record nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Parses `--since`.
fn since_ms(raw: &str) -> Result<i64> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(time.timestamp_millis());
    }
    let ago = humantime::parse_duration(raw)
        .with_context(|| format!("--since {raw:?}: write RFC 3339 or a duration like 2h"))?;
    Ok(chrono::Utc::now().timestamp_millis() - i64::try_from(ago.as_millis())?)
}

/// Runs a dlq command.
pub fn execute(cmd: DlqCommand) -> Result<()> {
    let DlqCommand::Replay {
        config,
        reason,
        stage,
        since,
        to,
        dry_run,
    } = cmd;
    let config = PipelineConfig::load(&config)?;
    let filter = ReplayFilter {
        reason: reason
            .map(|r| regex::Regex::new(&r).with_context(|| format!("--reason {r:?}")))
            .transpose()?,
        stage,
        since_ms: since.as_deref().map(since_ms).transpose()?,
        to,
        dry_run,
    };
    let report = replay(&config, &filter)?;
    let verb = if dry_run { "would replay" } else { "replayed" };
    let count = if dry_run {
        report.matched - report.no_target
    } else {
        report.replayed
    };
    println!(
        "{verb} {count} dead letters (scanned {}, matched {}, already replayed {}, without a target topic {})",
        report.scanned, report.matched, report.already_replayed, report.no_target
    );
    Ok(())
}
