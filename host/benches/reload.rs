//! Hot reload under load: the time from a new plugin file's rename into the watched folder to
//! the end of the first batch the new version processes, and the pipeline's throughput in the
//! windows around each swap against its steady throughput in the same run.
//!
//! One thread runs bot-filter → ip-geo → sessionize (Wasm, as `weir run` builds them, with
//! the plugin folder watched) on generated clickstream batches into counting sinks. The main
//! thread installs a new build of `bot-filter` every few seconds (the same code with a custom
//! section naming the swap, so each swap compiles a version never seen before) by writing it
//! beside the folder's file and renaming it over it.
//!
//! `--plugin page-type` swaps the example regex plugin instead (a 1.3 MB component, put in
//! front of the three).
//!
//! Run: `cargo bench -p weir --bench reload` (add `-- --swaps N --gap-ms MS` to change it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{arg, events_from, pipeline};
use weir::config::PipelineConfig;
use weir::pipeline::build::PipelineFactory;

const BATCH: usize = 512;
/// Throughput is counted in windows this long.
const WINDOW: Duration = Duration::from_millis(100);

/// The pipeline's stages, `extra` (a plugin swapped that is not among them) first.
fn stages(extra: Option<&str>) -> Vec<&str> {
    extra
        .into_iter()
        .chain(["bot-filter", "ip-geo", "sessionize"])
        .collect()
}

fn config(dir: &Path, stages: &[&str]) -> PipelineConfig {
    let stages: String = stages
        .iter()
        .map(|s| format!("[[stages]]\nname = \"{s}\"\nplugin = \"{s}\"\n"))
        .collect();
    let text = format!(
        r#"
        [source.file]
        path = "unused.ndjson"
        [geo]
        database = "{geo}"
        {stages}
        [sinks.out]
        type = "ndjson"
        routes = ["main"]
        path = "unused-out.ndjson"
        [dead_letter]
        path = "unused-dlq.ndjson"
        "#,
        geo = dir.join("geo.mmdb").display()
    );
    let config: PipelineConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    config
}

/// A build of `plugin` with its own code changed for version `swap`: page-type gets one more
/// URL rule, bot-filter one more user-agent pattern.
fn changed_version(plugin: &str, swap: usize) -> Vec<u8> {
    let variant = format!("{plugin}-v{swap}");
    let (file, anchor, added) = match plugin {
        "page-type" => (
            "src/lib.rs",
            "const DEFAULT_RULES: &[&str] = &[\n",
            format!("    r\"promo{swap}=/promo/{swap}/\",\n"),
        ),
        "bot-filter" => (
            "src/patterns.rs",
            "&[\n",
            format!("    \"weirbenchbot{swap}\",\n"),
        ),
        other => panic!("no code change known for {other}"),
    };
    let built = xtask::plugins::build_variant(plugin, &variant, |dir| {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)?;
        let changed = text.replacen(anchor, &format!("{anchor}{added}"), 1);
        anyhow::ensure!(changed != text, "{} has no `{anchor}`", path.display());
        std::fs::write(&path, changed)?;
        Ok(())
    })
    .unwrap();
    std::fs::read(built).unwrap()
}

