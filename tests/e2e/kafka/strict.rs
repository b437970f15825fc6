//! Strict exactly-once on Apache Kafka: one input goes through runs that abort (as kill -9)
//! in every phase of an epoch's commit, a run stopped by SIGTERM mid-stream and runs killed
//! at random moments, then a run to the end. A `read_committed` consumer of every output
//! topic (sessions, features, bots, late events, dead letters) then sees each output exactly
//! once, and the topics, the lake on S3 and the Redis features equal an uninterrupted run's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use xtask::servers::{RedisServer, S3Server};

use super::crash::crash_then_finish;
use super::lakehouse::{
    FAILPOINTS, die_at_each_commit_phase, features, lakehouse_config, slices_for_failpoints,
};
use super::{
    Broker, OUTPUT_TOPICS, Record, WeirProcess, clickstream, lake_tables, produce, read_all,
};

/// The lakehouse config of `run`, its output topics renamed `<topic>-<run>` so two runs on
/// one broker keep their outputs apart.
fn config(broker: &Broker, out: &Path, run: &str, s3: &S3Server, redis: &RedisServer) -> PathBuf {
    let path = lakehouse_config(&broker.bootstrap(), out, run, s3, redis);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for topic in OUTPUT_TOPICS {
        broker.create_topic(&format!("{topic}-{run}"), 2);
        text = text.replace(&format!("\"{topic}\""), &format!("\"{topic}-{run}\""));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// What identifies one output of a topic: the session, the user's n-th features, the event,
/// or for a dead letter the record it came from.
fn identity(topic: &str, record: &Record) -> String {
    let field = |name: &str| record.value[name].to_string();
    match topic {
        "weir.sessions" => field("session_id"),
        "weir.features" => format!("{}#{}", field("user_id"), field("session_count")),
        "weir.bots" | "weir.late" => field("event_id"),
        _ => record.provenance(),
    }
}

/// Every output of `run` by topic, each identity with how often a `read_committed` consumer
/// saw it.
fn outputs(bootstrap: &str, run: &str) -> BTreeMap<&'static str, BTreeMap<String, usize>> {
    OUTPUT_TOPICS
        .iter()
        .map(|topic| {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for record in read_all(bootstrap, &format!("{topic}-{run}")) {
                *seen.entry(identity(topic, &record)).or_default() += 1;
            }
            (*topic, seen)
        })
        .collect()
}

#[test]
fn read_committed_consumers_see_each_output_once_after_crashes_in_every_phase() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let servers = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    s3.create_bucket("weir").unwrap();
    let redis = RedisServer::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let lines = clickstream(600);
    let slices = slices_for_failpoints(&lines);

    let out = tempfile::tempdir().unwrap();
    let faulty = config(&broker, out.path(), "faulty", &s3, &redis);
    die_at_each_commit_phase(&bootstrap, &faulty, "faulty", &FAILPOINTS, &slices);

    // SIGTERM while records arrive: the run drains, commits and leaves the group.
    let process = WeirProcess::start(&faulty, "faulty", false);
    process.wait_log(
        "partitions to be assigned",
        Duration::from_secs(90),
        |log| log.contains("Partitions assigned"),
    );
    produce(&bootstrap, "clicks", slices[FAILPOINTS.len()]);
    std::thread::sleep(Duration::from_millis(1500));
    process.terminate(Duration::from_secs(120));

    produce(&bootstrap, "clicks", slices[FAILPOINTS.len() + 1]);
    crash_then_finish(&faulty, "faulty", 2);

    let reference_out = tempfile::tempdir().unwrap();
    let reference = config(&broker, reference_out.path(), "reference", &s3, &redis);
    WeirProcess::start(&reference, "reference", true).wait_success(Duration::from_secs(300));

    let expected = outputs(&bootstrap, "reference");
    let actual = outputs(&bootstrap, "faulty");
    for (topic, seen) in &actual {
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{topic}: outputs seen more than once: {twice:?}"
        );
        let keys =
            |outputs: &BTreeMap<String, usize>| outputs.keys().cloned().collect::<BTreeSet<_>>();
        assert_eq!(
            keys(seen),
            keys(&expected[topic]),
            "{topic} differs from the reference"
        );
    }
    for topic in ["weir.sessions", "weir.features", "weir.bots", "weir.dlq"] {
        assert!(
            !actual[topic].is_empty(),
            "{topic} is empty: the input should reach it"
        );
    }

    let lake = lake_tables(&s3.data_dir().join("weir").join("faulty"));
    let reference_lake = lake_tables(&s3.data_dir().join("weir").join("reference"));
    for table in ["events", "sessions", "features"] {
        assert_eq!(lake[table], reference_lake[table], "lake {table} differ");
    }
    let lake_sessions: BTreeSet<String> = lake["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| serde_json::Value::from(row[1].as_str().unwrap()).to_string())
        .collect();
    assert_eq!(
        lake_sessions,
        actual["weir.sessions"].keys().cloned().collect(),
        "the sessions topic and the lake's sessions differ"
    );
    assert_eq!(
        features(&redis, "faulty"),
        features(&redis, "reference"),
        "Redis features differ"
    );
}
