//! What the benchmark binaries share: reading `--name value` options, the clickstream events
//! and the in-memory pipeline around the stages, and the process's CPU time.
// Each benchmark binary uses a different part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use weir::config::EventConfig;
use weir::flow::{Provenance, SourceRecord};
use weir::pipeline::{PartitionPipeline, RecordDecoder, Router, Stage, WasmStage};
use weir::runtime::{GeoDb, InstanceSettings, PluginEngine};
use weir::sinks::Sink;
use weir::sinks::memory::{MemoryDeadLetters, MemorySink};
use weir::state::{WatermarkConfig, WatermarkTracker};

/// The routes of the clickstream pipeline.
pub const ROUTES: &[&str] = &["main", "bots", "sessions", "features", "late"];

/// The value after `name` on the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `weir` binary to run: `--weir PATH` (another build's, to compare), or this build's.
pub fn weir_binary() -> std::path::PathBuf {
    arg("--weir", env!("CARGO_BIN_EXE_weir").to_string()).into()
}

/// Writes `examples/kafka/pipeline.toml` into `out`, pointed at `bootstrap`, reading `topic`
/// in `group` with `delivery`; returns its path.
pub fn kafka_pipeline_config(
    bootstrap: &str,
    out: &std::path::Path,
    group: &str,
    delivery: &str,
    topic: &str,
) -> std::path::PathBuf {
    let root = xtask::workspace_root();
    let config = std::fs::read_to_string(root.join("examples/kafka/pipeline.toml"))
        .unwrap()
        .replace("127.0.0.1:9092", bootstrap)
        .replace("topics = [\"clicks\"]", &format!("topics = [\"{topic}\"]"))
        .replace(
            "group = \"weir-clickstream\"",
            &format!("group = \"{group}\""),
        )
        .replace("out/kafka", out.to_str().unwrap())
        .replace(
            "delivery = \"exactly-once\"",
            &format!("delivery = \"{delivery}\""),
        );
    weir::synth::geodb::write(&out.join("geo.mmdb")).unwrap();
    let path = out.join("pipeline.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// CPU time of this process (user + system).
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer we pass and reads nothing else.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `n` events of about 200 bytes: 5,000 users, times advancing ~40 ms per event, 2% crawlers.
pub fn events(n: usize) -> Vec<SourceRecord> {
    events_from(0, n)
}

/// Events `start..start + n` of the same stream as [`events`].
pub fn events_from(start: usize, n: usize) -> Vec<SourceRecord> {
    let ips = [
        "81.2.69.12",
        "89.160.20.7",
        "175.16.199.3",
        "10.1.2.3",
        "93.184.216.9",
        "2a02:cf40:1::9",
    ];
    (start..start + n)
        .map(|i| {
            let ua = if i % 50 == 0 { "Googlebot/2.1" } else { "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0" };
            let value = format!(
                r#"{{"event_id":"e{i:08}","user_id":"u{:05}","ts":{},"type":"page_view","url":"https://shop.example.com/p/{}","referrer":"https://www.google.com/","user_agent":"{ua}","ip":"{}"}}"#,
                (i * 7919) % 5_000,
                1_767_225_600_000i64 + (i as i64) * 40,
                i % 977,
                ips[i % ips.len()],
            );
            SourceRecord {
                key: None,
                value: value.into_bytes(),
                timestamp: None,
                headers: Vec::new(),
                provenance: Provenance { source: "bench".into(), partition: 0, offset: i as i64 , trace: None,},
            }
        })
        .collect()
}

/// The bundled plugins `names` as Wasm stages (built by `xtask::plugins::build_all`), each
/// with the config `config(name)` gives, the geo database and a 2 s call budget.
pub fn wasm_stages(
    engine: &Arc<PluginEngine>,
    geo: &Arc<GeoDb>,
    names: &[&str],
    config: impl Fn(&str) -> Vec<(String, String)>,
) -> Vec<Box<dyn Stage>> {
    let dir = xtask::plugins::output_dir();
    let settings = InstanceSettings {
        memory_limit: 64 << 20,
        cpu_limit: Duration::from_secs(2),
        ..InstanceSettings::default()
    };
    names
        .iter()
        .map(|name| -> Box<dyn Stage> {
            let plugin = engine.load_file(&dir.join(format!("{name}.wasm"))).unwrap();
            let stage = WasmStage::new(
                engine.clone(),
                name,
                plugin,
                settings,
                Some(geo.clone()),
                config(name),
            );
            Box::new(stage.unwrap())
        })
        .collect()
}

/// A pipeline of `stages` with one counting sink per route of the clickstream pipeline.
pub fn pipeline(stages: Vec<Box<dyn Stage>>) -> (PartitionPipeline, Vec<MemorySink>) {
    let sinks: Vec<MemorySink> = ROUTES.iter().map(|r| MemorySink::counting(r)).collect();
    let boxed = sinks
        .iter()
        .zip(ROUTES)
        .map(|(s, r)| (Box::new(s.clone()) as Box<dyn Sink>, vec![r.to_string()]))
        .collect();
    let router = Router::new(boxed, Box::new(MemoryDeadLetters::default()));
    let watermark = WatermarkTracker::new(WatermarkConfig {
        out_of_orderness: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(3600),
    });
    (
        PartitionPipeline::new(
            RecordDecoder::new(&EventConfig {
                key_field: "user_id".into(),
                time_field: "ts".into(),
                ..EventConfig::default()
            }),
            stages,
            router,
            watermark,
        ),
        sinks,
    )
}