/// What the pipeline thread saw: when each batch ended, and when each version first ran.
#[derive(Default)]
struct Timeline {
    batches: Vec<Instant>,
    versions: Vec<(Instant, String)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Batches that ended in each `WINDOW` from `start`.
fn windows(batches: &[Instant], start: Instant, end: Instant) -> Vec<(Instant, f64)> {
    let mut out = Vec::new();
    let mut at = start;
    while at + WINDOW <= end {
        let n = batches
            .iter()
            .filter(|t| **t >= at && **t < at + WINDOW)
            .count();
        out.push((at, (n * BATCH) as f64 / WINDOW.as_secs_f64()));
        at += WINDOW;
    }
    out
}

fn main() {
    let swaps = arg("--swaps", 8usize);
    let gap = Duration::from_millis(arg("--gap-ms", 3000u64));
    // `--plugin page-type` swaps the 1.3 MB regex plugin (put in front of the pipeline).
    let swapped: String = arg("--plugin", "bot-filter".to_string());
    // `--changed-code` builds each new version with a change to the plugin's own code (a rule
    // or a pattern added), as a developer's next version is; otherwise each version is the
    // same code with a custom section naming the swap.
    let changed_code = std::env::args().any(|a| a == "--changed-code");
    let extra = (!stages(None).contains(&swapped.as_str())).then_some(swapped.as_str());
    let stages = stages(extra);
    let index = stages.iter().position(|s| *s == swapped).unwrap();
    let built = xtask::plugins::build_all().expect("building plugins");
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for name in &stages {
        let file = format!("{name}.wasm");
        std::fs::copy(built.join(&file), plugins.join(&file)).unwrap();
    }
    weir::synth::geodb::write(&dir.path().join("geo.mmdb")).unwrap();
    let file = plugins.join(format!("{swapped}.wasm"));
    let v1 = std::fs::read(&file).unwrap();
    // Every new version is built before the pipeline starts.
    let versions: Vec<Vec<u8>> = (0..swaps)
        .map(|swap| {
            if changed_code {
                changed_version(&swapped, swap)
            } else {
                xtask::plugins::with_custom_section(&v1, &format!("swap-{swap}"))
            }
        })
        .collect();
    let mut factory = PipelineFactory::new(&config(dir.path(), &stages), &plugins, 1).unwrap();
    factory.watch_plugins().unwrap();
    let (mut pipeline, _sinks) = pipeline(factory.stages().unwrap());

    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (timeline, stop) = (timeline.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = 0;
            let mut version = String::new();
            while !stop.load(Ordering::Relaxed) {
                let batch = events_from(next, BATCH);
                next += BATCH;
                pipeline.process(&batch).unwrap();
                let now = Instant::now();
                let mut t = timeline.lock().unwrap();
                t.batches.push(now);
                let current = pipeline.plugin_versions()[index];
                if current != version {
                    version = current.to_string();
                    t.versions.push((now, version.clone()));
                }
            }
        })
    };

    println!(
        "{} (Wasm), batches of {BATCH}, one pipeline thread; {swaps} swaps of {swapped} ({} KiB), {gap:?} apart",
        stages.join(" → "),
        v1.len() / 1024
    );
    std::thread::sleep(gap);
    let slot = factory.registry().slots()[index].clone();
    let mut renames = Vec::new();
    let mut published = Vec::new();
    for bytes in versions {
        let sha = weir::runtime::sha256_hex(&bytes);
        let tmp = plugins.join(format!(".{swapped}.wasm.tmp"));
        std::fs::write(&tmp, &bytes).unwrap();
        let renamed = Instant::now();
        std::fs::rename(&tmp, &file).unwrap();
        renames.push((renamed, sha));
        let generation = slot.generation();
        while slot.generation() == generation && renamed.elapsed() < gap {
            std::thread::sleep(Duration::from_millis(1));
        }
        published.push(renamed.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(gap.saturating_sub(renamed.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();

    let t = timeline.lock().unwrap();
    let (first, last) = (t.batches[0], *t.batches.last().unwrap());
    let all = windows(&t.batches, first, last);
    // Steady: windows more than a second away from every swap's rename and first batch.
    let mut latencies = Vec::new();
    let mut busy = Vec::new();
    for (renamed, sha) in &renames {
        let (ran, _) = t
            .versions
            .iter()
            .find(|(_, v)| v == sha)
            .unwrap_or_else(|| panic!("version {sha} never ran"));
        latencies.push(ran.duration_since(*renamed).as_secs_f64() * 1e3);
        busy.push((*renamed, *ran + Duration::from_millis(500)));
    }
    let steady: Vec<f64> = all
        .iter()
        .filter(|(at, _)| {
            busy.iter().all(|(from, to)| {
                *at + WINDOW + Duration::from_secs(1) < *from || *at > *to + Duration::from_secs(1)
            })
        })
        .map(|(_, rate)| *rate)
        .collect();
    let baseline = median(steady.clone());
    let mut dips = Vec::new();
    let mut stalls = Vec::new();
    for (from, to) in &busy {
        let around: Vec<f64> = all
            .iter()
            .filter(|(at, _)| *at + WINDOW > *from && *at < *to)
            .map(|(_, rate)| *rate)
            .collect();
        let lowest = around.iter().copied().fold(f64::INFINITY, f64::min);
        dips.push(lowest / baseline);
        // Work missing against the baseline over the swap, as milliseconds of full stop.
        let missing: f64 = around
            .iter()
            .map(|r| (baseline - r).max(0.0) / baseline)
            .sum();
        stalls.push(missing * WINDOW.as_secs_f64() * 1e3);
    }
    println!(
        "steady throughput          {baseline:>10.0} events/s  (median of {} windows of {WINDOW:?})",
        steady.len()
    );
    println!(
        "rename → first new batch   {:>10.1} ms  (median; min {:.1}, max {:.1})",
        median(latencies.clone()),
        latencies.iter().copied().fold(f64::INFINITY, f64::min),
        latencies.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "  of which rename → published {:>7.1} ms  (median: compile, world check, trial init)",
        median(published.clone())
    );
    println!(
        "lowest window during swap  {:>10.2}x steady  (median over swaps; worst {:.2}x)",
        median(dips.clone()),
        dips.iter().copied().fold(f64::INFINITY, f64::min)
    );
    println!(
        "work lost to a swap        {:>10.1} ms of full throughput  (median; worst {:.1})",
        median(stalls.clone()),
        stalls.iter().copied().fold(0.0, f64::max)
    );
}
