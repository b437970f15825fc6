//! Throughput of the three bundled transforms as Wasm components against the same transforms
//! compiled natively, through the same pipeline (in-memory source and counting sinks), in the
//! same run. Also: the SDK's field access against a full serde_json parse and re-serialize.
//!
//! Run: `cargo bench -p weir --bench transforms` (add `-- --events N --rounds R` to change
//! the workload, `--stages ip-geo` to run a subset, `--only wasm` or `--only native` to run one
//! side, for a profile). Figures are medians over the rounds; the ratio is what to compare.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{arg, cpu_time, events, pipeline};
use weir::flow::SourceRecord;
use weir::pipeline::{NativeStage, PartitionPipeline, Stage};
use weir::runtime::{EngineSettings, GeoDb, PluginEngine};
use weir::sinks::memory::MemorySink;

const BATCH: usize = 512;

/// Sessionize with its defaults (30-minute gap): with 5,000 users and an event every 40 ms,
/// a user comes back every ~200 s, so sessions run long and close at the end.
const SESSION_CONFIG: &[(&str, &str)] = &[];

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const STAGES: &[&str] = &["bot-filter", "ip-geo", "sessionize"];

fn stage_config(name: &str) -> Vec<(String, String)> {
    config(if name == "sessionize" {
        SESSION_CONFIG
    } else {
        &[]
    })
}

fn wasm_stages(
    engine: &Arc<PluginEngine>,
    geo: &Arc<GeoDb>,
    names: &[String],
) -> Vec<Box<dyn Stage>> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    common::wasm_stages(engine, geo, &names, stage_config)
}

fn native_stages(geo: &Arc<GeoDb>, names: &[String]) -> Vec<Box<dyn Stage>> {
    names
        .iter()
        .map(|name| -> Box<dyn Stage> {
            let cfg = stage_config(name);
            match name.as_str() {
                "bot-filter" => {
                    Box::new(NativeStage::<bot_filter::BotFilter>::new(name, cfg).unwrap())
                }
                "ip-geo" => {
                    let geo = geo.clone();
                    Box::new(
                        NativeStage::<ip_geo::IpGeo>::new(name, cfg)
                            .unwrap()
                            .with_geo(move |ip| geo.lookup(ip)),
                    )
                }
                "sessionize" => {
                    Box::new(NativeStage::<sessionize::Sessionize>::new(name, cfg).unwrap())
                }
                other => panic!("unknown stage {other}"),
            }
        })
        .collect()
}

struct Round {
    wall: Duration,
    cpu: Duration,
    delivered: usize,
}

fn run(mut pipeline: PartitionPipeline, sinks: &[MemorySink], input: &[SourceRecord]) -> Round {
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    for chunk in input.chunks(BATCH) {
        pipeline.process(chunk).unwrap();
    }
    pipeline.finish().unwrap();
    Round {
        wall: wall0.elapsed(),
        cpu: cpu_time() - cpu0,
        delivered: sinks.iter().map(MemorySink::count).sum(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(label: &str, n: usize, rounds: &[Round]) -> (f64, f64) {
    let wall = median(rounds.iter().map(|r| r.wall).collect());
    let cpu = median(rounds.iter().map(|r| r.cpu).collect());
    let rate = n as f64 / wall.as_secs_f64();
    let cpu_us = cpu.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{label:<8} {rate:>12.0} events/s  {cpu_us:>7.3} CPU µs/event  ({} outputs)",
        rounds[0].delivered
    );
    (rate, cpu_us)
}

/// Reading one field and adding one, per event: the SDK's scan-and-splice (`set`, which looks
/// for the field first, and `add`, which appends) against a serde_json parse and re-serialize.
fn json_access(n: usize) {
    let input = events(n);
    let mut total = 0usize;
    let mut time = |f: &dyn Fn(&[u8]) -> usize| {
        let t0 = Instant::now();
        for r in &input {
            total += f(&r.value);
        }
        std::hint::black_box(total);
        t0.elapsed().as_secs_f64() * 1e9 / n as f64
    };
    let read = |v: &[u8]| weir_sdk::json::get_str(v, "ip").map_or(0, |s| s.len());
    let set = time(&|value| {
        let mut v = value.to_vec();
        weir_sdk::json::set_raw(&mut v, "geo_country", b"\"GB\"");
        read(&v) + v.len()
    });
    let add = time(&|value| {
        let mut v = value.to_vec();
        weir_sdk::json::append_raw(&mut v, "geo_country", b"\"GB\"");
        read(&v) + v.len()
    });
    let full = time(&|value| {
        let mut v: serde_json::Value = serde_json::from_slice(value).unwrap();
        v["geo_country"] = "GB".into();
        v["ip"].as_str().map_or(0, str::len) + serde_json::to_vec(&v).unwrap().len()
    });
    println!(
        "json     read one field + add one: sdk set {set:.0} ns, sdk add {add:.0} ns, serde_json parse+serialize {full:.0} ns per event ({:.1}x / {:.1}x)",
        full / set,
        full / add
    );
}

fn main() {
    let n = arg("--events", 200_000);
    let rounds = arg("--rounds", 3);
    let stages: Vec<String> = arg("--stages", STAGES.join(","))
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    xtask::plugins::build_all().expect("building plugins");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    weir::synth::geodb::write(&db).unwrap();
    let geo = Arc::new(GeoDb::open(&db).unwrap());
    let engine = Arc::new(PluginEngine::new(&EngineSettings::default()).unwrap());
    let input = events(n);

    println!(
        "{n} events of ~{} bytes through [{}], batches of {BATCH}, {rounds} rounds, one thread",
        input[0].value.len(),
        stages.join(" -> ")
    );
    // `--only wasm` (or `native`) runs one side, for profiling it alone.
    let only = arg("--only", String::new());
    if !only.is_empty() {
        let mut runs = Vec::new();
        for _ in 0..rounds {
            let (p, s) = match only.as_str() {
                "wasm" => pipeline(wasm_stages(&engine, &geo, &stages)),
                _ => pipeline(native_stages(&geo, &stages)),
            };
            runs.push(run(p, &s, &input));
        }
        report(&only, n, &runs);
        return;
    }
    let (mut wasm, mut native) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (p, s) = pipeline(wasm_stages(&engine, &geo, &stages));
        wasm.push(run(p, &s, &input));
        let (p, s) = pipeline(native_stages(&geo, &stages));
        native.push(run(p, &s, &input));
    }
    assert_eq!(
        wasm[0].delivered, native[0].delivered,
        "wasm and native outputs differ"
    );
    let (wasm_rate, wasm_cpu) = report("wasm", n, &wasm);
    let (native_rate, native_cpu) = report("native", n, &native);
    println!(
        "ratio    wasm/native time {:.2}x, CPU {:.2}x",
        native_rate / wasm_rate,
        wasm_cpu / native_cpu
    );
    json_access(n);
}
