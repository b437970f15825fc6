//! Sustainable throughput and event-time latency of `weir run` on Apache Kafka (one node on loopback,
//! sharing the two cores with weir and the load generator), for exactly-once and
//! at-least-once delivery.
//!
//! 1. **Sustainable throughput**: a producer writes generated clickstream events at a fixed
//!    rate, each stamped with the wall clock as its event time, for `--step-seconds`. The rate
//!    is sustainable when the producer keeps it and weir's lag (records produced minus
//!    `weir_source_records_total`, sampled every second) ends the step under two seconds of
//!    input and grows over its second half by less than 2% of the rate per second. Rates
//!    double from `--start-rate` until one is not sustainable, then three bisections narrow
//!    the gap.
//! 2. **Latency** at 50% and 70% of that rate, for `--measure-seconds`, after a warm-up at
//!    the same rate for `--warmup-seconds` (default 5, not measured; the daemon then drains
//!    what is left of it), so that a daemon that falls behind while its plugins and the
//!    broker warm up does not carry that backlog into the measurement: a `read_committed`
//!    consumer of the daemon's bots topic (bot-filter routes each crawler event there as it
//!    passes, a few percent of the input) takes the wall clock minus each record's event
//!    time, for p50, p99 and p99.9.
//! 3. **CPU**: the daemon's user + system time (`/proc/<pid>/stat`) over each latency run,
//!    divided by the events produced in it.
//! 4. **Recovery**: under load at 30% of the first delivery's sustainable rate, the daemon is
//!    killed with -9 `--kills` times (default 5), 5 s apart, and started again at once with
//!    the same instance id; each time from the kill until the new daemon reads records again
//!    (`weir_source_records_total` above zero), for p50 and max.
//!
//! `cargo bench -p weir --bench load -- --step-seconds 20 --measure-seconds 30 --interval 1s`
//! (`--deliveries at-least-once --rate 26000` skips the search; `--fetch-wait-ms 10` sets
//! librdkafka's `fetch.wait.max.ms` for weir's consumer, the latency consumer always using 10;
//! `--batch-timeout 10ms` sets `[source.kafka] batch_timeout`; `--full-checkpoints` sets
//! `[checkpoint] incremental = false`; `--weir PATH` runs another build's `weir`)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use xtask::servers::{KAFKA_VERSION, KafkaCluster};

mod common;

use common::{arg, kafka_pipeline_config};

const PARTITIONS: u32 = 4;

/// The phases of an epoch's commit, as `weir_checkpoint_phase_seconds` labels them.
const PHASES: [&str; 4] = ["prepare", "commit", "markers", "publish"];

/// A running `weir run` and its admin address.
struct Daemon {
    child: Child,
    admin: String,
}

