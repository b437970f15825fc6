//! `weir dlq`: see what is in the dead-letter output (`list`, `show`) and replay dead letters
//! once their cause is fixed (`replay`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::dlq_view;
use crate::config::PipelineConfig;
use crate::kafka::replay::{ReplayFilter, replay};
use crate::sinks::dead_letter::Selection;

/// Which dead letters a command takes.
#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The pipeline config (names the dead-letter topic or file, and the brokers).
    #[arg(long, short)]
    config: PathBuf,
    /// Only reasons matching this regular expression.
    #[arg(long)]
    reason: Option<String>,
    /// Only dead letters raised at this stage (`decode`, a stage name, `sink:<name>`).
    #[arg(long)]
    stage: Option<String>,
    /// Only this class: `decode`, `plugin`, `trap`, `timeout`, `limit`, `invalid_result`,
    /// `breaker`, `unrouted`, `sink`.
    #[arg(long)]
    class: Option<String>,
    /// Only dead letters written since this time: RFC 3339, or a duration ago (`2h`).
    #[arg(long)]
    since: Option<String>,
}

impl SelectArgs {
    fn selection(&self) -> Result<Selection> {
        Ok(Selection {
            reason: self
                .reason
                .as_deref()
                .map(|r| regex::Regex::new(r).with_context(|| format!("--reason {r:?}")))
                .transpose()?,
            stage: self.stage.clone(),
            class: self.class.clone(),
            since_ms: self.since.as_deref().map(since_ms).transpose()?,
        })
    }
}

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the dead letters by stage, class and reason, with when each was first and last
    /// written.
    List {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Print the dead letters, one JSON object per line: where they are kept, when, where and
    /// why they failed, their source record and the record itself.
    Show {
        #[command(flatten)]
        select: SelectArgs,
        /// At most this many (the first ones).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Re-publish dead letters' original records (default: to their source topic). Offsets
    /// already replayed are recorded and skipped next time.
    Replay {
        #[command(flatten)]
        select: SelectArgs,
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
    match cmd {
        DlqCommand::List { select } => {
            let config = PipelineConfig::load(&select.config)?;
            let mut counts = dlq_view::Counts::default();
            dlq_view::read(&config, &select.selection()?, |letter| counts.add(&letter))?;
            for line in dlq_view::list(&counts) {
                println!("{line}");
            }
            println!("{} dead letters", counts.total());
        }
        DlqCommand::Show { select, limit } => {
            let config = PipelineConfig::load(&select.config)?;
            let mut shown = 0;
            dlq_view::read(&config, &select.selection()?, |letter| {
                if shown < limit {
                    println!("{}", dlq_view::show(&letter));
                    shown += 1;
                }
            })?;
        }
        DlqCommand::Replay {
            select,
            to,
            dry_run,
        } => {
            let config = PipelineConfig::load(&select.config)?;
            let filter = ReplayFilter {
                select: select.selection()?,
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
        }
    }
    Ok(())
}
