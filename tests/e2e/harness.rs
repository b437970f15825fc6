//! Shared test setup: plugins built once through `xtask`, the `weir` binary, the DuckDB venv,
//! and pipelines assembled in memory around real Wasm stages.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use weir::flow::{Provenance, SourceRecord};
use weir::pipeline::{PartitionPipeline, RecordDecoder, Router, Stage, WasmStage};
use weir::runtime::{EngineSettings, GeoDb, InstanceSettings, PluginEngine};
use weir::sinks::Sink;
use weir::sinks::memory::{MemoryDeadLetters, MemorySink};
use weir::state::{WatermarkConfig, WatermarkTracker};

/// The folder with every built plugin; builds them on first use.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        xtask::plugins::build_all().expect("building the plugins with `cargo xtask build-plugins`")
    })
}

/// The path of a built plugin.
pub fn plugin(name: &str) -> PathBuf {
    plugin_dir().join(format!("{name}.wasm"))
}

/// A Python or JavaScript plugin project (a folder of the workspace) built with `weir plugin
/// build`, once per test binary; the component.
pub fn guest_plugin(project: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    built
        .entry(project.to_string())
        .or_insert_with(|| {
            xtask::guests::build(Path::new(env!("CARGO_BIN_EXE_weir")), project)
                .unwrap_or_else(|e| panic!("{e:#}"))
        })
        .clone()
}

/// One engine shared by the tests of this binary.
pub fn engine() -> Arc<PluginEngine> {
    static ENGINE: OnceLock<Arc<PluginEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(PluginEngine::new(&EngineSettings::default()).unwrap()))
        .clone()
}

/// A Wasm stage running the built plugin `name`.
pub fn wasm_stage(
    name: &str,
    config: &[(&str, &str)],
    settings: InstanceSettings,
    geo: Option<Arc<GeoDb>>,
) -> WasmStage {
    wasm_stage_of(&plugin(name), config, settings, geo)
}

/// A Wasm stage running the component at `path`, named after its file.
pub fn wasm_stage_of(
    path: &Path,
    config: &[(&str, &str)],
    settings: InstanceSettings,
    geo: Option<Arc<GeoDb>>,
) -> WasmStage {
    let engine = engine();
    let plugin = engine.load_file(path).unwrap();
    let name = path.file_stem().unwrap().to_str().unwrap();
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    WasmStage::new(engine, name, plugin, settings, geo, config).unwrap()
}

/// A generated MaxMind database, opened (keep the folder while it is used).
pub fn geo() -> (tempfile::TempDir, Arc<GeoDb>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geo.mmdb");
    weir::synth::geodb::write(&path).unwrap();
    let db = Arc::new(GeoDb::open(&path).unwrap());
    (dir, db)
}

/// Default instance limits for tests.
pub fn limits() -> InstanceSettings {
    InstanceSettings {
        memory_limit: 32 << 20,
        cpu_limit: Duration::from_millis(300),
        ..InstanceSettings::default()
    }
}

/// A pipeline over `stages` whose routes each go to a [`MemorySink`] of the same name.
pub struct TestPipeline {
    pub pipeline: PartitionPipeline,
    pub sinks: Vec<(String, MemorySink)>,
    pub dead: MemoryDeadLetters,
}

impl TestPipeline {
    pub fn new(stages: Vec<Box<dyn Stage>>, routes: &[&str]) -> Self {
        TestPipeline::with_sinks(stages, routes, MemorySink::new)
    }

    /// A pipeline whose sinks only count what they are given (for long runs).
    pub fn counting(stages: Vec<Box<dyn Stage>>, routes: &[&str]) -> Self {
        TestPipeline::with_sinks(stages, routes, MemorySink::counting)
    }

    fn with_sinks(
        stages: Vec<Box<dyn Stage>>,
        routes: &[&str],
        sink: impl Fn(&str) -> MemorySink,
    ) -> Self {
        let sinks: Vec<(String, MemorySink)> =
            routes.iter().map(|r| (r.to_string(), sink(r))).collect();
        let boxed = sinks
            .iter()
            .map(|(r, s)| (Box::new(s.clone()) as Box<dyn Sink>, vec![r.clone()]))
            .collect();
        let dead = MemoryDeadLetters::default();
        let router = Router::new(boxed, Box::new(dead.clone()));
        let watermark = WatermarkTracker::new(WatermarkConfig {
            out_of_orderness: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(3600),
        });
        let decoder = RecordDecoder::new(&weir::config::EventConfig::default());
        TestPipeline {
            pipeline: PartitionPipeline::new(decoder, stages, router, watermark),
            sinks,
            dead,
        }
    }

