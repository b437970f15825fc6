//! An Avro topic read through a schema registry: Confluent's own serializer (the
//! `confluent-kafka` package's `AvroSerializer`) writes the clickstream into Apicurio
//! Registry's Confluent-compatible API, registering schema v1 and, halfway, a compatible v2
//! with a new optional field. weir starts while the registry is down, waits for it (nothing is
//! dead-lettered for the outage), then reads both versions without a restart, and its lake
//! equals a run over the same records written as JSON. Records with an unknown schema id, a
//! corrupt header or bytes that do not decode are dead letters with their reason and
//! original bytes. The run writes its sessions topic as Avro too (a schema file registered
//! under `weir.sessions-value`), which Confluent's `AvroDeserializer` reads back as the JSON
//! run's sessions, and its sessions table takes its columns from that subject.

use std::path::Path;
use std::time::Duration;

use xtask::servers::SchemaRegistryServer;

use super::{
    Broker, WeirProcess, clickstream, lake_tables, pipeline_config, read_all, use_reference_topics,
    valid_events,
};
use crate::harness::python;

/// The clickstream's fields as Avro: v1, and v2 with an optional `campaign`.
const SCHEMA_V1: &str = r#"{"type": "record", "name": "Click", "namespace": "shop", "fields": [
    {"name": "event_id", "type": "string"}, {"name": "user_id", "type": "string"},
    {"name": "ts", "type": "string"}, {"name": "type", "type": "string"},
    {"name": "url", "type": "string"}, {"name": "referrer", "type": "string"},
    {"name": "user_agent", "type": ["null", "string"], "default": null},
    {"name": "ip", "type": ["null", "string"], "default": null}]}"#;

/// The sessions' Avro schema, as a user would write it for `sessionize`'s summaries.
const SESSION_SCHEMA: &str = r#"{"type": "record", "name": "Session", "namespace": "shop",
  "fields": [{"name": "user_id", "type": "string"}, {"name": "session_id", "type": "string"},
    {"name": "start", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "end", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "duration_ms", "type": "long"}, {"name": "event_count", "type": "long"},
    {"name": "page_views", "type": "long"},
    {"name": "first_url", "type": ["null", "string"], "default": null},
    {"name": "last_url", "type": ["null", "string"], "default": null}]}"#;

/// Registers the sessions' schema under `subject` with Confluent's registry client.
fn register_sessions(registry: &str, subject: &str) {
    python(&format!(
        "from confluent_kafka.schema_registry import Schema, SchemaRegistryClient\n\
         SchemaRegistryClient({{'url': {registry:?}}}).register_schema({subject:?}, Schema({SESSION_SCHEMA:?}, 'AVRO'))\n"
    ));
}

