//! The Kafka pipeline with its lake and checkpoints on S3 (s3s-fs) and its features in Redis.
//! One input goes through five runs that each die by abort (as kill -9) at a different phase
//! of the commit, then a run during which S3 and then Redis are stopped and started again,
//! then a run to the end. The lake, read by DuckDB straight from the s3s-fs data folder, and
//! the Redis hashes must equal those of an uninterrupted run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use xtask::servers::{RedisServer, S3Server};

use super::{Broker, WeirProcess, clickstream, lake_tables, pipeline_config, produce};
use crate::sinks::{redis_hashes, s3_options};

/// `examples/kafka/pipeline.toml` with its lake tables and checkpoints under
/// `s3://weir/<run>/`, files rolling every 3s (so they span epochs and roll mid-run), and a
/// Redis feature sink writing `<run>:user:<id>`.
pub(super) fn lakehouse_config(
    bootstrap: &str,
    out: &Path,
    run: &str,
    s3: &S3Server,
    redis: &RedisServer,
) -> PathBuf {
    let path = pipeline_config(bootstrap, out, run);
    let out = out.to_str().unwrap();
    let s3_table = s3_settings(s3);
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            &format!("path = \"{out}/lake/"),
            &format!("path = \"s3://weir/{run}/lake/"),
        )
        .replace("roll_interval = \"5m\"", "roll_interval = \"3s\"")
        .replace(
            &format!("store = \"{out}/checkpoints\""),
            &format!("store = \"s3://weir/{run}/checkpoints\""),
        );
    for table in [
        "sinks.lake",
        "sinks.sessions",
        "sinks.features",
        "checkpoint",
    ] {
        text.push_str(&format!("\n[{table}.s3]\n{s3_table}"));
    }
    text.push_str(&format!(
        "\n[sinks.redis]\ntype = \"redis\"\nroutes = [\"features\"]\nurl = {:?}\n\
         prefix = \"{run}:user\"\nttl = \"30d\"\n\
         [sinks.redis.fields]\nsessions = \"session_count\"\nevents = \"total_events\"\n\
         last_session_ms = \"last_session_duration_ms\"\nupdated_at = \"updated_at\"\n",
        redis.url()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// The body of a `[….s3]` table that reaches `s3`.
pub(super) fn s3_settings(s3: &S3Server) -> String {
    let options = s3_options(s3);
    format!(
        "endpoint = {:?}\nallow_http = true\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
        options.endpoint.unwrap(),
        options.access_key_id.unwrap(),
        options.secret_access_key.unwrap()
    )
}

/// The features of a run by user, read from Redis.
pub(super) fn features(
    redis: &RedisServer,
    run: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    redis_hashes(&redis.url(), &format!("{run}:user:*"))
        .into_iter()
        .map(|(key, fields)| (key.rsplit(':').next().unwrap().to_string(), fields))
        .collect()
}

/// Files left in the staging folders of a run's tables.
pub(super) fn staged(s3: &S3Server, run: &str) -> Vec<PathBuf> {
    let mut left = Vec::new();
    let mut dirs = vec![s3.data_dir().join("weir").join(run).join("lake")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.to_string_lossy().contains("/_staging/") {
                left.push(path);
            }
        }
    }
    left
}

/// A failure point in every phase of an epoch's commit, each armed at a later hit than the
/// recovery of the run before could reach it.
pub(super) const FAILPOINTS: [&str; 5] = [
    "part-staged:3",
    "checkpoint-written:2",
    "committed:2",
    "file-published:1",
    "features-written:2",
];

/// The input cut into one slice per failure point and two more.
pub(super) fn slices_for_failpoints(lines: &[String]) -> Vec<&[String]> {
    lines
        .chunks(lines.len() / (FAILPOINTS.len() + 2) + 1)
        .collect()
}

/// Runs `weir run` once per failure point, feeding it that point's slice over several
/// epochs (so files are made of several parts) until it aborts there, as kill -9 would.
/// Returns the runs' logs.
pub(super) fn die_at_each_commit_phase(
    bootstrap: &str,
    config: &Path,
    instance: &str,
    failpoints: &[&str],
    slices: &[&[String]],
) -> Vec<String> {
    let mut logs = Vec::new();
    for (failpoint, slice) in failpoints.iter().zip(slices) {
        let process =
            WeirProcess::start_with_env(config, instance, false, &[("WEIR_FAILPOINT", failpoint)]);
        // A redo of the last commit during recovery may reach the failpoint first.
        process.wait_log(
            "partitions to be assigned",
            Duration::from_secs(90),
            |log| log.contains("Partitions assigned") || log.contains("failpoint"),
        );
        for chunk in slice.chunks(slice.len() / 3 + 1) {
            produce(bootstrap, "clicks", chunk);
            std::thread::sleep(Duration::from_millis(700));
        }
        let (succeeded, log) = process.wait_exit(Duration::from_secs(60));
        let name = failpoint.split(':').next().unwrap();
        assert!(
            !succeeded && log.contains(&format!("failpoint {name} reached")),
            "the run did not die at {failpoint}:\n{log}"
        );
        logs.push(log);
    }
    logs
}

#[test]
fn lake_on_s3_and_features_in_redis_survive_crashes_in_every_phase_and_outages() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let servers = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    s3.create_bucket("weir").unwrap();
    let mut redis = RedisServer::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let lines = clickstream(400);
    let slices = slices_for_failpoints(&lines);
    let out = tempfile::tempdir().unwrap();
    let config = lakehouse_config(&bootstrap, out.path(), "faulty", &s3, &redis);
    let mut logs = die_at_each_commit_phase(&bootstrap, &config, "faulty", &FAILPOINTS, &slices);

    // Redis is down as the next run starts, which must redo the Redis writes of the run that
    // died at `features-written`: its client keeps trying its first connection (fred's
    // `fail_fast` would give up for good), and the run recovers once Redis is back.
    redis.stop();
    let process = WeirProcess::start(&config, "faulty", false);
    process.wait_log(
        "a restore failing without Redis",
        Duration::from_secs(90),
        |log| log.contains("Restoring assigned partitions failed"),
    );
    redis.resume().unwrap();
    process.wait_log(
        "recovery once Redis is back",
        Duration::from_secs(90),
        |log| log.contains("Recovered from the last committed checkpoint"),
    );

    // Both servers go down and come back while the input keeps arriving.
    std::thread::sleep(Duration::from_secs(2));
    s3.stop();
    produce(&bootstrap, "clicks", slices[FAILPOINTS.len()]);
    std::thread::sleep(Duration::from_secs(4));
    s3.resume().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    redis.stop();
    produce(&bootstrap, "clicks", slices[FAILPOINTS.len() + 1]);
    std::thread::sleep(Duration::from_secs(6));
    redis.resume().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let log = process.terminate(Duration::from_secs(120));
    assert!(
        log.contains("Sink circuit breaker open"),
        "the Redis outage did not open the breaker:\n{log}"
    );
    logs.push(log);
    logs.push(WeirProcess::start(&config, "faulty", true).wait_success(Duration::from_secs(300)));
    // Incremental checkpoints: some restore rebuilt its state from a full snapshot plus
    // changes (the lake, sessions and features below equal the reference's).
    let longest_chain = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter(|line| line.contains("Partition restored"))
        .filter_map(|line| {
            line.split("chain=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max();
    assert!(
        longest_chain.is_some_and(|n| n >= 2),
        "no restore read a chain of changes (longest: {longest_chain:?})"
    );

    let reference = tempfile::tempdir().unwrap();
    let reference_config = lakehouse_config(&bootstrap, reference.path(), "reference", &s3, &redis);
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));

    let expected = lake_tables(&s3.data_dir().join("weir").join("reference"));
    let actual = lake_tables(&s3.data_dir().join("weir").join("faulty"));
    assert!(!expected["events"].as_array().unwrap().is_empty());
    assert_eq!(actual["events"], expected["events"], "lake events differ");
    assert_eq!(actual["sessions"], expected["sessions"], "sessions differ");
    assert_eq!(actual["features"], expected["features"], "features differ");
    assert!(
        staged(&s3, "faulty").is_empty(),
        "parts left staged: {:?}",
        staged(&s3, "faulty")
    );

    let expected = features(&redis, "reference");
    let actual = features(&redis, "faulty");
    assert_eq!(
        expected.len(),
        lake_tables(&s3.data_dir().join("weir").join("reference"))["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[0].as_str().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        "one hash per user with features"
    );
    assert_eq!(actual, expected, "Redis features differ");
    assert!(
        actual
            .values()
            .all(|f| f["(ttl)"] == "set" && f.contains_key("sessions")),
        "every hash has its mapped fields and a TTL"
    );
}
