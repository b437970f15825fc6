//! Tests against a real Apache Kafka (KRaft, started per test on free loopback ports) and
//! librdkafka's mock cluster: what a broker holds after `weir run`, a consumer
//! group of two instances, kill -9 recovery, the dead-letter topic and fault injection.

mod admin;
mod avro;
mod brokers;
mod chaos;
mod completion;
mod crash;
mod delta;
mod end_to_end;
mod faults;
mod group;
mod lakehouse;
mod offsets;
mod protobuf;
mod reload;
mod signals;
mod strict;
mod telemetry;
mod warehouse;
mod zombie;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir::kafka::topic_reader::read_to_end;
use weir::sinks::kafka::headers::to_pairs;
use xtask::servers::KafkaCluster;

use crate::harness::{plugin_dir, root};
pub use crate::harness::{request, wait_for_answer};

/// Partitions of the input topic in these tests.
pub const PARTITIONS: u32 = 4;

/// The output topics of `examples/kafka/pipeline.toml`.
pub const OUTPUT_TOPICS: &[&str] = &[
    "weir.sessions",
    "weir.features",
    "weir.bots",
    "weir.late",
    "weir.dlq",
];

/// An Apache Kafka with the example pipeline's topics.
pub struct Broker {
    kafka: KafkaCluster,
}

impl Broker {
    /// Starts one Apache Kafka node (failing with the install command when it is missing) and
    /// creates the input topic `clicks` and the output topics.
    pub fn start() -> Broker {
        Self::with_nodes(1)
    }

    /// Starts a cluster of `nodes` nodes with the pipeline's topics, replicated on each.
    pub fn with_nodes(nodes: usize) -> Broker {
        let kafka = KafkaCluster::start(nodes).unwrap_or_else(|e| panic!("{e:#}"));
        kafka.create_topic("clicks", PARTITIONS).unwrap();
        for topic in OUTPUT_TOPICS {
            kafka.create_topic(topic, 2).unwrap();
        }
        Broker { kafka }
    }

    /// Creates one more topic.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.kafka.create_topic(topic, partitions).unwrap();
    }

    /// `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.kafka.bootstrap()
    }

    /// The cluster, to kill, freeze and restart its nodes.
    pub fn cluster(&mut self) -> &mut KafkaCluster {
        &mut self.kafka
    }
}

/// Produces NDJSON lines to `topic`, keyed by their `user_id` when they have one.
pub fn produce(bootstrap: &str, topic: &str, lines: &[String]) {
    produce_with_headers(bootstrap, topic, lines, |_| Vec::new());
}

