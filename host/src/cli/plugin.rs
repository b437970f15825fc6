//! `weir plugin test`, `weir plugin inspect` and `weir plugin new`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use weir_sdk::abi::{Batch, BatchResult, OutputKind};

use crate::config::EventConfig;
use crate::pipeline::{RecordDecoder, Stage, WasmStage};
use crate::runtime::{EngineSettings, GeoDb, InstanceSettings, PluginEngine};
use crate::sinks::Provenance;
use crate::source::SourceRecord;
use crate::state::{WatermarkConfig, WatermarkTracker};

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run one plugin over an NDJSON file and print one JSON object per output:
    /// `{"input": N, "kind": "emit"|"route"|"dead-letter", "route": ..., "reason": ..., "event": ...}`.
    /// Timers fire as the watermark advances and at the end of input (`"input": null`).
    Test {
        /// The plugin component.
        plugin: PathBuf,
        /// NDJSON input, one event per line.
        #[arg(long)]
        input: PathBuf,
        /// A config entry for the plugin's `init`, `key=value`; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// MaxMind database for the `geo` capability.
        #[arg(long)]
        geo_db: Option<PathBuf>,
        /// JSON field holding the key.
        #[arg(long, default_value = "user_id")]
        key_field: String,
        /// JSON field holding the event time.
        #[arg(long, default_value = "ts")]
        time_field: String,
        /// Watermark lag behind the newest event time, e.g. `5s`.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        out_of_orderness: Duration,
        /// Memory limit of the instance, e.g. `64MiB`.
        #[arg(long, default_value = "64MiB")]
        memory_limit: String,
        /// Time budget per call, e.g. `500ms`.
        #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
        cpu_limit: Duration,
    },
    /// Show a plugin's world, exports, imports, size and sha256 (after type-checking it).
    Inspect {
        /// The plugin component.
        plugin: PathBuf,
    },
    /// Create a plugin crate against the SDK, with tests, that builds with
    /// `cargo build --release --target wasm32-wasip2`.
    New {
        /// Plugin name: lowercase letters, digits and `-`.
        name: String,
        /// Folder to create the crate in.
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// The `sdk` folder of a weir checkout (default: the one this weir was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// Runs a plugin command.
pub fn execute(cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::Inspect { plugin } => inspect(&plugin),
        PluginCommand::New { name, path, sdk } => {
            let dir = super::scaffold::new_plugin(&name, &path, sdk)?;
            println!(
                "created {}: `cargo test` runs its tests, `cargo build --release --target wasm32-wasip2` builds it (see its README)",
                dir.display()
            );
            Ok(())
        }
        PluginCommand::Test {
            plugin,
            input,
            set,
            geo_db,
            key_field,
            time_field,
            out_of_orderness,
            memory_limit,
            cpu_limit,
        } => {
            let memory_limit =
                crate::config::units::parse_size(&memory_limit).map_err(anyhow::Error::msg)?;
            let config = set
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))
                })
                .collect::<Result<Vec<_>>>()?;
            let settings = InstanceSettings {
                memory_limit,
                cpu_limit,
                ..InstanceSettings::default()
            };
            let geo = geo_db
                .as_deref()
                .map(GeoDb::open)
                .transpose()?
                .map(Arc::new);
            let stage = load_stage(&plugin, settings, geo, config)?;
            let decoder = RecordDecoder::new(&EventConfig {
                key_field,
                time_field,
                ..EventConfig::default()
            });
            let mut out = std::io::stdout().lock();
            test(stage, &decoder, &input, out_of_orderness, &mut out)
        }
    }
}

fn load_stage(
    path: &Path,
    settings: InstanceSettings,
    geo: Option<Arc<GeoDb>>,
    config: Vec<(String, String)>,
) -> Result<WasmStage> {
    let engine = Arc::new(PluginEngine::new(&EngineSettings {
        max_memory_bytes: settings.memory_limit.max(64 << 20),
        ..Default::default()
    })?);
    let plugin = engine.load_file(path)?;
    let name = plugin.name().to_string();
    Ok(WasmStage::new(
        engine, &name, plugin, settings, geo, config,
    )?)
}

fn inspect(path: &Path) -> Result<()> {
    let engine = PluginEngine::new(&EngineSettings::default())?;
    let info = engine.load_file(path)?.info();
    println!("plugin   {}", info.name);
    println!("world    {} (type-checked)", info.world);
    println!("size     {} bytes", info.size);
    println!("sha256   {}", info.sha256);
    println!("exports  {}", info.exports.join(", "));
    println!("imports  {}", info.imports.join(", "));
    Ok(())
}

fn output_line(input: Option<usize>, kind: &OutputKind, value: &[u8]) -> Value {
    let event = serde_json::from_slice::<Value>(value)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(value).into()));
    let (kind, route, reason) = match kind {
        OutputKind::Emit => ("emit", None, None),
        OutputKind::Route(r) => ("route", Some(r.as_str()), None),
        OutputKind::DeadLetter(r) => ("dead-letter", None, Some(r.as_str())),
    };
    json!({ "input": input, "kind": kind, "route": route, "reason": reason, "event": event })
}

fn print_result(out: &mut dyn Write, result: &BatchResult, inputs: Option<&[usize]>) -> Result<()> {
    for (output, value) in result.iter() {
        let input = inputs.and_then(|ids| ids.get(output.input as usize).copied());
        writeln!(out, "{}", output_line(input, &output.kind, value))?;
    }
    Ok(())
}

/// Runs `stage` over the NDJSON file at `input`, writing one line per output to `out`.
pub fn test(
    mut stage: WasmStage,
    decoder: &RecordDecoder,
    input: &Path,
    lag: Duration,
    out: &mut dyn Write,
) -> Result<()> {
    let file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        bail!("{} holds no events", input.display());
    }
    let mut watermark = WatermarkTracker::new(WatermarkConfig {
        out_of_orderness: lag,
        idle_timeout: Duration::from_secs(3600),
    });
    for (chunk_no, chunk) in lines.chunks(512).enumerate() {
        let mut batch = Batch::default();
        let mut inputs = Vec::new();
        let mut max_time = None;
        for (j, line) in chunk.iter().enumerate() {
            let index = chunk_no * 512 + j;
            let record = SourceRecord {
                key: None,
                value: line.as_bytes().to_vec(),
                timestamp: None,
                headers: Vec::new(),
                provenance: Provenance {
                    source: "input".into(),
                    partition: 0,
                    offset: index as i64,
                },
            };
            match decoder.decode(&record) {
                Ok(d) => {
                    batch.push(&d.key, line.as_bytes(), d.time, &[]);
                    inputs.push(index);
                    max_time = max_time.max(Some(d.time));
                }
                Err(reason) => writeln!(
                    out,
                    "{}",
                    output_line(
                        Some(index),
                        &OutputKind::DeadLetter(reason),
                        line.as_bytes()
                    )
                )?,
            }
        }
        let result = stage.process(&mut batch, watermark.current())?;
        print_result(out, &result, Some(&inputs))?;
        watermark.observe(max_time, Instant::now());
        fire_timers(&mut stage, watermark.current(), out)?;
    }
    watermark.finish();
    fire_timers(&mut stage, watermark.current(), out)
}

fn fire_timers(stage: &mut WasmStage, watermark: i64, out: &mut dyn Write) -> Result<()> {
    while let Some(fired) = stage.fire_due_timer(watermark)? {
        match &fired.outcome {
            Ok(result) => print_result(out, result, None)?,
            Err(failure) => {
                let reason = OutputKind::DeadLetter(format!("timer {failure}"));
                let line = output_line(None, &reason, &fired.failure_record());
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}
