//! State and memory with many keys: bot-filter → ip-geo → sessionize as Wasm components over
//! `--users` distinct users (default 1,000,000) with `--events-per-user` events each, all
//! within one session gap, so every user is tracked by bot-filter and has one open session
//! at the end. Reports each stage's state (entries, bytes, bytes per user), the encoded
//! changes since the start and snapshot, the CPU time to write the snapshot in a checkpoint
//! (against the layout written one byte at a time, as before) and the process's peak
//! resident memory.
//!
//! With `--bot-ttl 2m`, the same input runs first with bot-filter's per-user state expiring
//! after 2 minutes of event time, then with the default hour (nothing expires): state, snapshot
//! and CPU per event of both, and their ratios.
//!
//! Run: `cargo bench -p weir --bench state -- --users 1000000 --events-per-user 2 --bot-ttl 2m`.

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
            trace: None,
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

/// What one pass measured.
struct Pass {
    cpu_per_event_us: f64,
    wall: std::time::Duration,
    report: Vec<(String, usize, usize)>,
    /// The encoded changes since the pipeline started (every entry, and the timers pending
    /// or gone since), and the CPU milliseconds encoding them took.
    changes: (usize, f64),
    snapshot_bytes: usize,
    rss_mib: (f64, f64),
    /// The process's peak resident memory when the pass had run, before its changes, snapshot
    /// and checkpoint were encoded.
    peak_mib: f64,
    /// Measured on the last pass only: its copies of the state would raise the next pass's
    /// peak.
    encoding: Option<Encoding>,
}

/// CPU milliseconds to write a checkpoint of the whole state (the snapshot, then the
/// checkpoint around it): with byte strings written whole, as weir does, and as before, each
/// byte string a sequence of `u8` written one byte at a time (the same layout and length).
struct Encoding {
    whole: f64,
    bytewise: f64,
    /// One slice of a rolling snapshot, with no changes.
    slice: f64,
}

/// The state and checkpoint layouts with every byte string a plain `Vec<u8>`, which serde
/// writes as a sequence of `u8`.
#[derive(serde::Serialize, serde::Deserialize)]
#[allow(clippy::type_complexity, reason = "the layout, spelled out")]
struct BytewiseSnapshot {
    version: u32,
    watermark: i64,
    stages: Vec<(
        String,
        std::collections::HashMap<Vec<u8>, (i64, Vec<u8>)>,
        Vec<(i64, Vec<u8>)>,
    )>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BytewiseCheckpoint {
    version: u32,
    offset: i64,
    base: Vec<String>,
    state: Vec<u8>,
    sinks: Vec<(String, Vec<u8>)>,
}

/// What `f` returns, and the CPU milliseconds it took.
fn cpu_ms<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let cpu0 = cpu_time();
    let out = f();
    (out, (cpu_time() - cpu0).as_secs_f64() * 1e3)
}

/// The least CPU milliseconds of three runs of `f`.
fn least_ms<T>(mut f: impl FnMut() -> T) -> f64 {
    (0..3)
        .map(|_| cpu_ms(|| std::hint::black_box(f())).1)
        .fold(f64::INFINITY, f64::min)
}

fn encoding(pipeline: &mut weir::pipeline::PartitionPipeline) -> Encoding {
    use weir::checkpoint::{CHECKPOINT_VERSION, PartitionCheckpoint};
    let mut write_whole = || {
        let checkpoint = PartitionCheckpoint {
            version: CHECKPOINT_VERSION,
            offset: 1,
            base: Vec::new(),
            state: pipeline.snapshot().unwrap().into(),
            sinks: Vec::new(),
        };
        checkpoint.encode_parts("k").unwrap()
    };
    let written = write_whole().concat();
    let whole = least_ms(&mut write_whole);
    let state: BytewiseSnapshot = postcard::from_bytes(
        &postcard::from_bytes::<BytewiseCheckpoint>(&written)
            .unwrap()
            .state,
    )
    .unwrap();
    let write_bytewise = || {
        let checkpoint = BytewiseCheckpoint {
            version: CHECKPOINT_VERSION,
            offset: 1,
            base: Vec::new(),
            state: postcard::to_allocvec(&state).unwrap(),
            sinks: Vec::new(),
        };
        postcard::to_allocvec(&checkpoint).unwrap()
    };
    // The same layout: as long (the map's entries come out in another order).
    assert_eq!(write_bytewise().len(), written.len());
    let bytewise = least_ms(write_bytewise);
    let slice = weir::state::Slice {
        index: 0,
        count: weir::checkpoint::SLICES,
    };
    Encoding {
        whole,
        bytewise,
        slice: least_ms(|| pipeline.changes(Some(slice)).unwrap()),
    }
}

