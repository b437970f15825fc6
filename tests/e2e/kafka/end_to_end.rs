//! `weir run` against Apache Kafka: every output (lake rows, Kafka topics, the dead-letter topic
//! with its headers) checked against the input; plugin failures in the DLQ; `dlq replay`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::{Value, json};
use xtask::servers::KafkaCluster;

use super::{
    Broker, WeirProcess, clickstream, lake_tables, pipeline_config, produce, read_all, valid_events,
};
use crate::harness::{plugin_dir, weir_ok};

/// The reason class the decoder must give a malformed line.
fn expected_reason(line: &str) -> &'static str {
    match serde_json::from_str::<Value>(line) {
        Err(_) => "invalid json",
        Ok(v) if !v.is_object() => "not an object",
        Ok(v) if v.get("user_id").is_none() => "missing key",
        Ok(v) if !(v["user_id"].is_string() || v["user_id"].is_number()) => "invalid key",
        Ok(_) => "invalid time",
    }
}

fn event_ids(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut ids: Vec<String> = values.collect();
    ids.sort();
    ids
}

#[test]
fn weir_run_on_kafka_fills_the_lake_the_topics_and_the_dlq() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let lines = clickstream(80);
    produce(&bootstrap, "clicks", &lines);
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "e2e");
    WeirProcess::start(&config, "e2e", true).wait_success(Duration::from_secs(180));

    let valid = valid_events(&lines);
    let tables = lake_tables(out.path());
    let lake = tables["events"].as_array().unwrap();
    let bots = read_all(&bootstrap, "weir.bots");
    let late = read_all(&bootstrap, "weir.late");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();

    // Every valid event is in exactly one place: the lake, the bots topic or the late topic.
    let found = event_ids(
        lake.iter()
            .map(|r| text(&r[0]))
            .chain(bots.iter().chain(&late).map(|r| text(&r.value["event_id"]))),
    );
    let expected = event_ids(valid.iter().map(|v| text(&v["event_id"])));
    assert_eq!(found.len(), expected.len(), "events lost or duplicated");
    assert_eq!(found, expected);
    assert!(!bots.is_empty(), "the clickstream has crawlers");

    // Every Kafka output names its source record, and no source record is repeated.
    for topic in ["weir.bots", "weir.late"] {
        let records = read_all(&bootstrap, topic);
        let provenance: BTreeSet<String> = records.iter().map(|r| r.provenance()).collect();
        assert_eq!(
            provenance.len(),
            records.len(),
            "{topic}: duplicate provenance"
        );
        assert!(
            records
                .iter()
                .all(|r| r.header("weir.source.topic") == Some("clicks"))
        );
    }

    // Sessions and features on Kafka equal the lake's tables.
    let sessions = read_all(&bootstrap, "weir.sessions");
    let lake_sessions: BTreeSet<String> = tables["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| text(&r[1]))
        .collect();
    let topic_sessions: BTreeSet<String> = sessions
        .iter()
        .map(|r| text(&r.value["session_id"]))
        .collect();
    assert_eq!(sessions.len(), lake_sessions.len());
    assert_eq!(topic_sessions, lake_sessions);
    assert!(
        sessions
            .iter()
            .all(|r| r.header("weir.source.offset").is_some())
    );
    let features = read_all(&bootstrap, "weir.features");
    assert_eq!(features.len(), tables["features"].as_array().unwrap().len());
    assert_eq!(
        features.len(),
        sessions.len(),
        "one feature update per session"
    );

    // The DLQ holds exactly the malformed lines, each with its reason class and headers.
    let dlq = read_all(&bootstrap, "weir.dlq");
    let malformed: Vec<&String> = lines
        .iter()
        .filter(|l| {
            !valid
                .iter()
                .any(|v| serde_json::to_string(v).ok().as_deref() == Some(l.as_str()))
        })
        .collect();
    assert_eq!(
        dlq.len(),
        lines.len() - valid.len(),
        "dead letters != malformed lines"
    );
    let mut by_value: BTreeMap<Vec<u8>, &'static str> = BTreeMap::new();
    for line in &malformed {
        by_value.insert(line.as_bytes().to_vec(), expected_reason(line));
    }
    let mut classes = BTreeSet::new();
    for record in &dlq {
        let expected = by_value
            .get(&record.raw)
            .unwrap_or_else(|| panic!("unexpected dead letter {:?}", record.raw));
        let reason = record.header("weir.dlq.reason").unwrap();
        assert!(reason.starts_with(expected), "{reason} is not {expected}");
        classes.insert(*expected);
        assert_eq!(record.header("weir.dlq.stage"), Some("decode"));
        assert_eq!(record.header("weir.dlq.class"), Some("decode"));
        assert_eq!(record.header("weir.source.topic"), Some("clicks"));
        assert!(record.header("weir.source.offset").is_some());
        assert!(
            record
                .header("weir.dlq.time")
                .is_some_and(|t| t.contains('T'))
        );
    }
    assert!(
        classes.len() >= 4,
        "every malformed class occurs: {classes:?}"
    );
}

const HOSTILE: &str = r#"
plugin_dir = "PLUGINS"
[source.kafka]
brokers = "BROKERS"
topics = ["in"]
group = "hostile"
[[stages]]
name = "hostile-stage"
plugin = "hostile"
cpu_limit = "200ms"
[sinks.out]
type = "kafka"
routes = ["main"]
topic = "out"
[dead_letter]
topic = "dlq"
[checkpoint]
interval = "1s"
store = "STORE"
"#;

