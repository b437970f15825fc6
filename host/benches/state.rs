//! State and memory with many keys: bot-filter → ip-geo → sessionize as Wasm components over
//! `--users` distinct users (default 1,000,000) with `--events-per-user` events each, all
//! within one session gap, so every user is tracked by bot-filter and has one open session
//! at the end. Reports each stage's state (entries, bytes, bytes per user), the encoded
//! snapshot and the process's peak resident memory.
//!
//! Run: `cargo bench -p weir --bench state -- --users 1000000 --events-per-user 2`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{arg, cpu_time, pipeline, wasm_stages};
use weir::flow::{Provenance, SourceRecord};
use weir::runtime::{EngineSettings, GeoDb, PluginEngine};

const BATCH: usize = 512;
const STAGES: &[&str] = &["bot-filter", "ip-geo", "sessionize"];

/// Event `i` of the stream: user `i % users`, one millisecond after event `i - 1`.
fn event(i: usize, users: usize) -> SourceRecord {
    const IPS: [&str; 5] = [
        "81.2.69.12",
        "89.160.20.7",
        "175.16.199.3",
        "93.184.216.9",
        "2a02:cf40:1::9",
    ];
    let user = i % users;
    let value = format!(
        r#"{{"event_id":"e{i:09}","user_id":"u{user:07}","ts":{},"type":"page_view","url":"https://shop.example.com/p/{}","referrer":"https://www.google.com/","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0","ip":"{}"}}"#,
        1_767_225_600_000i64 + i as i64,
        i % 977,
        IPS[user % IPS.len()],
    );
    SourceRecord {
        key: None,
        value: value.into_bytes(),
        timestamp: None,
        headers: Vec::new(),
        provenance: Provenance {
            source: "bench".into(),
            partition: 0,
            offset: i as i64,
        },
    }
}

/// The process's peak and current resident memory in MiB (`VmHWM`, `VmRSS`).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() {
    let users: usize = arg("--users", 1_000_000);
    let per_user: usize = arg("--events-per-user", 2);
    let events = users * per_user;
    xtask::plugins::build_all().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    weir::synth::geodb::write(&db).unwrap();
    let geo = Arc::new(GeoDb::open(&db).unwrap());
    let engine = Arc::new(PluginEngine::new(&EngineSettings::default()).unwrap());
    let (mut pipeline, _sinks) = pipeline(wasm_stages(&engine, &geo, STAGES, |_| Vec::new()));
    let (_, rss_before) = rss_mib();
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    let mut batch = Vec::with_capacity(BATCH);
    for start in (0..events).step_by(BATCH) {
        batch.clear();
        batch.extend((start..events.min(start + BATCH)).map(|i| event(i, users)));
        pipeline.process(&batch).unwrap();
    }
    let (wall, cpu) = (wall0.elapsed(), cpu_time() - cpu0);
    let (peak, current) = rss_mib();
    println!(
        "{users} users x {per_user} events through [{}] in {wall:.1?} ({:.3} CPU µs/event)",
        STAGES.join(" -> "),
        cpu.as_secs_f64() * 1e6 / events as f64
    );
    println!(
        "{:<12} {:>10} {:>14} {:>16}",
        "stage", "entries", "state bytes", "bytes per user"
    );
    for (name, entries, bytes) in pipeline.state_report() {
        println!(
            "{name:<12} {entries:>10} {bytes:>14} {:>16.1}",
            bytes as f64 / users as f64
        );
    }
    let snapshot = pipeline.snapshot().unwrap();
    println!(
        "snapshot     {} bytes ({:.1} per user)",
        snapshot.len(),
        snapshot.len() as f64 / users as f64
    );
    println!(
        "resident     {rss_before:.0} MiB before the input, {current:.0} MiB after, peak {peak:.0} MiB"
    );
}
