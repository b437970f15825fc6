//! `weir plugin test`, `inspect`, `new`, `build` and `deploy`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use weir_sdk::abi::{Batch, BatchResult, OutputKind};

use super::embedded_sdk::Guest;
use crate::config::EventConfig;
use crate::event::{EventArena, EventRef};
use crate::flow::{Provenance, SourceRecord};
use crate::pipeline::stage_io::{output_event, stage_batch, timer_events};
use crate::pipeline::{RecordDecoder, Stage, WasmStage};
use crate::runtime::{EngineSettings, GeoDb, InstanceSettings, PluginEngine};
use crate::state::{WatermarkConfig, WatermarkTracker};

/// The languages `weir plugin new` writes a project in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    /// A Rust crate against the Rust SDK.
    Rust,
    /// A Python project against the Python SDK, built with componentize-py.
    Python,
    /// A JavaScript project against the JavaScript SDK, built with componentize-js.
    Js,
}

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run one plugin over an NDJSON file (or Avro or Protobuf records, see `--schema`) and
    /// print one JSON object per output:
    /// `{"input": N, "kind": "emit"|"route"|"dead-letter", "route": ..., "reason": ..., "event": ...}`.
    /// Timers fire as the watermark advances and at the end of input (`"input": null`).
    Test {
        /// The plugin component.
        plugin: PathBuf,
        /// The input: NDJSON, one event per line; an Avro object container file (`.avro`);
        /// or records of `--schema`.
        #[arg(long)]
        input: PathBuf,
        /// The input's schema: an `.avsc` (the input is Avro datums one after another) or a
        /// `.proto` (the input is length-delimited messages). Records are turned into the
        /// JSON the stages see on an Avro or Protobuf topic.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// The `.proto`'s message the input holds (default: its first).
        #[arg(long)]
        message: Option<String>,
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
    /// Create a plugin project against the SDK this weir carries, with tests that pass out
    /// of the box: a Rust crate, or a Python or JavaScript project (`--lang`), each of which
    /// `weir plugin build` turns into a component.
    New {
        /// Plugin name: lowercase letters, digits and `-`.
        name: String,
        /// The parent folder: the crate is made in a new folder `PATH/NAME`.
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// The `sdk` folder of a weir checkout, for a Rust crate (default: the SDK this weir
        /// carries, written into the project's `weir-sdk` folder).
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// The plugin's language.
        #[arg(long, value_enum, default_value_t = Language::Rust)]
        lang: Language,
    },
    /// Build a plugin project into its component and print where it is: a Rust crate with
    /// `cargo build --release --target wasm32-wasip2`, a Python project (`pyproject.toml` with
    /// `[tool.weir]`) with componentize-py, a JavaScript project (`package.json` with `weir`)
    /// with the SDK's `weir-js build`.
    Build {
        /// The plugin project.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Build a plugin project (or take a built component) and install it as `<name>.wasm` in a
    /// plugin folder or an `s3://` prefix, whole at once, once it type-checks as a weir plugin.
    /// A running weir swaps it in at its next batch.
    Deploy {
        /// Where: the pipeline's plugin_dir, a folder or `s3://bucket/dir` (credentials from
        /// `AWS_*`).
        #[arg(long)]
        to: String,
        /// The plugin project to build (Rust, Python or JavaScript).
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// A built component to deploy instead of building the project.
        #[arg(long)]
        component: Option<PathBuf>,
        /// The plugin name (default: the project's name, or the component's file name).
        #[arg(long)]
        name: Option<String>,
        /// Endpoint of an S3-compatible server.
        #[arg(long)]
        s3_endpoint: Option<String>,
        /// Allow an `http://` S3 endpoint.
        #[arg(long)]
        s3_allow_http: bool,
    },
}

/// Runs a plugin command.
pub fn execute(cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::Inspect { plugin } => inspect(&plugin),
        PluginCommand::Build { path } => {
            let built = super::plugin_build::build(&path)?;
            println!("built {}: {}", built.name, built.component.display());
            Ok(())
        }
        PluginCommand::Deploy {
            to,
            path,
            component,
            name,
            s3_endpoint,
            s3_allow_http,
        } => {
            let built = match component {
                Some(component) => {
                    let stem = component
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned());
                    super::plugin_build::Built {
                        name: stem.unwrap_or_default(),
                        component,
                    }
                }
                None => super::plugin_build::build(&path)?,
            };
            let name = name.unwrap_or(built.name);
            let destination = super::plugin_ship::Destination {
                to,
                s3: crate::storage::S3Options {
                    endpoint: s3_endpoint,
                    allow_http: s3_allow_http,
                    path_style: true,
                    ..Default::default()
                },
            };
            let at = super::plugin_ship::deploy(&built.component, &name, &destination)?;
            println!("deployed {name}: {at}");
            Ok(())
        }
        PluginCommand::New {
            name,
            path,
            sdk,
            lang,
        } => {
            let guest = match lang {
                Language::Rust => None,
                Language::Python => Some(Guest::Python),
                Language::Js => Some(Guest::JavaScript),
            };
            let (dir, how) = match guest {
                None => (
                    super::scaffold::new_plugin(&name, &path, sdk)?,
                    "`cargo test` runs its tests, `weir plugin build` builds it",
                ),
                Some(_) if sdk.is_some() => bail!("--sdk is for Rust plugins only"),
                Some(guest) => (
                    super::scaffold_guest::new_plugin(&name, &path, guest)?,
                    "its README has the install step; then its tests pass and `weir plugin build` builds it",
                ),
            };
            println!("created {}: {how}", dir.display());
            Ok(())
        }
        PluginCommand::Test {
            plugin,
            input,
            schema,
            message,
            set,
            geo_db,
            key_field,
            time_field,
            out_of_orderness,
            memory_limit,
            cpu_limit,
        } => {
            let memory_limit =
                crate::units::parse_size(&memory_limit).map_err(anyhow::Error::msg)?;
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
            let records = input_records(&input, schema.as_deref(), message.as_deref())?;
            let mut out = std::io::stdout().lock();
            test(stage, &decoder, &records, out_of_orderness, &mut out)
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

fn output_line(input: Option<usize>, kind: OutputKind, text: &str, value: &[u8]) -> Value {
    let event = serde_json::from_slice::<Value>(value)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(value).into()));
    let (kind, route, reason) = match kind {
        OutputKind::Emit => ("emit", None, None),
        OutputKind::Route => ("route", Some(text), None),
        OutputKind::DeadLetter => ("dead-letter", None, Some(text)),
    };
    json!({ "input": input, "kind": kind, "route": route, "reason": reason, "event": event })
}