/// Runs the events through a fresh pipeline whose bot-filter gets `bot_config`; the `last`
/// pass also measures writing a checkpoint of its state.
fn pass(
    engine: &Arc<PluginEngine>,
    geo: &Arc<GeoDb>,
    users: usize,
    events: usize,
    bot_config: &[(String, String)],
    last: bool,
) -> Pass {
    let config = |name: &str| {
        if name == "bot-filter" {
            bot_config.to_vec()
        } else {
            Vec::new()
        }
    };
    let (mut pipeline, _sinks) = pipeline(wasm_stages(engine, geo, STAGES, config));
    let (_, rss_before) = rss_mib();
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    let mut batch = Vec::with_capacity(BATCH);
    for start in (0..events).step_by(BATCH) {
        batch.clear();
        batch.extend((start..events.min(start + BATCH)).map(|i| event(i, users)));
        pipeline.process(&batch).unwrap();
    }
    let (wall, cpu) = (wall0.elapsed(), cpu_time() - cpu0);
    let (_, rss_after) = rss_mib();
    Pass {
        cpu_per_event_us: cpu.as_secs_f64() * 1e6 / events as f64,
        wall,
        report: pipeline
            .state_report()
            .into_iter()
            .map(|(name, entries, bytes)| (name.to_string(), entries, bytes))
            .collect(),
        peak_mib: rss_mib().0,
        changes: cpu_ms(|| pipeline.changes(None).unwrap().0.len()),
        snapshot_bytes: pipeline.snapshot().unwrap().len(),
        rss_mib: (rss_before, rss_after),
        encoding: last.then(|| encoding(&mut pipeline)),
    }
}

fn print(title: &str, pass: &Pass, users: usize) {
    println!(
        "{title}: {:.1?} ({:.3} CPU µs/event)",
        pass.wall, pass.cpu_per_event_us
    );
    println!(
        "  {:<12} {:>10} {:>14} {:>16}",
        "stage", "entries", "state bytes", "bytes per user"
    );
    for (name, entries, bytes) in &pass.report {
        println!(
            "  {name:<12} {entries:>10} {bytes:>14} {:>16.1}",
            *bytes as f64 / users as f64
        );
    }
    println!(
        "  snapshot     {} bytes ({:.1} per user)",
        pass.snapshot_bytes,
        pass.snapshot_bytes as f64 / users as f64
    );
    println!(
        "  changes      {} bytes since the start, written in {:.1} CPU ms",
        pass.changes.0, pass.changes.1
    );
    println!(
        "  resident     {:.0} MiB before the input, {:.0} MiB after",
        pass.rss_mib.0, pass.rss_mib.1
    );
    let Some(Encoding {
        whole,
        bytewise,
        slice,
    }) = pass.encoding
    else {
        return;
    };
    println!(
        "  checkpoint   written in {whole:.1} CPU ms, byte strings whole; {bytewise:.1} byte by byte, as before (x{:.2})",
        bytewise / whole
    );
    println!(
        "  slice        one of {} of a rolling snapshot written in {slice:.1} CPU ms (x{:.2} less than the whole)",
        weir::checkpoint::SLICES,
        whole / slice
    );
}

fn main() {
    let users: usize = arg("--users", 1_000_000);
    let per_user: usize = arg("--events-per-user", 2);
    // With `--bot-ttl 2m`, after a warm-up pass, one pass gives bot-filter that mark (so its
    // per-user state lives 2 minutes of event time after a user's last event) and the next
    // keeps the default hour, which outlasts the whole input: the same events with and
    // without expiry.
    let bot_ttl: String = arg("--bot-ttl", String::new());
    let events = users * per_user;
    xtask::plugins::build_all().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    weir::synth::geodb::write(&db).unwrap();
    let geo = Arc::new(GeoDb::open(&db).unwrap());
    let engine = Arc::new(PluginEngine::new(&EngineSettings::default()).unwrap());
    println!(
        "{users} users x {per_user} events, one per ms of event time, through [{}]",
        STAGES.join(" -> ")
    );
    if !bot_ttl.is_empty() {
        // Both measured passes then run warm (the allocator's pages and the code already in).
        pass(&engine, &geo, users, events, &[], false);
    }
    let expiring = (!bot_ttl.is_empty()).then(|| {
        let config = [("bot_ttl".to_string(), bot_ttl.clone())];
        let pass = pass(&engine, &geo, users, events, &config, false);
        print(&format!("bot_ttl {bot_ttl}"), &pass, users);
        pass
    });
    let baseline = pass(&engine, &geo, users, events, &[], true);
    print("bot_ttl 1h (nothing expires)", &baseline, users);
    println!("peak resident {:.0} MiB", baseline.peak_mib);
    if let Some(expiring) = expiring {
        let bytes = |p: &Pass| p.report[0].2 as f64;
        println!(
            "with bot_ttl {bot_ttl}: bot-filter state x{:.3}, snapshot x{:.3}, CPU per event x{:.3} of the baseline",
            bytes(&expiring) / bytes(&baseline),
            expiring.snapshot_bytes as f64 / baseline.snapshot_bytes as f64,
            expiring.cpu_per_event_us / baseline.cpu_per_event_us
        );
    }
}
