//! OpenTelemetry over OTLP against a receiver built from the official protobuf definitions:
//! spans per batch (linked to the producers' traces), stage call, sink write and epoch commit;
//! the `traceparent` carried to the Kafka outputs; metrics with the `/metrics` names.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{Broker, WeirProcess, clickstream, pipeline_config, produce_with_headers, read_all};
use crate::harness::root;

/// The OTLP receiver, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    /// Starts `tests/e2e/otlp_receiver.py` in the test venv, writing what it gets to `out`.
    fn start(out: &Path) -> Receiver {
        let python = xtask::python::venv_python().unwrap_or_else(|e| {
            panic!(
                "the test venv ({}) is unavailable: {e:#}",
                xtask::python::PACKAGES.join(", ")
            )
        });
        let mut child = Command::new(python)
            .arg(root().join("tests/e2e/otlp_receiver.py"))
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the OTLP receiver did not start: {line:?}"));
        Receiver { child, port }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `traceparent` of line `i`: 25 producer spans, each of its own trace, take turns.
fn traceparent(i: usize) -> String {
    let n = i % 25 + 1;
    format!("00-{n:032x}-{n:016x}-01")
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_string()
}

#[test]
fn spans_and_metrics_reach_an_otlp_receiver_and_traces_go_on_to_the_outputs() {
    let out = tempfile::tempdir().unwrap();
    let exported = out.path().join("otlp.jsonl");
    let receiver = Receiver::start(&exported);
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let lines = clickstream(40);
    produce_with_headers(&bootstrap, "clicks", &lines, |i| {
        vec![("traceparent", traceparent(i))]
    });
    let config = pipeline_config(&bootstrap, out.path(), "otel");
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str(&format!(
        "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\nmetrics = true\nmetrics_interval = \"200ms\"\n",
        receiver.port
    ));
    std::fs::write(&config, text_config).unwrap();
    // Per-partition gauges leave when their partition is released, which a bounded run does
    // before its last export: exports every 200 ms catch them while the partitions are owned
    // (every 1 s missed them once on a loaded machine).
    WeirProcess::start(&config, "otel-1", true).wait_success(Duration::from_secs(180));
    drop(receiver);

    // Each output derived from a record carries the record's traceparent.
    let by_event: BTreeMap<String, String> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let value: Value = serde_json::from_str(line).ok()?;
            Some((text(&value, "event_id"), traceparent(i)))
        })
        .collect();
    let bots = read_all(&bootstrap, "weir.bots");
    assert!(!bots.is_empty(), "the clickstream has bots");
    for record in &bots {
        let event = text(&record.value, "event_id");
        assert_eq!(
            record.header("traceparent"),
            by_event.get(&event).map(String::as_str),
            "{event}"
        );
    }
    let sessions = read_all(&bootstrap, "weir.sessions");
    assert!(!sessions.is_empty());
    let produced: BTreeSet<String> = (0..25).map(traceparent).collect();
    for record in &sessions {
        let parent = record
            .header("traceparent")
            .expect("a session carries a trace");
        assert!(produced.contains(parent), "{parent}");
    }
    // Dead letters keep every header of the original record.
    let dead = read_all(&bootstrap, "weir.dlq");
    assert!(!dead.is_empty());
    assert!(dead.iter().all(|r| r.header("traceparent").is_some()));

    let exported: Vec<Value> = std::fs::read_to_string(&exported)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let spans: Vec<&Value> = exported.iter().filter(|e| e["signal"] == "span").collect();
    let named = |name: &str| -> Vec<&Value> {
        spans
            .iter()
            .copied()
            .filter(|s| s["name"] == name)
            .collect()
    };
    for span in &spans {
        assert_eq!(span["resource"]["service.name"], "weir");
        assert_eq!(span["resource"]["service.instance.id"], "otel-1");
        assert_ne!(span["status"], 2, "no span failed: {span}");
    }

    // Batches: roots, linked to every producer span, and counting every record.
    let batches = named("batch");
    assert!(
        !batches.is_empty(),
        "no batch span in {} spans",
        spans.len()
    );
    let mut linked = BTreeSet::new();
    let mut counted = 0;
    for batch in &batches {
        assert_eq!(batch["parent_span_id"], "");
        assert_eq!(batch["attributes"]["messaging.destination.name"], "clicks");
        counted += batch["attributes"]["messaging.batch.message_count"]
            .as_i64()
            .unwrap();
        for link in batch["links"].as_array().unwrap() {
            linked.insert(format!(
                "00-{}-{}-01",
                text(link, "trace_id"),
                text(link, "span_id")
            ));
        }
    }
    assert_eq!(counted, lines.len() as i64);
    assert_eq!(linked, produced);

    // Stage calls and sink writes: children of a batch, in its trace.
    let batch_ids: BTreeMap<String, String> = batches
        .iter()
        .map(|b| (text(b, "span_id"), text(b, "trace_id")))
        .collect();
    let in_a_batch = |span: &&&Value| {
        batch_ids.get(&text(span, "parent_span_id")) == Some(&text(span, "trace_id"))
    };
    let stages: BTreeSet<String> = named("stage")
        .iter()
        .filter(in_a_batch)
        .map(|s| text(&s["attributes"], "weir.stage"))
        .collect();
    assert_eq!(
        stages,
        BTreeSet::from(["bot-filter".into(), "ip-geo".into(), "sessionize".into()])
    );
    let sinks: BTreeSet<String> = named("sink write")
        .iter()
        .filter(in_a_batch)
        .map(|s| text(&s["attributes"], "weir.sink"))
        .collect();
    for sink in ["lake", "topics", "dead_letter"] {
        assert!(
            sinks.contains(sink),
            "no write to {sink} in a batch: {sinks:?}"
        );
    }

    // Epoch commits.
    let commits = named("epoch commit");
    assert!(!commits.is_empty());
    assert!(
        commits
            .iter()
            .all(|c| c["attributes"]["weir.partitions"].as_i64() >= Some(1))
    );

    // Metrics: the same names as /metrics, the last export counting every record.
    let metric = |name: &str| -> Vec<&Value> {
        exported
            .iter()
            .filter(|e| e["signal"] == "metric" && e["name"] == name)
            .collect()
    };
    let records_in = metric("weir_source_records_total");
    let last = records_in
        .last()
        .expect("weir_source_records_total exported");
    assert_eq!(last["kind"], "sum");
    assert_eq!(last["monotonic"], true);
    assert_eq!(last["points"][0]["value"], lines.len());
    let durations = metric("weir_stage_batch_duration_seconds");
    assert!(durations.iter().any(|m| m["kind"] == "histogram"));
    let keys = metric("weir_state_keys");
    assert!(
        keys.iter()
            .flat_map(|m| m["points"].as_array().unwrap())
            .any(|p| p["attributes"]["topic"] == "clicks"
                && p["attributes"]["stage"] == "sessionize"),
        "per-partition gauges are exported"
    );
}
