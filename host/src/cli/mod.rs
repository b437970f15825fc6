//! The `weir` command line: run a pipeline, validate a config, test and inspect plugins, and
//! generate synthetic inputs.

mod config_reload;
mod demo;
mod demo_registry;
mod dlq;
mod dlq_view;
mod embedded_sdk;
mod generate;
mod plugin;
mod plugin_build;
mod plugin_ship;
mod run;
mod scaffold;
mod scaffold_guest;
mod table;
mod top;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// weir runs clickstream pipelines whose transforms are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, e.g. `info`, `weir=debug`; beats `RUST_LOG`.
    /// Default: `info`, or `warn` for `weir demo` (its progress bar shows what happens).
    #[arg(long, global = true, env = "WEIR_LOG")]
    pub log: Option<String>,
    /// Log format: `text` for people, `json` (one object per line) for log pipelines.
    #[arg(long, global = true, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    Text,
    /// One JSON object per line, with the event's fields and span.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline a config file describes: a file source until it ends, a Kafka source
    /// until SIGTERM or SIGINT (a second signal exits at once). Prints a summary.
    Run {
        /// The pipeline config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Folder with the `<plugin>.wasm` files; overrides `plugin_dir` in the config.
        #[arg(long, env = "WEIR_PLUGIN_DIR")]
        plugin_dir: Option<PathBuf>,
        /// Kafka: stop once every assigned partition is read to its end, closing every window.
        #[arg(long)]
        bounded: bool,
        /// Kafka: this instance's id, stable across restarts and unique among running
        /// instances (names its transactional producer). Default: the host name.
        #[arg(long, env = "WEIR_INSTANCE_ID")]
        instance_id: Option<String>,
        /// Where the admin endpoint listens (`host:port`, port 0 for any, or `off`);
        /// overrides `[admin] listen`.
        #[arg(long, env = "WEIR_ADMIN_LISTEN")]
        admin_listen: Option<String>,
        /// Kafka: how long SIGTERM may take to drain (finish the batch, commit, leave the
        /// group) before the process exits anyway; recovery then redoes the epoch.
        #[arg(long, env = "WEIR_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
        drain_timeout: std::time::Duration,
    },
    /// Run the whole pipeline on an embedded Kafka cluster with a generated clickstream.
    Demo(demo::DemoArgs),
    /// Work with the dead-letter topic.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Check a config file without running it: its fields, its plugins (each loads and its
    /// `init` takes the stage's config) and geo database, and with `--check-connections` its
    /// servers. Exits non-zero naming the bad field and why.
    Validate(validate::ValidateArgs),
    /// Test or inspect one plugin file.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Write synthetic inputs: a clickstream or a small geo database.
    #[command(subcommand)]
    Generate(generate::GenerateCommand),
    /// Maintain the Delta tables of a config's sinks: compaction and retention.
    #[command(subcommand)]
    Table(table::TableCommand),
    /// A live view of a running instance through its admin endpoint: records in and out per
    /// second by sink, dead letters by class, each stage's calls, errors and p99, lag,
    /// watermark delay, state, epoch age, breakers, CPU and memory.
    Top {
        /// The instance's admin endpoint (`[admin] listen`).
        #[arg(long, default_value = "127.0.0.1:9898", env = "WEIR_ADMIN_LISTEN")]
        admin: String,
        /// Time between two views.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// Print one view (rates over one interval) and exit.
        #[arg(long)]
        once: bool,
    },
}

/// Parses arguments, sets up logging and runs the command.
pub fn main() -> ExitCode {
    crate::tls::install_crypto_provider();
    let cli = Cli::parse();
    // `--log` (or WEIR_LOG) first, then RUST_LOG, then the command's default.
    let filter = match cli.log.as_deref() {
        Some(log) => tracing_subscriber::EnvFilter::new(log),
        None => tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(match cli.command {
                Command::Demo(_) => "warn",
                _ => "info",
            })
        }),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let outcome = match cli.command {
        Command::Run {
            config,
            plugin_dir,
            bounded,
            instance_id,
            admin_listen,
            drain_timeout,
        } => run::run(run::RunArgs {
            config,
            plugin_dir,
            bounded,
            instance_id,
            admin_listen,
            drain_timeout,
        }),
        Command::Demo(args) => demo::run(args),
        Command::Dlq(cmd) => dlq::execute(cmd),
        Command::Validate(args) => validate::validate(&args),
        Command::Plugin(cmd) => plugin::execute(cmd),
        Command::Generate(cmd) => generate::execute(cmd),
        Command::Table(cmd) => table::execute(cmd),
        Command::Top {
            admin,
            interval,
            once,
        } => top::run(&admin, interval, once),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