/// Makes `config`'s sessions table take its columns from `subject` instead of its list.
fn sessions_columns_from(config: &Path, subject: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let table = text.find("[sinks.sessions]").unwrap();
    let start = table + text[table..].find("schema = [").unwrap();
    let end = start + text[start..].find("\n]\n").unwrap() + 2;
    let replaced = format!(
        "{}schema_subject = {subject:?}{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(config, replaced).unwrap();
}

/// Moves `config`'s `sessions` route to a sink of its own writing `format` (`avro`,
/// `protobuf`) of `schema_file` to `weir.sessions`.
pub(super) fn sessions_as(config: &Path, format: &str, schema_file: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let moved = text
        .replace(
            "routes = [\"sessions\", \"features\", \"bots\", \"late\"]",
            "routes = [\"features\", \"bots\", \"late\"]",
        )
        .replace("sessions = \"weir.sessions\"\n", "");
    assert_eq!(
        moved.len() + 39,
        text.len(),
        "the example's kafka sink moved"
    );
    let sink = format!(
        "\n[sinks.sessions_registered]\ntype = \"kafka\"\nroutes = [\"sessions\"]\n\
         topic = \"weir.sessions\"\nformat = {format:?}\nschema_file = {:?}\n",
        schema_file.display().to_string()
    );
    std::fs::write(config, moved + &sink).unwrap();
}

/// `values` of `topic` as Confluent's `AvroDeserializer` reads them, as JSON objects (Avro
/// timestamps back to epoch milliseconds).
fn deserialized(registry: &str, topic: &str, values: &[Vec<u8>]) -> Vec<serde_json::Value> {
    let file = tempfile::NamedTempFile::new().unwrap();
    let values: Vec<String> = values.iter().map(hex::encode).collect();
    std::fs::write(file.path(), serde_json::to_string(&values).unwrap()).unwrap();
    let out = python(&format!(
        r#"
import datetime, json
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import SerializationContext, MessageField
avro = AvroDeserializer(SchemaRegistryClient({{"url": {registry:?}}}))
context = SerializationContext({topic:?}, MessageField.VALUE)
def plain(v):
    return round(v.timestamp() * 1000) if isinstance(v, datetime.datetime) else v
records = [avro(bytes.fromhex(v), context) for v in json.load(open({file:?}))]
print(json.dumps([{{k: plain(v) for k, v in r.items()}} for r in records]))
"#,
        file = file.path().display().to_string()
    ));
    serde_json::from_str(&out).unwrap()
}

/// Produces `events` to `topic` with confluent-kafka's `AvroSerializer` (TopicNameStrategy,
/// auto-registration): the first half with v1, the rest with v2, which adds `campaign`.
/// Returns the ids the serializer registered.
fn produce_avro(bootstrap: &str, registry: &str, topic: &str, events: &Path) -> String {
    let v2 = SCHEMA_V1.replace(
        "\"default\": null}]}",
        "\"default\": null}, {\"name\": \"campaign\", \"type\": [\"null\", \"string\"], \"default\": null}]}",
    );
    python(&format!(
        r#"
import json, sys
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import SerializationContext, MessageField
registry = SchemaRegistryClient({{"url": {registry:?}}})
v1 = AvroSerializer(registry, {v1:?})
v2 = AvroSerializer(registry, {v2:?})
producer = Producer({{"bootstrap.servers": {bootstrap:?}, "enable.idempotence": True}})
events = [json.loads(l) for l in open({events:?})]
ids = set()
for i, event in enumerate(events):
    newer = i >= len(events) // 2
    record = dict(event, campaign="spring") if newer else event
    value = (v2 if newer else v1)(record, SerializationContext({topic:?}, MessageField.VALUE))
    ids.add(int.from_bytes(value[1:5], "big"))
    producer.produce({topic:?}, key=event["user_id"].encode(), value=value)
    producer.poll(0)
assert producer.flush(30) == 0
print(json.dumps(sorted(ids)))
"#,
        v1 = SCHEMA_V1,
        events = events.display().to_string(),
    ))
}

/// Produces raw `values` to `topic`.
pub(super) fn produce_raw(bootstrap: &str, topic: &str, values: &[Vec<u8>]) {
    let values: Vec<String> = values.iter().map(hex::encode).collect();
    python(&format!(
        "from confluent_kafka import Producer\n\
         p = Producer({{'bootstrap.servers': {bootstrap:?}}})\n\
         for v in {values:?}:\n\
         \x20   p.produce({topic:?}, key=b'u-bad', value=bytes.fromhex(v))\n\
         assert p.flush(30) == 0\n"
    ));
}

#[test]
fn avro_records_from_confluents_serializer_give_the_same_lake_as_json() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let servers = tempfile::tempdir().unwrap();
    let mut registry =
        SchemaRegistryServer::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));

    // The clickstream's valid events, each as Avro decodes it: absent optional fields null,
    // and v2's `campaign` in the second half.
    let events = valid_events(&clickstream(150));
    let events_file = servers.path().join("events.ndjson");
    let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    std::fs::write(&events_file, lines.join("\n") + "\n").unwrap();
    let ids = produce_avro(&bootstrap, &registry.url(), "clicks", &events_file);
    let ids: Vec<u32> = serde_json::from_str(&ids).unwrap();
    assert_eq!(ids.len(), 2, "v1 and v2 registered: {ids:?}");

    // Three bad records: not framed, framed with an id the registry does not know, and a
    // known id over bytes that are not its record.
    let unknown = [vec![0, 0, 0, 0x27, 0x0f], b"\x02x".to_vec()].concat();
    let garbled = [vec![0], ids[0].to_be_bytes().to_vec(), vec![0xff; 3]].concat();
    let bad = vec![b"{\"event_id\":\"plain json\"}".to_vec(), unknown, garbled];
    produce_raw(&bootstrap, "clicks", &bad);

    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "avro");
    read_framed(&config, "clicks", "avro", &registry.url());
    let session_schema = out.path().join("session.avsc");
    std::fs::write(&session_schema, SESSION_SCHEMA).unwrap();
    sessions_as(&config, "avro", &session_schema);
    register_sessions(&registry.url(), "weir.sessions-value");
    sessions_columns_from(&config, "weir.sessions-value");
    // The registry is down when weir starts: the partitions wait for it.
    registry.stop();
    let run = WeirProcess::start(&config, "avro", true);
    run.wait_log("a wait for the registry", Duration::from_secs(90), |log| {
        log.contains("Schema registry unreachable")
    });
    registry.resume().unwrap();
    run.wait_success(Duration::from_secs(300));

    let reference = reference_run(&broker, &as_decoded(&events, serde_json::Value::Null));

    assert_dead_letters(
        &bootstrap,
        "weir.dlq",
        &bad,
        &[
            "not avro: magic byte 123",
            "unknown schema id 9999",
            "not avro: schema",
        ],
    );
    let (actual, expected) = (lake_tables(out.path()), lake_tables(reference.path()));
    assert_eq!(
        actual["events"].as_array().map(Vec::len),
        expected["events"].as_array().map(Vec::len)
    );
    assert_eq!(actual, expected, "the Avro run's lake differs from JSON's");
    let (avro, json) = sessions_and_reference(&bootstrap);
    assert_eq!(
        sorted(deserialized(&registry.url(), "weir.sessions", &avro)),
        json,
        "the Avro sessions differ from the JSON run's"
    );
    assert!(
        expected["sessions"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
}

/// Makes `config` read `topic` as `format` records framed by the registry at `url`.
pub(super) fn read_framed(config: &Path, topic: &str, format: &str, url: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let framed = text.replace(
        "topics = [\"clicks\"]\n",
        &format!("topics = [{topic:?}]\nformat = {format:?}\n"),
    );
    assert_ne!(framed, text, "the example's source moved");
    let framed = format!("{framed}\n[schema_registry]\nurl = {url:?}\ntimeout = \"2s\"\n");
    std::fs::write(config, framed).unwrap();
}

/// Checks that `topic` holds the `sent` records, in order, as decode dead letters with their
/// original bytes and reasons starting as `expected`.
pub(super) fn assert_dead_letters(
    bootstrap: &str,
    topic: &str,
    sent: &[Vec<u8>],
    expected: &[&str],
) {
    let dead = read_all(bootstrap, topic);
    let reasons: Vec<(Vec<u8>, String)> = dead
        .iter()
        .map(|r| {
            (
                r.raw.clone(),
                r.header("weir.dlq.reason").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), sent.len(), "{reasons:?}");
    for ((raw, reason), (sent, expected)) in reasons.iter().zip(sent.iter().zip(expected)) {
        assert_eq!(raw, sent, "the dead letter keeps the original bytes");
        assert!(reason.starts_with(expected), "{reason} is not {expected}");
    }
    assert!(
        dead.iter()
            .all(|r| r.header("weir.dlq.class") == Some("decode"))
    );
}

/// `events` as a decoder of the evolving schema gives them: absent optional fields as
/// `absent`, and v2's `campaign` in the second half.
pub(super) fn as_decoded(
    events: &[serde_json::Value],
    absent: serde_json::Value,
) -> Vec<serde_json::Value> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            for field in ["user_agent", "ip"] {
                if e.get(field).is_none() {
                    e[field] = absent.clone();
                }
            }
            if i >= events.len() / 2 {
                e["campaign"] = "spring".into();
            }
            e
        })
        .collect()
}

