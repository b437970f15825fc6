//! End-to-end throughput through Apache Kafka (one node on loopback): raw rdkafka consumption of
//! a topic against `weir run --bounded` on the same topic in the same run, for exactly-once
//! and at-least-once delivery, with the daemon's CPU microseconds per event (getrusage).
//!
//! `cargo bench -p weir --bench kafka -- --events 100000`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use xtask::servers::{KAFKA_VERSION, KafkaCluster};

const PARTITIONS: u32 = 4;

mod common;

use common::{arg, kafka_pipeline_config};

fn produce(bootstrap: &str, lines: &[String]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for line in lines {
        let key = weir::synth::clickstream::user_key(line).unwrap_or_default();
        let mut record = BaseRecord::to("clicks").payload(line).key(&key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// Reads the whole topic with a plain consumer; returns records per second.
fn raw_consume(bootstrap: &str, expected: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-raw")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        assignment
            .add_partition_offset("clicks", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let started = Instant::now();
    let mut bytes = 0usize;
    let mut count = 0;
    while count < expected {
        if let Some(message) = consumer.poll(Duration::from_secs(10)) {
            let message = message.unwrap();
            bytes += rdkafka::Message::payload(&message).map_or(0, <[u8]>::len);
            count += 1;
        } else {
            panic!("raw consumer stalled at {count} of {expected}");
        }
    }
    std::hint::black_box(bytes);
    count as f64 / started.elapsed().as_secs_f64()
}

fn children_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Seconds between two log lines' timestamps (RFC 3339 at the start of each line).
fn log_span(log: &str, from: &str, to: &str) -> f64 {
    let time = |needle: &str| {
        let line = log
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"));
        let stamp = line.split_whitespace().next().unwrap();
        chrono::DateTime::parse_from_rfc3339(stamp).unwrap()
    };
    (time(to) - time(from)).as_seconds_f64()
}

/// Runs `weir run --bounded` on `topic`; returns (records/s while consuming, CPU seconds of
/// the whole process).
fn weir_run(
    bootstrap: &str,
    out: &Path,
    group: &str,
    delivery: &str,
    topic: &str,
    events: usize,
) -> (f64, f64) {
    let path = kafka_pipeline_config(bootstrap, out, group, delivery, topic);
    let cpu_before = children_cpu();
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--bounded", "--instance-id", group, "--config"])
        .arg(&path)
        .arg("--plugin-dir")
        .arg(xtask::plugins::output_dir())
        .env("WEIR_LOG", "info,librdkafka=error")
        .env("WEIR_ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let cpu = children_cpu() - cpu_before;
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "weir failed:\n{log}");
    let seconds = log_span(&log, "Partitions assigned", "Input consumed to its end");
    (events as f64 / seconds.max(1e-9), cpu.as_secs_f64())
}

fn main() {
    let events: usize = arg("--events", 100_000);
    xtask::plugins::build_all().unwrap();
    xtask::servers::install_kafka().unwrap();
    let kafka = KafkaCluster::start_for_load(1).unwrap();
    kafka.create_topic("clicks", PARTITIONS).unwrap();
    kafka.create_topic("empty", PARTITIONS).unwrap();
    for topic in [
        "weir.sessions",
        "weir.features",
        "weir.bots",
        "weir.late",
        "weir.dlq",
    ] {
        kafka.create_topic(topic, 2).unwrap();
    }
    let bootstrap = kafka.bootstrap();
    let mut lines =
        weir::synth::clickstream::generate(&weir::synth::clickstream::ClickstreamSpec {
            users: events / 30 + 10,
            ..Default::default()
        });
    lines.truncate(events);
    let events = lines.len();
    produce(&bootstrap, &lines);

    let raw = raw_consume(&bootstrap, events);
    // Start-up and shutdown alone (plugin compilation, group join, final commit): the same run
    // on an empty topic.
    let idle = tempfile::tempdir().unwrap();
    let (_, startup_cpu) = weir_run(&bootstrap, idle.path(), "idle", "exactly-once", "empty", 0);
    let mut results = BTreeMap::new();
    for delivery in ["exactly-once", "at-least-once"] {
        let out = tempfile::tempdir().unwrap();
        let run = weir_run(&bootstrap, out.path(), delivery, delivery, "clicks", events);
        results.insert(delivery, run);
    }
    println!(
        "events: {events} through Apache Kafka {KAFKA_VERSION}, {PARTITIONS} partitions, bot-filter -> ip-geo -> sessionize"
    );
    println!("raw rdkafka consumer:        {raw:>10.0} records/s");
    println!("weir start-up and shutdown alone: {startup_cpu:.2} CPU s");
    for (delivery, (rate, cpu)) in &results {
        let per_event = |seconds: f64| seconds * 1e6 / events as f64;
        println!(
            "weir {delivery:<14}           {rate:>10.0} records/s  ({:.2}x raw)  {:.2} CPU us/event ({:.2} without start-up)",
            rate / raw,
            per_event(*cpu),
            per_event(cpu - startup_cpu)
        );
    }
}
