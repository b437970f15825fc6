//! `weir run` on a generated NDJSON clickstream file (bot-filter → ip-geo → sessionize, events
//! and sessions to Parquet, as `examples/clickstream/pipeline.toml`): CPU per event, events per
//! second and peak memory of the whole process, for each worker count asked for.
//!
//! Run: `cargo bench -p weir --bench file -- --events 4000000 --workers 1,2 --rounds 3`.
//! `--workers default` writes no `[runtime]` table (what a binary without one needs), and
//! `--weir PATH --plugin-dir DIR` runs another build, e.g. an older commit's, for a before and
//! after in the same run. Start-up and shutdown alone (compiling the plugins, opening the
//! lake) are measured on an empty file in the same run and subtracted in the last column.
//! `--otlp on` runs each worker count again with spans and metrics exported over OTLP (to a
//! receiver in this process that takes and drops them) and prints the cost as a ratio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::arg;

/// One `weir run`: wall time, CPU time and peak resident memory of the process.
struct Run {
    wall: Duration,
    cpu: Duration,
    max_rss_mib: f64,
    records: u64,
}

/// Lines of the generated clickstream, cached under the target folder by count.
fn input(events: usize) -> PathBuf {
    let dir = xtask::target_dir().join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("clickstream-{events}.ndjson"));
    if path.is_file() {
        return path;
    }
    let started = Instant::now();
    // About 33 events per user (1-4 sessions of 3-25 events): enough users for `events`.
    let lines = weir::synth::clickstream::generate(&weir::synth::clickstream::ClickstreamSpec {
        users: events / 30 + 10,
        ..Default::default()
    });
    assert!(
        lines.len() >= events,
        "generated only {} lines",
        lines.len()
    );
    let mut text = lines[..events].join("\n");
    text.push('\n');
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    eprintln!("generated {events} events in {:?}", started.elapsed());
    path
}

/// The example file pipeline, reading `data` and writing under `out`, with `workers` when
/// given, exporting spans and metrics to `otlp` when given.
fn config(data: &Path, out: &Path, workers: Option<usize>, otlp: Option<u16>) -> PathBuf {
    let root = xtask::workspace_root();
    let mut text = std::fs::read_to_string(root.join("examples/clickstream/pipeline.toml"))
        .unwrap()
        .replace("examples/clickstream/events.ndjson", data.to_str().unwrap())
        .replace("out/clickstream", out.to_str().unwrap());
    if let Some(workers) = workers {
        text.push_str(&format!("\n[runtime]\nworkers = {workers}\n"));
    }
    if let Some(port) = otlp {
        text.push_str(&format!(
            "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nmetrics = true\n"
        ));
    }
    weir::synth::geodb::write(&out.join("geo.mmdb")).unwrap();
    let path = out.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000)
}