fn produce_with_headers(bootstrap: &str, topic: &str, values: &[Value]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (i, value) in values.iter().enumerate() {
        let payload = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        let key = format!("k{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "origin",
            value: Some("test"),
        });
        let record = BaseRecord::to(topic)
            .payload(&payload)
            .key(&key)
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn plugin_failures_land_in_the_dlq_and_replay_once() {
    let kafka = KafkaCluster::start(1).unwrap_or_else(|e| panic!("{e:#}"));
    let bootstrap = kafka.bootstrap();
    for topic in ["in", "out", "dlq", "replayed"] {
        kafka.create_topic(topic, 1).unwrap();
    }
    let ts = "2026-11-20T10:00:00Z";
    let inputs = vec![
        json!({"user_id": "a", "ts": ts, "action": "ok"}),
        json!({"user_id": "b", "ts": ts, "action": "trap"}),
        json!({"user_id": "c", "ts": ts, "action": "dead-letter"}),
        json!({"user_id": "d", "ts": ts, "action": "spin"}),
        json!({"user_id": 7, "ts": 1_790_000_000_000_i64, "action": "ok"}),
        json!({"user_id": ["wrong type"], "ts": ts}),
        json!({"user_id": "e", "ts": "yesterday"}),
        json!("{not json"),
    ];
    produce_with_headers(&bootstrap, "in", &inputs);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hostile.toml");
    std::fs::write(
        &config,
        HOSTILE
            .replace("PLUGINS", plugin_dir().to_str().unwrap())
            .replace("BROKERS", &bootstrap)
            .replace("STORE", dir.path().join("ckpt").to_str().unwrap()),
    )
    .unwrap();
    WeirProcess::start(&config, "hostile", true).wait_success(Duration::from_secs(120));

    let out = read_all(&bootstrap, "out");
    assert_eq!(out.len(), 2, "the two good records pass");
    assert!(out.iter().all(|r| r.value["seen"] == true));
    assert_eq!(
        out.iter().map(|r| r.provenance()).collect::<BTreeSet<_>>(),
        BTreeSet::from(["in/0/0".to_string(), "in/0/4".to_string()])
    );
    let dlq = read_all(&bootstrap, "dlq");
    let by_offset: BTreeMap<String, &super::Record> = dlq
        .iter()
        .map(|r| (r.header("weir.source.offset").unwrap().to_string(), r))
        .collect();
    assert_eq!(by_offset.len(), 6, "{dlq:?}");
    let expect = [
        ("1", "trap", "hostile-stage", "trap"),
        ("2", "asked to dead-letter", "hostile-stage", "plugin"),
        ("3", "timeout", "hostile-stage", "timeout"),
        ("5", "invalid key", "decode", "decode"),
        ("6", "invalid time", "decode", "decode"),
        ("7", "invalid json", "decode", "decode"),
    ];
    for (offset, reason, stage, class) in expect {
        assert_eq!(
            by_offset[offset].header("weir.dlq.class"),
            Some(class),
            "{offset}"
        );
        let record = by_offset[offset];
        assert!(
            record
                .header("weir.dlq.reason")
                .unwrap()
                .starts_with(reason),
            "{offset}: {:?}",
            record.headers
        );
        assert_eq!(record.header("weir.dlq.stage"), Some(stage));
        assert_eq!(
            record.header("origin"),
            Some("test"),
            "original headers kept"
        );
        assert_eq!(record.key.as_deref(), Some(format!("k{offset}").as_str()));
        let original = inputs[offset.parse::<usize>().unwrap()].clone();
        let raw = original
            .as_str()
            .map_or_else(|| original.to_string(), str::to_string);
        assert_eq!(record.raw, raw.as_bytes(), "original value kept");
        if stage != "decode" {
            assert_eq!(record.header("weir.dlq.plugin"), Some("hostile"));
            assert_eq!(record.header("weir.dlq.plugin-sha256").unwrap().len(), 64);
        }
    }

    // What is in the DLQ, by stage, class and reason; then the trapped one itself.
    let config = config.to_str().unwrap();
    let listed = weir_ok(&["dlq", "list", "--config", config]);
    assert!(listed.contains("6 dead letters"), "{listed}");
    let decode = listed
        .lines()
        .find(|l| l.contains(" decode ") && l.contains("invalid json"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(decode.trim_start().starts_with("1 "), "{listed}");
    let shown = weir_ok(&["dlq", "show", "--config", config, "--class", "trap"]);
    let shown: Vec<serde_json::Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["stage"], "hostile-stage");
    assert_eq!(shown[0]["source"], "in/0/1");
    assert_eq!(shown[0]["record"]["action"], "trap");

    // Replay the trapped record once; a second replay finds nothing new.
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "dlq", "replay", "--config", config, "--reason", "^trap", "--to", "replayed",
        ];
        args.extend_from_slice(extra);
        weir_ok(&args)
    };
    assert!(replay(&["--dry-run"]).starts_with("would replay 1 "));
    assert!(replay(&[]).starts_with("replayed 1 "));
    let again = replay(&[]);
    assert!(
        again.starts_with("replayed 0 ") && again.contains("already replayed 1"),
        "{again}"
    );
    let replayed = read_all(&bootstrap, "replayed");
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].value["action"], "trap");
    assert_eq!(replayed[0].header("origin"), Some("test"));
    assert!(
        replayed[0]
            .header("weir.replayed-from")
            .is_some_and(|from| from.starts_with("dlq/0/"))
    );
    assert!(replayed[0].header("weir.dlq.reason").is_none());
}
