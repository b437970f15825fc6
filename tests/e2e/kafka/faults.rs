//! Fault injection with librdkafka's mock cluster: request errors, every broker down for a
//! while, and round-trip delay. Processing resumes, the lake ends up exactly as a run without
//! faults, and the outage shows in the metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use weir::config::PipelineConfig;
use weir::kafka::daemon::{self, DaemonOptions, DaemonSummary};

use super::{OUTPUT_TOPICS, clickstream, lake_tables, pipeline_config, produce};
use crate::harness::plugin_dir;

/// The test binary's metrics recorder (installed once; other tests' metrics have other names).
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: std::sync::OnceLock<Snapshotter> = std::sync::OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).unwrap();
        snapshotter
    })
}

/// Counters since the last call, summed over their labels (a snapshot resets them).
fn counters() -> std::collections::BTreeMap<String, u64> {
    let mut sums = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            *sums.entry(key.key().name().to_string()).or_default() += n;
        }
    }
    sums
}

/// Runs the example pipeline on the cluster with `faults` injected from this thread while
/// the daemon runs on another, from when it is ready (its producer made and its partitions
/// restored: on a loaded machine, compiling the plugins can take longer than the faults'
/// first steps); the run ends (bounded) once the faults are over.
fn run(
    bootstrap: &str,
    out: &std::path::Path,
    group: &str,
    faults: impl FnOnce(),
) -> DaemonSummary {
    let path = pipeline_config(bootstrap, out, group);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("interval = \"1s\"", "interval = \"1s\"\ntimeout = \"3s\"");
    std::fs::write(&path, text).unwrap();
    let config = PipelineConfig::load(&path).unwrap();
    let status = weir::admin::Status::new(&config);
    let options = DaemonOptions {
        status: Some(status.clone()),
        ..DaemonOptions::new(group)
    };
    std::thread::scope(|scope| {
        let daemon = scope.spawn(|| daemon::run(&config, plugin_dir(), &options));
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !status.ready() {
            assert!(
                std::time::Instant::now() < deadline && !daemon.is_finished(),
                "the daemon never became ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        faults();
        options.bounded.store(true, Ordering::Relaxed);
        daemon.join().unwrap().unwrap()
    })
}

#[test]
fn broker_outages_request_errors_and_delay_lose_and_duplicate_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("weir=info")
        .with_test_writer()
        .try_init();
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("clicks", 4, 3).unwrap();
    for topic in OUTPUT_TOPICS {
        cluster.create_topic(topic, 2, 3).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let lines = clickstream(150);
    let (first, rest) = lines.split_at(lines.len() / 3);
    produce(&bootstrap, "clicks", first);
    snapshotter();
    counters();

    // The rest arrives while the faults are injected, so epochs commit through them.
    let out = tempfile::tempdir().unwrap();
    let summary = run(&bootstrap, out.path(), "faulty", || {
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for chunk in rest.chunks(rest.len() / 40 + 1) {
                    produce(&bootstrap, "clicks", chunk);
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
            std::thread::sleep(Duration::from_millis(1500));
            let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR; 3];
            for api in [
                RDKafkaApiKey::EndTxn,
                RDKafkaApiKey::TxnOffsetCommit,
                RDKafkaApiKey::Fetch,
            ] {
                cluster.request_errors(api, &errors);
            }
            let produce_errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5];
            cluster.request_errors(RDKafkaApiKey::Produce, &produce_errors);
            std::thread::sleep(Duration::from_millis(1500));
            // A non-retriable error at the commit point: the epoch aborts and rewinds.
            cluster.request_errors(
                RDKafkaApiKey::TxnOffsetCommit,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
            );
            std::thread::sleep(Duration::from_millis(2500));
            for broker in 1..=3 {
                cluster.broker_down(broker).unwrap();
            }
            std::thread::sleep(Duration::from_secs(6));
            for broker in 1..=3 {
                cluster.broker_up(broker).unwrap();
                cluster
                    .broker_round_trip_time(broker, Duration::from_millis(150))
                    .unwrap();
            }
            std::thread::sleep(Duration::from_secs(3));
            for broker in 1..=3 {
                cluster
                    .broker_round_trip_time(broker, Duration::ZERO)
                    .unwrap();
            }
        });
    });
    let counted = counters();

    // A run without faults over the same input gives the same lake.
    let reference = tempfile::tempdir().unwrap();
    run(&bootstrap, reference.path(), "reference", || {});

    let expected = lake_tables(reference.path());
    let actual = lake_tables(out.path());
    assert!(!expected["events"].as_array().unwrap().is_empty());
    assert_eq!(actual["events"], expected["events"], "lake events differ");
    assert_eq!(actual["sessions"], expected["sessions"]);
    assert_eq!(actual["features"], expected["features"]);

    // The outage is visible: client errors were counted, and every failed epoch recovered.
    let count = |name: &str| counted.get(name).copied().unwrap_or(0);
    assert!(
        count("weir_kafka_client_errors_total") > 0,
        "the outage was not counted: {counted:?}"
    );
    assert_eq!(
        count("weir_checkpoint_failures_total"),
        summary.checkpoints.failed
    );
    assert!(
        summary.checkpoints.failed >= 1,
        "the injected commit error failed no epoch"
    );
    assert!(summary.checkpoints.recoveries >= summary.checkpoints.failed);
    eprintln!("checkpoints under faults: {:?}", summary.checkpoints);
}