/// Runs `weir run` and waits for it with `wait4`, which reports the child's own CPU time and
/// peak memory.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which std's Child does not offer"
)]
fn weir_run(
    weir: &Path,
    plugins: &Path,
    data: &Path,
    workers: Option<usize>,
    otlp: Option<u16>,
) -> Run {
    let out = tempfile::tempdir().unwrap();
    let path = config(data, out.path(), workers, otlp);
    let started = Instant::now();
    let child = Command::new(weir)
        .args(["run", "--config"])
        .arg(&path)
        .arg("--plugin-dir")
        .arg(plugins)
        .env("WEIR_LOG", "warn")
        .env("WEIR_ADMIN_LISTEN", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let stdout = child.stdout.unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 writes the exit status and a rusage into the pointers we pass.
    let usage = unsafe {
        assert_eq!(libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()), pid);
        usage.assume_init()
    };
    let wall = started.elapsed();
    let summary = reader.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "weir failed ({status}):\n{summary}"
    );
    let records = summary
        .lines()
        .find_map(|l| l.strip_prefix("records in"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no record count in:\n{summary}"));
    Run {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        records,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// An OTLP/HTTP endpoint that answers every export with an empty success and keeps
/// nothing; returns its port.
fn otlp_sink() -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// What one configuration costs: events/s and CPU µs per event.
struct Measured {
    rate: f64,
    cpu_us: f64,
}

/// Measures each of `exports` (no OTLP export, or one to a port) with `workers`, their rounds
/// interleaved so that a drift of the machine's speed touches them alike.
#[expect(clippy::too_many_arguments, reason = "a bench's knobs, passed through")]
fn measure(
    weir: &Path,
    plugins: &Path,
    data: &Path,
    empty: &Path,
    events: usize,
    rounds: usize,
    workers: Option<usize>,
    exports: &[Option<u16>],
) -> Vec<Measured> {
    let mut runs: Vec<Vec<Run>> = exports.iter().map(|_| Vec::new()).collect();
    let mut idle: Vec<Vec<Run>> = exports.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, &otlp) in exports.iter().enumerate() {
            idle[i].push(weir_run(weir, plugins, empty, workers, otlp));
            let run = weir_run(weir, plugins, data, workers, otlp);
            assert_eq!(run.records, events as u64, "weir read a different count");
            runs[i].push(run);
        }
    }
    let label = workers.map_or("default".to_string(), |w| w.to_string());
    exports
        .iter()
        .zip(runs.iter().zip(&idle))
        .map(|(otlp, (runs, idle))| {
            let rate = median(
                runs.iter()
                    .map(|r| events as f64 / r.wall.as_secs_f64())
                    .collect(),
            );
            let cpu_us = median(
                runs.iter()
                    .map(|r| r.cpu.as_secs_f64() * 1e6 / events as f64)
                    .collect(),
            );
            let startup = median(idle.iter().map(|r| r.cpu.as_secs_f64()).collect());
            let rss = median(runs.iter().map(|r| r.max_rss_mib).collect());
            let net_us = cpu_us - startup * 1e6 / events as f64;
            let telemetry = if otlp.is_some() { " otlp" } else { "" };
            println!(
                "workers {label:<8}{telemetry:<5} {rate:>10.0} events/s  {cpu_us:>7.3} CPU µs/event  start-up {startup:.2} CPU s  without start-up {net_us:>7.3} µs/event  peak RSS {rss:.0} MiB"
            );
            Measured { rate, cpu_us }
        })
        .collect()
}

fn main() {
    let events: usize = arg("--events", 4_000_000);
    let rounds: usize = arg("--rounds", 3);
    let workers: Vec<Option<usize>> = arg("--workers", "1,2".to_string())
        .split(',')
        .map(|w| (w != "default").then(|| w.parse().expect("--workers: numbers or default")))
        .collect();
    let otlp = (arg("--otlp", "off".to_string()) == "on").then(otlp_sink);
    let weir = common::weir_binary();
    let plugins = match arg("--plugin-dir", String::new()) {
        dir if dir.is_empty() => xtask::plugins::build_all().unwrap(),
        dir => PathBuf::from(dir),
    };
    let data = input(events);
    let empty = tempfile::NamedTempFile::new().unwrap();
    println!(
        "weir run on {events} clickstream events ({}), {rounds} rounds, binary {}",
        data.display(),
        weir.display()
    );
    let label = |w: Option<usize>| w.map_or("default".to_string(), |w| w.to_string());
    let mut rows = Vec::new();
    for &w in &workers {
        let exports: Vec<Option<u16>> = std::iter::once(None).chain(otlp.map(Some)).collect();
        let measured = measure(
            &weir,
            &plugins,
            &data,
            empty.path(),
            events,
            rounds,
            w,
            &exports,
        );
        let plain = &measured[0];
        if let Some(traced) = measured.get(1) {
            println!(
                "otlp     workers {}: {:.3}x CPU per event, {:.3}x events/s against no export",
                label(w),
                traced.cpu_us / plain.cpu_us,
                traced.rate / plain.rate
            );
        }
        rows.push((w, plain.rate));
    }
    if let Some((base_w, base_rate)) = rows.first().copied() {
        for (w, rate) in &rows[1..] {
            println!(
                "scaling  workers {} / workers {}: {:.2}x events/s",
                label(*w),
                label(base_w),
                rate / base_rate
            );
        }
    }
}