impl Daemon {
    fn start(config: &Path, instance: &str) -> Daemon {
        let log = config.with_file_name(format!("{instance}.log"));
        let child = Command::new(common::weir_binary())
            .args(["run", "--instance-id", instance, "--config"])
            .arg(config)
            .arg("--plugin-dir")
            .arg(xtask::plugins::output_dir())
            // `LOAD_WEIR_LOG` sets the daemon's log filter (each partition's checkpoint at
            // `weir::kafka=debug`); the log is `<instance>.log` beside its config.
            .env(
                "WEIR_LOG",
                std::env::var("LOAD_WEIR_LOG").unwrap_or_else(|_| "info,librdkafka=error".into()),
            )
            .env("WEIR_ADMIN_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Owned by the daemon at once, so a failed start still kills and reaps it.
        let mut daemon = Daemon {
            child,
            admin: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Partitions assigned") {
                daemon.admin = text
                    .lines()
                    .find(|l| l.contains("Admin endpoint listening"))
                    .and_then(|l| l.split("address=").nth(1))
                    .unwrap()
                    .trim()
                    .to_string();
                return daemon;
            }
            assert!(Instant::now() < deadline, "weir did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The sum of every series of the counter or gauge `name` on `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        sum_of(&self.scrape(), name, "")
    }

    /// The text of `/metrics`.
    fn scrape(&self) -> String {
        let mut stream = std::net::TcpStream::connect(&self.admin).unwrap();
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: weir\r\n\r\n").unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    }

    /// User + system CPU time of the process so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_micros(ticks * 1_000_000 / per_second)
    }

    /// Records produced and not yet read by weir.
    fn lag(&self, produced: u64) -> f64 {
        produced as f64 - self.metric("weir_source_records_total")
    }
}

/// The sum of the series of `name` in the `/metrics` text `body` whose labels hold `label`
/// (`phase="commit"`, say; empty: every series).
fn sum_of(body: &str, name: &str, label: &str) -> f64 {
    body.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The generated events, re-stamped at send time with a fresh id and the wall clock.
struct Load {
    events: Vec<serde_json::Value>,
    malformed: Vec<String>,
    sent: u64,
}

impl Load {
    fn new() -> Load {
        let lines =
            weir::synth::clickstream::generate(&weir::synth::clickstream::ClickstreamSpec {
                users: 3_000,
                ..Default::default()
            });
        let (mut events, mut malformed) = (Vec::new(), Vec::new());
        for line in lines {
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(value) if value.get("ts").is_some_and(|t| t.is_string()) => events.push(value),
                _ => malformed.push(line),
            }
        }
        Load {
            events,
            malformed,
            sent: 0,
        }
    }

    /// The next line and its key; one line in a hundred is a malformed one, as generated.
    fn next(&mut self) -> (String, String) {
        self.sent += 1;
        if self.sent.is_multiple_of(100) && !self.malformed.is_empty() {
            let line = self.malformed[(self.sent / 100) as usize % self.malformed.len()].clone();
            return (line, "bad".into());
        }
        let index = (self.sent as usize) % self.events.len();
        let event = &mut self.events[index];
        event["event_id"] = format!("load-{}", self.sent).into();
        // Each generated user becomes 100 users, so that a user's events keep a human pace
        // (under bot-filter's 120 a minute) at any rate this machine reaches.
        let user = event["user_id"].as_str().unwrap_or_default();
        let base = user.split('~').next().unwrap_or_default().to_string();
        event["user_id"] = format!("{base}~{}", self.sent % 100).into();
        event["ts"] = chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into();
        let key = event["user_id"].as_str().unwrap_or_default().to_string();
        (event.to_string(), key)
    }
}

/// Writes `rate` events per second to `topic` for `seconds`, counting them in `produced` and
/// calling `each_second` with the time since the start once a second. Returns how long it
/// took: longer than `seconds` when the producer could not keep the rate.
fn produce_at(
    bootstrap: &str,
    topic: &str,
    load: &mut Load,
    (rate, seconds): (f64, f64),
    produced: &AtomicU64,
    mut each_second: impl FnMut(f64),
) -> f64 {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut next_second = 1.0;
    while started.elapsed().as_secs_f64() < seconds {
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed >= next_second {
            each_second(elapsed);
            next_second += 1.0;
        }
        let due = (elapsed * rate) as u64;
        while sent < due {
            let (line, key) = load.next();
            let mut record = BaseRecord::to(topic).payload(&line).key(&key);
            while let Err((_, back)) = producer.send(record) {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            sent += 1;
            produced.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    started.elapsed().as_secs_f64()
}

/// Event-time latencies (ms) of the records appearing in `bots` until `stop`.
fn watch_latency(bootstrap: &str, bots: &str, stop: &AtomicBool) -> Vec<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "load-latency")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // The instrument: a short fetch wait, so the broker's fetch wait adds little to what
        // is measured.
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..2 {
        assignment
            .add_partition_offset(bots, partition, Offset::End)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = chrono::Utc::now().timestamp_millis();
        let value: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or_default();
        let time = value["ts"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let Some(time) = time {
            latencies.push((now - time.timestamp_millis()) as f64);
        }
    }
    latencies
}

/// One run at a fixed rate.
struct Step {
    rate: f64,
    produced: u64,
    /// Events per second the producer achieved.
    achieved: f64,
    /// Lag samples: (seconds since the start, records).
    lags: Vec<(f64, f64)>,
    lag_end: f64,
    cpu: Duration,
    /// Mean time of the epochs committed during the step, in milliseconds.
    checkpoint_ms: f64,
    /// Mean time of each phase of those epochs (`PHASES`), in milliseconds.
    phase_ms: Vec<f64>,
    latencies: Vec<f64>,
}

impl Step {
    /// The producer kept the rate, weir ended less than two seconds of input behind, and its
    /// lag over the second half grew by less than 2% of the rate per second.
    fn sustainable(&self) -> bool {
        self.achieved >= 0.95 * self.rate
            && self.lag_end <= 2.0 * self.achieved
            && self.lag_growth() <= 0.02 * self.achieved
    }

    /// Least-squares slope of the lag over the second half, records per second.
    fn lag_growth(&self) -> f64 {
        let end = self.lags.last().map_or(0.0, |(t, _)| *t);
        let half: Vec<(f64, f64)> = self
            .lags
            .iter()
            .copied()
            .filter(|(t, _)| *t >= end / 2.0)
            .collect();
        let n = half.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let (mt, ml) = (
            half.iter().map(|p| p.0).sum::<f64>() / n,
            half.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let covariance: f64 = half.iter().map(|(t, l)| (t - mt) * (l - ml)).sum();
        let variance: f64 = half.iter().map(|(t, _)| (t - mt).powi(2)).sum();
        covariance / variance.max(1e-9)
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or(f64::NAN)
    }

    fn cpu_per_event_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.produced.max(1) as f64
    }
}

/// The setting of one delivery mode: its daemon, input topic and load.
struct Bench {
    bootstrap: String,
    /// The daemon's config and instance id, to start it again.
    config: PathBuf,
    name: String,
    topic: String,
    /// The topic bot-filter routes bots to.
    bots: String,
    daemon: Daemon,
    load: Load,
    produced: Arc<AtomicU64>,
}

impl Bench {
    /// A new input topic, consumer group and daemon for `delivery`, named after `purpose`.
    fn fresh(
        kafka: &KafkaCluster,
        delivery: &str,
        purpose: &str,
        interval: &str,
        out: &Path,
    ) -> Bench {
        let name = format!("{delivery}-{purpose}");
        let topic = format!("load-{name}");
        kafka.create_topic(&topic, PARTITIONS).unwrap();
        let dir = out.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = config(&kafka.bootstrap(), &dir, &name, delivery, &topic, interval);
        // Bots to a topic of this daemon's own, so the latency consumer sees nothing else.
        let bots = format!("weir.bots.{name}");
        kafka.create_topic(&bots, 2).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("bots = \"weir.bots\"", &format!("bots = \"{bots}\"")),
        )
        .unwrap();
        Bench {
            bootstrap: kafka.bootstrap(),
            topic,
            bots,
            daemon: Daemon::start(&path, &name),
            config: path,
            name,
            load: Load::new(),
            produced: Arc::default(),
        }
    }

    /// Waits until weir has read everything produced and committed it (at most 3 minutes).
    fn drain(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while self.daemon.lag(self.produced.load(Ordering::Relaxed)) > 100.0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(500));
        }
        // Then until no epoch has committed for three seconds (weir skips epochs with
        // nothing to commit), so the last outputs are readable.
        let (mut epochs, mut since) = (-1.0, Instant::now());
        while since.elapsed() < Duration::from_secs(3) && Instant::now() < deadline {
            let now = self.daemon.metric("weir_checkpoint_epochs_total");
            if now != epochs {
                (epochs, since) = (now, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if Instant::now() >= deadline {
            println!("  (not drained after 3 minutes: the next step starts with a backlog)");
        }
    }

    /// Epochs committed and the seconds they took, so far: the whole commit, then each of
    /// `PHASES`.
    fn checkpoints(&self) -> Vec<(f64, f64)> {
        let body = self.daemon.scrape();
        let mut times = vec![(
            sum_of(&body, "weir_checkpoint_duration_seconds_count", ""),
            sum_of(&body, "weir_checkpoint_duration_seconds_sum", ""),
        )];
        for phase in PHASES {
            let label = format!("phase=\"{phase}\"");
            times.push((
                sum_of(&body, "weir_checkpoint_phase_seconds_count", &label),
                sum_of(&body, "weir_checkpoint_phase_seconds_sum", &label),
            ));
        }
        times
    }

    fn step(&mut self, rate: f64, seconds: f64, latency: bool) -> Step {
        self.drain();
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = latency.then(|| {
            let (bootstrap, bots, stop) = (self.bootstrap.clone(), self.bots.clone(), stop.clone());
            std::thread::spawn(move || watch_latency(&bootstrap, &bots, &stop))
        });
        let before = self.produced.load(Ordering::Relaxed);
        let cpu = self.daemon.cpu();
        let checkpoints = self.checkpoints();
        let mut lags = Vec::new();
        let (daemon, produced) = (&self.daemon, &self.produced);
        let took = produce_at(
            &self.bootstrap,
            &self.topic,
            &mut self.load,
            (rate, seconds),
            produced,
            |t| lags.push((t, daemon.lag(produced.load(Ordering::Relaxed)))),
        );
        let produced = self.produced.load(Ordering::Relaxed) - before;
        let lag_end = self.daemon.lag(self.produced.load(Ordering::Relaxed));
        lags.push((took, lag_end));
        // Latency runs: let the last records through before the watcher stops, and count
        // the CPU they take.
        if latency {
            self.drain();
            std::thread::sleep(Duration::from_secs(2));
        }
        let cpu = self.daemon.cpu() - cpu;
        let mean_ms: Vec<f64> = self
            .checkpoints()
            .iter()
            .zip(&checkpoints)
            .map(|((count, spent), (count0, spent0))| {
                (spent - spent0) * 1e3 / (count - count0).max(1.0)
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        let latencies = watcher.map(|w| w.join().unwrap()).unwrap_or_default();
        let step = Step {
            rate,
            produced,
            achieved: produced as f64 / took,
            lags,
            lag_end,
            cpu,
            checkpoint_ms: mean_ms[0],
            phase_ms: mean_ms[1..].to_vec(),
            latencies,
        };
        println!(
            "  {rate:>9.0} events/s for {seconds:.0} s (produced {:.0}/s): lag at the end {lag_end:>8.0}, growing {:.0}/s -> {}",
            step.achieved,
            step.lag_growth(),
            if step.sustainable() {
                "sustained"
            } else {
                "falling behind"
            }
        );
        step
    }

    /// Under load at `rate`, kills the daemon with -9 `kills` times, 5 s apart, starting it
    /// again at once: the time from each kill until the new daemon reads records again.
    fn recoveries(&mut self, rate: f64, kills: usize) -> Vec<Duration> {
        let Bench {
            bootstrap,
            topic,
            config,
            name,
            daemon,
            load,
            produced,
            ..
        } = self;
        let seconds = kills as f64 * 15.0 + 5.0;
        std::thread::scope(|scope| {
            let producer = scope
                .spawn(|| produce_at(bootstrap, topic, load, (rate, seconds), produced, |_| {}));
            let mut times = Vec::new();
            for _ in 0..kills {
                std::thread::sleep(Duration::from_secs(5));
                let struck = Instant::now();
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
                *daemon = Daemon::start(config, name);
                let deadline = Instant::now() + Duration::from_secs(120);
                while daemon.metric("weir_source_records_total") == 0.0 {
                    assert!(
                        Instant::now() < deadline,
                        "no records read 120 s after a restart"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                times.push(struck.elapsed());
                println!(
                    "  kill -9 -> reading again in {:.2} s",
                    struck.elapsed().as_secs_f64()
                );
            }
            producer.join().unwrap();
            times
        })
    }

    /// The highest sustainable rate: doubling from `start`, then three bisections.
    fn sustainable_rate(&mut self, start: f64, seconds: f64) -> f64 {
        let (mut good, mut bad) = (0.0, f64::INFINITY);
        let mut rate = start;
        while bad.is_infinite() {
            if self.step(rate, seconds, false).sustainable() {
                good = rate;
                rate *= 2.0;
            } else {
                bad = rate;
            }
        }
        for _ in 0..3 {
            let middle = (good + bad) / 2.0;
            if self.step(middle, seconds, false).sustainable() {
                good = middle;
            } else {
                bad = middle;
            }
        }
        good
    }
}

fn config(
    bootstrap: &str,
    out: &Path,
    group: &str,
    delivery: &str,
    topic: &str,
    interval: &str,
) -> PathBuf {
    let path = kafka_pipeline_config(bootstrap, out, group, delivery, topic);
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("interval = \"5s\"", &format!("interval = \"{interval}\""));
    if let Some(wait) = fetch_wait() {
        text = text.replace(
            "[source.kafka.consumer_properties]\n",
            &format!("[source.kafka.consumer_properties]\n\"fetch.wait.max.ms\" = \"{wait}\"\n"),
        );
    }
    if std::env::args().any(|a| a == "--full-checkpoints") {
        text = text.replace("[checkpoint]\n", "[checkpoint]\nincremental = false\n");
    }
    let workers: usize = arg("--workers", 0);
    if workers > 0 {
        text.push_str(&format!("\n[runtime]\nworkers = {workers}\n"));
    }
    let batch_timeout: String = arg("--batch-timeout", String::new());
    if !batch_timeout.is_empty() {
        text = text.replace(
            "[source.kafka]\n",
            &format!("[source.kafka]\nbatch_timeout = \"{batch_timeout}\"\n"),
        );
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `--fetch-wait-ms`: librdkafka's `fetch.wait.max.ms` for weir's consumer (weir's default
/// when not given).
fn fetch_wait() -> Option<u64> {
    Some(arg("--fetch-wait-ms", 0)).filter(|w| *w > 0)
}

fn main() {
    let step_seconds: f64 = arg("--step-seconds", 20.0);
    let measure_seconds: f64 = arg("--measure-seconds", 30.0);
    let warmup_seconds: f64 = arg("--warmup-seconds", 5.0);
    let start_rate: f64 = arg("--start-rate", 2_000.0);
    let interval: String = arg("--interval", "1s".to_string());
    xtask::plugins::build_all().unwrap();
    xtask::servers::install_kafka().unwrap();
    let kafka = KafkaCluster::start_for_load(1).unwrap();
    for topic in ["weir.sessions", "weir.features", "weir.late", "weir.dlq"] {
        kafka.create_topic(topic, 2).unwrap();
    }
    let mut report = Vec::new();
    let mut recovery = None;
    let kills: usize = arg("--kills", 5);
    let deliveries: String = arg("--deliveries", "exactly-once,at-least-once".to_string());
    // A known rate skips the search (to compare settings at the same load).
    let known_rate: f64 = arg("--rate", 0.0);
    let out = tempfile::tempdir().unwrap();
    for delivery in deliveries.split(',') {
        let sustainable = if known_rate > 0.0 {
            known_rate
        } else {
            println!("{delivery}: searching for the sustainable rate");
            let mut bench = Bench::fresh(&kafka, delivery, "search", &interval, out.path());
            bench.sustainable_rate(start_rate, step_seconds)
        };
        // Each latency run on a fresh daemon, topic and group: no backlog or state left by
        // the search or the other run.
        for share in [0.5, 0.7] {
            println!(
                "{delivery}: latency at {:.0}% of {sustainable:.0}",
                share * 100.0
            );
            let purpose = format!("latency{:.0}", share * 100.0);
            let mut bench = Bench::fresh(&kafka, delivery, &purpose, &interval, out.path());
            if warmup_seconds > 0.0 {
                println!("  warm-up, not measured:");
                bench.step(sustainable * share, warmup_seconds, false);
            }
            let step = bench.step(sustainable * share, measure_seconds, true);
            report.push((delivery, sustainable, share, step));
        }
        if recovery.is_none() && kills > 0 {
            println!("{delivery}: kill -9 and restart under load at 30% of {sustainable:.0}");
            let mut bench = Bench::fresh(&kafka, delivery, "recovery", &interval, out.path());
            let mut times = bench.recoveries(sustainable * 0.3, kills);
            times.sort();
            recovery = Some((delivery, times));
        }
    }
    println!(
        "\nweir on Apache Kafka {KAFKA_VERSION}, {PARTITIONS} partitions, bot-filter -> ip-geo -> sessionize, \
         checkpoint interval {interval}"
    );
    println!(
        "| delivery | sustainable events/s | load | events/s | latency p50 ms | p99 ms | p99.9 ms | samples | daemon CPU µs/event | mean checkpoint ms | of which {} ms |",
        PHASES.join(" / ")
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (delivery, sustainable, share, step) in &report {
        let phases: Vec<String> = step.phase_ms.iter().map(|ms| format!("{ms:.1}")).collect();
        println!(
            "| {delivery} | {sustainable:.0} | {:.0}% | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {:.0} | {} |",
            share * 100.0,
            step.rate,
            step.percentile(0.5),
            step.percentile(0.99),
            step.percentile(0.999),
            step.latencies.len(),
            step.cpu_per_event_us(),
            step.checkpoint_ms,
            phases.join(" / ")
        );
    }
    if let Some((delivery, times)) = recovery
        && let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last())
    {
        println!(
            "\n{delivery}: kill -9 to reading again p50 {:.2} s, max {:.2} s over {} kills",
            median.as_secs_f64(),
            max.as_secs_f64(),
            times.len()
        );
    }
}
