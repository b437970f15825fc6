//! The bot filter written in Rust, Python and JavaScript, on the same events in the same run:
//! each component's size, the cost of compiling it, of starting an instance (instantiation
//! and `init`, which for Python and JavaScript includes the interpreter's start), and CPU per
//! event through the same pipeline. What a user gives up for writing a plugin in a language
//! with a runtime.
//!
//! Run: `cargo bench -p weir --bench languages` (add `-- --events N --rounds R`). Figures are
//! medians over the rounds; compare the ratios to Rust.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{arg, cpu_time, events, pipeline};
use weir::pipeline::WasmStage;
use weir::runtime::{EngineSettings, InstanceSettings, PluginEngine};

const BATCH: usize = 512;

/// CPU and wall time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    let out = f();
    (out, cpu_time() - cpu, wall.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Figures {
    size: usize,
    compile_cpu: Duration,
    compile_wall: Duration,
    start_cpu: Duration,
    start_wall: Duration,
    cpu_per_event: f64,
    outputs: usize,
}

fn measure(component: &Path, n: usize, rounds: usize) -> Figures {
    let bytes = std::fs::read(component).unwrap();
    let input = events(n);
    let settings = InstanceSettings {
        memory_limit: 64 << 20,
        cpu_limit: Duration::from_secs(5),
        ..InstanceSettings::default()
    };
    let (mut compile, mut start, mut per_event) = (Vec::new(), Vec::new(), Vec::new());
    let mut outputs = 0;
    for _ in 0..rounds {
        // A new engine each round: its compile cache would make every compile after the
        // first nearly free.
        let engine = Arc::new(PluginEngine::new(&EngineSettings::default()).unwrap());
        let (plugin, cpu, wall) = timed(|| engine.load_bytes("bot-filter", &bytes).unwrap());
        compile.push((cpu, wall));
        let (stage, cpu, wall) = timed(|| {
            WasmStage::new(
                engine.clone(),
                "bot-filter",
                plugin,
                settings,
                None,
                Vec::new(),
            )
            .unwrap()
        });
        start.push((cpu, wall));
        let (mut p, sinks) = pipeline(vec![Box::new(stage)]);
        let ((), cpu, _) = timed(|| {
            for chunk in input.chunks(BATCH) {
                p.process(chunk).unwrap();
            }
            p.finish().unwrap();
        });
        per_event.push(cpu);
        outputs = sinks.iter().map(|s| s.count()).sum();
    }
    let pick = |v: &[(Duration, Duration)], cpu: bool| {
        median(v.iter().map(|t| if cpu { t.0 } else { t.1 }).collect())
    };
    Figures {
        size: bytes.len(),
        compile_cpu: pick(&compile, true),
        compile_wall: pick(&compile, false),
        start_cpu: pick(&start, true),
        start_wall: pick(&start, false),
        cpu_per_event: median(per_event).as_secs_f64() * 1e6 / n as f64,
        outputs,
    }
}

fn main() {
    let n = arg("--events", 20_000);
    let rounds = arg("--rounds", 3);
    let weir = Path::new(env!("CARGO_BIN_EXE_weir"));
    let components: [(&str, PathBuf); 3] = [
        (
            "Rust",
            xtask::plugins::build_all().unwrap().join("bot-filter.wasm"),
        ),
        (
            "Python",
            xtask::guests::build(weir, "plugins/bot-filter/python").unwrap(),
        ),
        (
            "JavaScript",
            xtask::guests::build(weir, "plugins/bot-filter/js").unwrap(),
        ),
    ];
    println!("bot-filter on {n} events, batches of {BATCH}, {rounds} rounds, one thread");
    println!(
        "{:<11} {:>10} {:>16} {:>16} {:>14} {:>10}",
        "language", "size MB", "compile CPU s", "start CPU ms", "CPU µs/event", "vs Rust"
    );
    let mut rust = None;
    for (language, component) in &components {
        let f = measure(component, n, rounds);
        let base = *rust.get_or_insert(f.cpu_per_event);
        println!(
            "{language:<11} {:>10.1} {:>9.2} ({:.2} wall) {:>8.1} ({:.1} wall) {:>14.2} {:>9.1}x  ({} outputs)",
            f.size as f64 / 1e6,
            f.compile_cpu.as_secs_f64(),
            f.compile_wall.as_secs_f64(),
            f.start_cpu.as_secs_f64() * 1e3,
            f.start_wall.as_secs_f64() * 1e3,
            f.cpu_per_event,
            f.cpu_per_event / base,
            f.outputs,
        );
    }
}