    /// Values written to the sink of `route`, in each user's order. Timers that fire together
    /// are handed to a plugin in one call, so what different users' timers emit may come out
    /// in another order when records are batched differently; one user's never does.
    pub fn route_by_user(&self, route: &str) -> Vec<serde_json::Value> {
        let mut values = self.route(route);
        values.sort_by(|a, b| a["user_id"].to_string().cmp(&b["user_id"].to_string()));
        values
    }

    /// Values written to the sink of `route`, parsed.
    pub fn route(&self, route: &str) -> Vec<serde_json::Value> {
        let sink = &self.sinks.iter().find(|(r, _)| r == route).unwrap().1;
        sink.records()
            .iter()
            .map(|r| serde_json::from_slice(&r.value).unwrap())
            .collect()
    }
}

/// Source records from JSON values, with line-number provenance.
pub fn records(values: &[serde_json::Value]) -> Vec<SourceRecord> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| SourceRecord {
            key: None,
            value: serde_json::to_vec(v).unwrap(),
            timestamp: None,
            headers: Vec::new(),
            provenance: Provenance {
                source: "test".into(),
                partition: 0,
                offset: i as i64,
                trace: None,
            },
        })
        .collect()
}

/// Runs the `weir` binary.
pub fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_LOG", "warn")
        // Tests run in parallel: each admin endpoint takes a free port.
        .env("WEIR_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("running weir")
}

/// Runs the `weir` binary, which must succeed; returns its standard output.
pub fn weir_ok(args: &[&str]) -> String {
    let out = weir(args);
    assert!(
        out.status.success(),
        "weir {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `weir run --config CONFIG` reading standard input from a pipe, its output piped and its
/// admin endpoint on a free port (returned).
pub fn run_on_stdin(config: &Path) -> (Child, u16) {
    let port = xtask::servers::free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("WEIR_ADMIN_LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, port)
}

/// Writes `dir/pipeline.toml`: standard input (50 ms batch timeout) through bot-filter as
/// stage `bots` into an NDJSON sink and a dead-letter file in `dir`, its plugins in
/// `plugin_dir`, with `tables` (TOML tables) after it; returns the config's path.
pub fn stdin_config(dir: &Path, plugin_dir: &str, tables: &str) -> PathBuf {
    let config = dir.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {plugin_dir:?}\n{tables}\n\
             [source.file]\npath = \"-\"\nbatch_timeout = \"50ms\"\n\
             [event]\nkey_field = \"user_id\"\ntime_field = \"ts\"\n\
             [[stages]]\nname = \"bots\"\nplugin = \"bot-filter\"\n\
             [sinks.out]\ntype = \"ndjson\"\nroutes = [\"main\", \"bots\"]\npath = {:?}\n\
             [dead_letter]\npath = {:?}\n",
            dir.join("out.ndjson"),
            dir.join("dlq.ndjson")
        ),
    )
    .unwrap();
    config
}

/// The workspace root.
pub fn root() -> PathBuf {
    xtask::workspace_root()
}

/// Runs a Python script in the test venv (DuckDB, kubernetes-validate, the Datadog check);
/// returns stdout. Fails with the install hint when the venv cannot be made.
pub fn python(script: &str) -> String {
    let python = xtask::python::venv_python().unwrap_or_else(|e| {
        panic!(
            "the test venv ({}) is unavailable: {e:#}",
            xtask::python::PACKAGES.join(", ")
        )
    });
    let out = Command::new(python).arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `GET path` (or another method): status code and body.
pub fn request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// The `/plugins` entry of `stage`.
pub fn plugin_status(port: u16, stage: &str) -> serde_json::Value {
    let body = request(port, "GET", "/plugins")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let all: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    all.as_array()
        .and_then(|a| a.iter().find(|p| p["stage"] == stage).cloned())
        .unwrap_or_default()
}

/// Polls `path` until `check` accepts the answer.
pub fn wait_for_answer(port: u16, path: &str, check: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some((code, body)) = request(port, "GET", path)
            && check(code, &body)
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never gave the expected answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