/// Produces NDJSON lines like [`produce`], line `i` with the headers `headers(i)`.
pub fn produce_with_headers(
    bootstrap: &str,
    topic: &str,
    lines: &[String],
    headers: impl Fn(usize) -> Vec<(&'static str, String)>,
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let key = weir::synth::clickstream::user_key(line);
        let mut record = BaseRecord::<String, String>::to(topic).payload(line);
        if let Some(key) = &key {
            record = record.key(key);
        }
        let mut owned = OwnedHeaders::new();
        for (name, value) in headers(i) {
            owned = owned.insert(Header {
                key: name,
                value: Some(&value),
            });
        }
        record = record.headers(owned);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub value: serde_json::Value,
    pub raw: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// `topic/partition/offset` of the source record, from the provenance headers.
    pub fn provenance(&self) -> String {
        format!(
            "{}/{}/{}",
            self.header("weir.source.topic").unwrap_or("?"),
            self.header("weir.source.partition").unwrap_or("?"),
            self.header("weir.source.offset").unwrap_or("?")
        )
    }
}

/// Waits until `committed`'s end of each partition of `topic` (the last stable offset)
/// reaches the end of everything written: a transaction's commit returns before its markers
/// are written, and until then a `read_committed` reader sees the topic end earlier. A
/// transaction left open by a killed instance that no successor fences holds the stable
/// offset back until the broker aborts it (the producer's 60 s transaction timeout, checked
/// every 2 s by the test broker), so the wait allows that and says when it gives up.
fn settle(bootstrap: &str, committed: &BaseConsumer, topic: &str) {
    let everything: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-test-reader")
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = everything.fetch_metadata(Some(topic), timeout).unwrap();
    let deadline = Instant::now() + Duration::from_secs(75);
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, end) = everything
            .fetch_watermarks(topic, partition.id(), timeout)
            .unwrap();
        let stable = || {
            committed
                .fetch_watermarks(topic, partition.id(), timeout)
                .map_or(-1, |(_, stable)| stable)
        };
        while stable() < end {
            if Instant::now() > deadline {
                eprintln!(
                    "{topic}/{}: the last stable offset {} stayed below the end {end}",
                    partition.id(),
                    stable()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every record of `topic` up to its current end (read_committed).
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    settle(bootstrap, &consumer, topic);
    let mut records = Vec::new();
    read_to_end(&consumer, topic, Duration::from_secs(10), |message| {
        let raw = message.payload().unwrap_or_default().to_vec();
        records.push(Record {
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
            raw,
            headers: message
                .headers()
                .map(|h| {
                    to_pairs(h)
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        });
        Ok(())
    })
    .unwrap();
    records
}

/// Writes `examples/kafka/pipeline.toml` pointed at `bootstrap` and `out`, with group
/// `group`, a 1s checkpoint interval, a short session timeout (a killed instance's
/// partitions move on quickly) and no processing-time watermark advance (so results do not
/// depend on timing). Returns the config's path.
pub fn pipeline_config(bootstrap: &str, out: &Path, group: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples/kafka/pipeline.toml"))
        .unwrap()
        .replace("127.0.0.1:9092", bootstrap)
        .replace("group = \"weir-clickstream\"", &format!("group = \"{group}\""))
        .replace("out/kafka", out.to_str().unwrap())
        .replace("idle_timeout = \"30s\"", "idle_timeout = \"1h\"")
        .replace("interval = \"5s\"", "interval = \"1s\"")
        .replace(
            "[source.kafka.consumer_properties]\n",
            "[source.kafka.consumer_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n",
        );
    weir::synth::geodb::write(&out.join("geo.mmdb")).unwrap();
    let path = out.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A generated clickstream (deterministic): `users` users, ~1% malformed lines.
pub fn clickstream(users: usize) -> Vec<String> {
    weir::synth::clickstream::generate(&weir::synth::clickstream::ClickstreamSpec {
        users,
        ..Default::default()
    })
}

/// A `weir run` child process with its log in a file.
pub struct WeirProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl WeirProcess {
    /// Starts `weir run` on `config` as `instance`.
    pub fn start(config: &Path, instance: &str, bounded: bool) -> WeirProcess {
        Self::start_with_env(config, instance, bounded, &[])
    }

    /// Starts `weir run` with extra environment variables.
    pub fn start_with_env(
        config: &Path,
        instance: &str,
        bounded: bool,
        env: &[(&str, &str)],
    ) -> WeirProcess {
        Self::start_with(config, instance, bounded, plugin_dir(), env)
    }

    /// Starts `weir run` with plugins from `plugins` and extra environment variables.
    pub fn start_with(
        config: &Path,
        instance: &str,
        bounded: bool,
        plugins: &Path,
        env: &[(&str, &str)],
    ) -> WeirProcess {
        let log = config.with_file_name(format!(
            "weir-{instance}-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(["run", "--config"])
            .arg(config)
            .arg("--plugin-dir")
            .arg(plugins)
            .args(["--instance-id", instance])
            .env("WEIR_LOG", "info,librdkafka=warn")
            .env("WEIR_ADMIN_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if bounded {
            command.arg("--bounded");
        }
        WeirProcess {
            child: command.spawn().unwrap(),
            log,
        }
    }

    /// Every thread's stack, from `gdb` (for the report of a run that stopped making
    /// progress); says so when `gdb` is not installed.
    pub fn stacks(&self) -> String {
        let pid = self.child.id().to_string();
        match Command::new("gdb")
            .args(["-p", &pid, "-batch", "-ex", "thread apply all bt"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("no stacks: gdb did not run ({e}); apt-get install gdb"),
        }
    }

    /// Where the log is written.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the log satisfies `check` within `within`.
    pub fn log_within(&self, within: Duration, check: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !check(&self.log()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    }

    /// Waits until the log satisfies `check`; panics with the log otherwise.
    pub fn wait_log(&self, what: &str, within: Duration, check: impl Fn(&str) -> bool) {
        assert!(
            self.log_within(within, check),
            "timed out waiting for {what}; log:\n{}",
            self.log()
        );
    }

    /// Waits for the process to exit successfully within `within`.
    pub fn wait_success(self, within: Duration) -> String {
        let (succeeded, log) = self.wait_exit(within);
        assert!(succeeded, "weir failed:\n{log}");
        log
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, signal) };
    }

    /// Sends SIGHUP (reload the config).
    pub fn hangup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate_and_wait(self, within: Duration) -> (bool, String) {
        self.signal(libc::SIGTERM);
        self.wait_exit(within)
    }

    /// Sends SIGTERM (drain and leave the group) and waits for a clean exit.
    pub fn terminate(self, within: Duration) -> String {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.wait_success(within)
    }

    /// Waits for the process to exit, successfully or not; returns whether it succeeded.
    pub fn wait_exit(mut self, within: Duration) -> (bool, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("weir did not exit within {within:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A test that fails midway must not leave its `weir` behind.
impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, polling, or panics with `what`.
pub fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Points `config`'s output topics at their `ref.` twins (created here), so a reference run
/// on the same broker keeps its outputs apart from the run under test.
pub fn use_reference_topics(broker: &Broker, config: &Path) {
    use_output_topics(broker, config, "ref.");
}

/// Points `config`'s output topics (`weir.…`) at `prefix…` twins, created here.
pub fn use_output_topics(broker: &Broker, config: &Path, prefix: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace("\"weir.", &format!("\"{prefix}"))).unwrap();
    for topic in OUTPUT_TOPICS {
        broker.create_topic(&topic.replace("weir.", prefix), 2);
    }
}

/// How often a `read_committed` reader of `topic` sees each session id.
pub fn session_counts(bootstrap: &str, topic: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in read_all(bootstrap, topic) {
        let id = record.value["session_id"].as_str().unwrap().to_string();
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// Waits until `group` has no members. A stopped weir stays a (static) member until its
/// session times out (6 s in these tests), holding its partitions: a bounded run started
/// before that would read only the others.
pub fn wait_for_empty_group(bootstrap: &str, group: &str) {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    wait_for(
        "the group to have no members",
        Duration::from_secs(60),
        || {
            client
                .client()
                .fetch_group_list(Some(group), Duration::from_secs(5))
                .is_ok_and(|list| list.groups().iter().all(|g| g.members().is_empty()))
        },
    );
}

/// The valid events of an input (what the lake, bots and late outputs must hold together).
pub fn valid_events(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v.get("user_id").is_some_and(serde_json::Value::is_string)
                && v.get("ts")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
        })
        .collect()
}

/// Python printing the rows of the lake's tables as sorted JSON lines, so two runs can be
/// compared: events (event_id, session_id), sessions and features.
pub const TABLES: &str = r#"
import json, sys
import duckdb
out = sys.argv[1]
con = duckdb.connect()
con.sql("SET TimeZone = 'UTC'")
def rows(table, cols):
    q = f"select {cols} from read_parquet('{out}/lake/{table}/dt=*/hour=*/*.parquet', hive_partitioning = true) order by all"
    return [list(map(str, r)) for r in con.sql(q).fetchall()]
print(json.dumps({
    "events": rows("events", "event_id, session_id"),
    "sessions": rows("sessions", "user_id, session_id, epoch_ms(start), epoch_ms(\"end\"), duration_ms, event_count, page_views, first_url, last_url"),
    "features": rows("features", "user_id, session_count, last_session_duration_ms, last_session_events, total_events, epoch_ms(updated_at)"),
}))
"#;

/// The lake's tables of a run in `out`, read by DuckDB.
pub fn lake_tables(out: &Path) -> serde_json::Value {
    let script =
        format!("{TABLES}\n",).replace("sys.argv[1]", &format!("{:?}", out.to_str().unwrap()));
    serde_json::from_str(&crate::harness::python(&script)).unwrap()
}