/// The same pipeline over `events` as plain JSON (topic `clicks-json`, outputs `ref.…`): the
/// lake a framed run must equal.
pub(super) fn reference_run(broker: &Broker, events: &[serde_json::Value]) -> tempfile::TempDir {
    let bootstrap = broker.bootstrap();
    broker.create_topic("clicks-json", super::PARTITIONS);
    let lines: Vec<String> = events.iter().map(ToString::to_string).collect();
    super::produce(&bootstrap, "clicks-json", &lines);
    let reference = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, reference.path(), "json");
    use_reference_topics(broker, &config);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("topics = [\"clicks\"]", "topics = [\"clicks-json\"]"),
    )
    .unwrap();
    WeirProcess::start(&config, "json", true).wait_success(Duration::from_secs(300));
    reference
}

/// The raw values of `weir.sessions` and the reference run's sessions, sorted.
pub(super) fn sessions_and_reference(bootstrap: &str) -> (Vec<Vec<u8>>, Vec<serde_json::Value>) {
    let raw = read_all(bootstrap, "weir.sessions")
        .into_iter()
        .map(|r| r.raw)
        .collect();
    let json: Vec<serde_json::Value> = read_all(bootstrap, "ref.sessions")
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert!(!json.is_empty());
    (raw, sorted(json))
}

/// `records` in a stable order.
pub(super) fn sorted(mut records: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    records.sort_by_key(ToString::to_string);
    records
}
