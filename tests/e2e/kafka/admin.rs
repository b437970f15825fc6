//! The admin endpoint of a running `weir run` on Kafka: liveness at once, readiness only
//! after the partitions are assigned and restored, Prometheus metrics with real histograms,
//! the loaded plugins with their hashes, and the pipeline with its breakers.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{
    Broker, WeirProcess, clickstream, pipeline_config, produce, request, wait_for, wait_for_answer,
};
use crate::harness::python;

#[test]
fn admin_endpoint_reports_health_readiness_metrics_plugins_and_pipeline() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "clicks", &clickstream(30));
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "admin");
    // Files roll (and are published at the next epoch) within the test.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("roll_interval = \"5m\"", "roll_interval = \"2s\""),
    )
    .unwrap();
    let port = xtask::servers::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let process =
        WeirProcess::start_with_env(&config, "admin", false, &[("WEIR_ADMIN_LISTEN", &listen)]);

    let health: serde_json::Value =
        serde_json::from_str(&wait_for_answer(port, "/healthz", |code, _| code == 200)).unwrap();
    assert_eq!(health["status"], "ok");
    // Clients that connect and send nothing do not hold up a probe: connections are served
    // concurrently (one at a time, each idle one would hold the next probe for its timeout).
    let idle: Vec<_> = (0..3)
        .map(|_| {
            let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
            idle.write_all(b"GET /metr").unwrap();
            idle
        })
        .collect();
    let asked = Instant::now();
    let (code, _) = request(port, "GET", "/healthz").expect("a probe beside idle clients");
    assert_eq!(code, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the probe waited {:?} behind idle clients",
        asked.elapsed()
    );
    drop(idle);
    wait_for_answer(port, "/readyz", |code, _| code == 200);
    assert!(
        process.log().contains("Partitions assigned"),
        "ready before the partitions were assigned:\n{}",
        process.log()
    );
    // The consumer's settings stay with the consumer.
    assert!(
        !process.log().contains("will be ignored by this producer"),
        "{}",
        process.log()
    );

    // A histogram with explicit buckets (a summary would have quantiles instead).
    let metrics = wait_for_answer(port, "/metrics", |_, body| {
        body.contains("weir_checkpoint_duration_seconds_bucket{le=\"0.005\"}")
    });
    assert!(metrics.contains("# TYPE weir_checkpoint_duration_seconds histogram"));
    // Where an epoch's time went, phase by phase.
    for phase in ["prepare", "commit", "markers", "publish"] {
        let series = format!("weir_checkpoint_phase_seconds_count{{phase=\"{phase}\"}}");
        assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }
    assert!(metrics.contains("weir_checkpoint_epochs_total"));
    assert!(metrics.contains("weir_sink_breaker_state{sink=\"lake\"} 0"));
    let metrics = wait_for_answer(port, "/metrics", |_, body| {
        body.contains("weir_source_watermark_lag_seconds")
    });
    for name in [
        "weir_source_records_total",
        "weir_sink_records_total{sink=\"lake\",route=\"main\"}",
        "weir_stage_batch_duration_seconds_bucket{stage=\"bot-filter\"",
        "weir_dead_letters_total{stage=\"decode\",reason=\"decode\"",
        "weir_state_keys{",
        "weir_state_snapshot_bytes{",
        "weir_checkpoint_epochs_total",
        "weir_checkpoint_last_commit_timestamp_seconds",
        "weir_build_info{version=",
        "weir_sink_event_latency_seconds_bucket{sink=\"lake\",le=\"3600\"}",
        "weir_source_info{kind=\"kafka\",group=\"admin\"} 1",
        "weir_stage_state_limit_bytes{stage=\"sessionize\"}",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    // Names follow `weir_<subsystem>_<what>_<unit>`: counters end in `_total`, histograms in
    // their unit.
    // Plugin-defined metrics (`weir_plugin_*`) carry the plugin's own names as labels.
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("# TYPE weir_") && !l.starts_with("# TYPE weir_plugin_"))
    {
        let mut words = line.split_whitespace().skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert!(
            name.matches('_').count() >= 2,
            "{name} lacks a subsystem or unit"
        );
        match kind {
            "counter" => assert!(name.ends_with("_total"), "counter {name}"),
            "histogram" => assert!(name.ends_with("_seconds"), "histogram {name}"),
            _ => {}
        }
    }

    let plugins: serde_json::Value =
        serde_json::from_str(&wait_for_answer(port, "/plugins", |code, _| code == 200)).unwrap();
    let names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bot-filter", "ip-geo", "sessionize"]);
    assert!(plugins.as_array().unwrap().iter().all(|p| {
        p["sha256"].as_str().is_some_and(|h| h.len() == 64)
            && p["loaded_at"].is_string()
            && p["calls"].as_u64().is_some()
            && p["errors"] == 0
            && p["traps"] == 0
            && p["last_rejection"].is_null()
    }));

    let pipeline: serde_json::Value =
        serde_json::from_str(&wait_for_answer(port, "/pipeline", |code, body| {
            code == 200 && body.contains("\"breaker\":\"closed\"")
        }))
        .unwrap();
    assert_eq!(pipeline["source"]["type"], "kafka");
    assert_eq!(pipeline["stages"].as_array().unwrap().len(), 3);
    let lake = pipeline["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "lake")
        .unwrap();
    assert_eq!(lake["type"], "parquet");
    assert_eq!(lake["breaker"], "closed");

    // Lake freshness: each partition's newest published event time; the newest of them is
    // the newest event in the lake, as DuckDB reads it.
    let freshness = || -> Option<f64> {
        let (_, metrics) = request(port, "GET", "/metrics")?;
        metrics
            .lines()
            .filter(|l| l.starts_with("weir_sink_lake_event_time_seconds{topic=\"clicks\""))
            .filter(|l| l.contains("sink=\"lake\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .reduce(f64::max)
    };
    let newest_in_lake = || -> Option<f64> {
        let glob = out.path().join("lake/events/dt=*/hour=*/*.parquet");
        let script = format!(
            "import duckdb\ntry:\n    print(duckdb.sql(\"select max(epoch_ms(ts)) from read_parquet('{}')\").fetchone()[0])\nexcept duckdb.IOException:\n    print('none')",
            glob.display()
        );
        python(&script)
            .trim()
            .parse::<f64>()
            .ok()
            .map(|ms| ms / 1000.0)
    };
    wait_for(
        "lake freshness to match the lake",
        Duration::from_secs(60),
        || {
            let before = freshness();
            let lake = newest_in_lake();
            before.is_some() && before == freshness() && before == lake
        },
    );

    assert_eq!(request(port, "GET", "/nothing").unwrap().0, 404);
    assert_eq!(request(port, "POST", "/metrics").unwrap().0, 405);
    process.terminate(Duration::from_secs(60));
}

#[test]
fn a_wedged_driver_fails_healthz_while_the_endpoint_still_answers() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "clicks", &clickstream(30));
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "wedged");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[admin]\nstall_timeout = \"2s\"\n");
    std::fs::write(&config, text).unwrap();
    let port = xtask::servers::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    // The driver's 80th turn hangs, as a thread stuck in a call that never returns would.
    let process = WeirProcess::start_with_env(
        &config,
        "wedged",
        false,
        &[
            ("WEIR_ADMIN_LISTEN", &listen),
            ("WEIR_FAILPOINT", "poll:80@hang"),
        ],
    );
    wait_for_answer(port, "/readyz", |code, _| code == 200);
    let (code, body) = request(port, "GET", "/healthz").unwrap();
    assert!(
        code == 200 || process.log().contains("failpoint poll reached"),
        "unhealthy before the driver hung: {body}\n{}",
        process.log()
    );
    let health: serde_json::Value =
        serde_json::from_str(&wait_for_answer(port, "/healthz", |code, _| code == 503)).unwrap();
    assert!(
        process.log().contains("failpoint poll reached"),
        "{}",
        process.log()
    );
    assert_eq!(health["status"], "stalled", "{health}");
    let stalled = &health["stalled"][0];
    assert_eq!(stalled["thread"], "kafka driver", "{health}");
    assert!(stalled["seconds"].as_f64().unwrap() > 2.0, "{health}");
    // The rest of the endpoint still answers: only liveness says the process must go.
    assert_eq!(request(port, "GET", "/readyz").unwrap().0, 200);
    assert!(
        request(port, "GET", "/metrics")
            .unwrap()
            .1
            .contains("weir_source_records_total")
    );
    process.kill();
}

