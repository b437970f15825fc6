//! `weir generate`: synthetic clickstream and geo database.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::synth::{clickstream, geodb};

/// What to generate.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write a synthetic clickstream as NDJSON (users, sessions, crawlers, a burst, ~1% malformed).
    Events {
        /// Output file; `-` for stdout.
        #[arg(long, default_value = "-")]
        out: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Number of human users.
        #[arg(long, default_value_t = 120)]
        users: usize,
    },
    /// Write a small GeoLite2-City-format database covering the clickstream's IPs.
    Geodb {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a generate command.
pub fn execute(cmd: GenerateCommand) -> Result<()> {
    match cmd {
        GenerateCommand::Events { out, seed, users } => {
            let spec = clickstream::ClickstreamSpec {
                seed,
                users,
                ..Default::default()
            };
            let mut text = clickstream::generate(&spec).join("\n");
            text.push('\n');
            if out.as_os_str() == "-" {
                std::io::stdout().write_all(text.as_bytes())?;
            } else {
                std::fs::write(&out, text)?;
            }
        }
        GenerateCommand::Geodb { out } => {
            geodb::write(&out)?;
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(())
}