/// Prints each output of `result` with the event it makes of its input (`events[i]`, in
/// `arena`); `inputs` maps a batch index to the input line's number.
fn print_result(
    out: &mut dyn Write,
    arena: &mut EventArena,
    result: &BatchResult,
    events: &[EventRef],
    inputs: Option<&[usize]>,
) -> Result<()> {
    for (i, output) in result.outputs.iter().enumerate() {
        let input = output.input as usize;
        let Some(event) = events.get(input) else {
            continue;
        };
        let event = output_event(arena, result, i, event).map_err(|e| anyhow::anyhow!(e))?;
        let text = result.parts(i).map(|p| p.text).unwrap_or_default();
        let line = inputs.and_then(|ids| ids.get(input).copied());
        writeln!(
            out,
            "{}",
            output_line(line, output.kind, text, &arena.to_json(&event))
        )?;
    }
    Ok(())
}

/// Runs `stage` over the NDJSON file at `input`, writing one line per output to `out`.
/// The records of `input` as JSON texts: NDJSON lines, or Avro or Protobuf turned into JSON.
fn input_records(
    input: &Path,
    schema: Option<&Path>,
    message: Option<&str>,
) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let schema_text = schema
        .map(|path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        })
        .transpose()?;
    let proto = schema.is_some_and(|p| p.extension().is_some_and(|e| e == "proto"));
    let records = if proto {
        crate::source::protobuf::delimited_to_json(
            &bytes,
            schema_text.as_deref().unwrap_or_default(),
            message,
        )
    } else if schema.is_some() || bytes.starts_with(b"Obj\x01") {
        crate::source::avro::file_to_json(&bytes, schema_text.as_deref())
    } else {
        Ok(bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.trim_ascii().is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    };
    let records = records.map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    if records.is_empty() {
        bail!("{} holds no events", input.display());
    }
    Ok(records)
}

/// Runs `stage` over `lines` (JSON texts) and prints what comes out.
pub fn test(
    mut stage: WasmStage,
    decoder: &RecordDecoder,
    lines: &[Vec<u8>],
    lag: Duration,
    out: &mut dyn Write,
) -> Result<()> {
    let mut watermark = WatermarkTracker::new(WatermarkConfig {
        out_of_orderness: lag,
        idle_timeout: Duration::from_secs(3600),
    });
    let mut arena = EventArena::default();
    let mut batch = Batch::default();
    for (chunk_no, chunk) in lines.chunks(512).enumerate() {
        arena.clear();
        let mut events = Vec::new();
        let mut inputs = Vec::new();
        let mut max_time = None;
        for (j, line) in chunk.iter().enumerate() {
            let index = chunk_no * 512 + j;
            let record = SourceRecord {
                key: None,
                value: line.clone(),
                timestamp: None,
                headers: Vec::new(),
                provenance: Provenance {
                    source: "input".into(),
                    partition: 0,
                    offset: index as i64,
                    trace: None,
                },
            };
            match decoder.decode_into(&record, &mut arena) {
                Ok(event) => {
                    max_time = max_time.max(Some(event.time));
                    events.push(event);
                    inputs.push(index);
                }
                Err(reason) => writeln!(
                    out,
                    "{}",
                    output_line(
                        Some(index),
                        OutputKind::DeadLetter,
                        &reason.to_string(),
                        line
                    )
                )?,
            }
        }
        let needs = stage.begin().clone();
        stage_batch(&mut batch, &arena, &needs, &events, |_| None);
        let result = stage.process(&mut batch, watermark.current())?;
        print_result(out, &mut arena, &result, &events, Some(&inputs))?;
        watermark.observe(max_time, Instant::now());
        fire_timers(&mut stage, &mut arena, watermark.current(), out)?;
    }
    watermark.finish();
    fire_timers(&mut stage, &mut arena, watermark.current(), out)
}

fn fire_timers(
    stage: &mut WasmStage,
    arena: &mut EventArena,
    watermark: i64,
    out: &mut dyn Write,
) -> Result<()> {
    while let Some(fired) = stage.fire_due_timers(watermark, 512)? {
        let events = timer_events(arena, &fired.batch).map_err(|e| anyhow::anyhow!(e))?;
        print_result(out, arena, &fired.result, &events, None)?;
    }
    Ok(())
}