#[test]
fn validate_checks_connections_to_the_brokers_their_topics_and_the_stores() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "clicks", &clickstream(2));
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "validate");
    let validate = |config: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["validate", "--check-connections", config.to_str().unwrap()])
            .args([
                "--plugin-dir",
                crate::harness::plugin_dir().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, message) = validate(&config);
    assert!(ok, "{message}");
    assert!(
        message.contains(&format!("reachable: Kafka at {bootstrap}")),
        "{message}"
    );
    assert!(message.contains("reachable: checkpoint store"), "{message}");
    assert!(message.contains("reachable: sinks.lake"), "{message}");

    let text = std::fs::read_to_string(&config).unwrap();
    let missing_topic = out.path().join("missing-topic.toml");
    std::fs::write(
        &missing_topic,
        text.replacen("topics = [\"clicks\"]", "topics = [\"no-such-topic\"]", 1),
    )
    .unwrap();
    let (ok, message) = validate(&missing_topic);
    assert!(!ok, "{message}");
    assert!(
        message.contains("source.kafka.topics") && message.contains("no-such-topic"),
        "{message}"
    );
    let no_broker = out.path().join("no-broker.toml");
    let port = xtask::servers::free_port().unwrap();
    std::fs::write(
        &no_broker,
        text.replace(&bootstrap, &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let (ok, message) = validate(&no_broker);
    assert!(!ok && message.contains("no answer"), "{message}");
}
