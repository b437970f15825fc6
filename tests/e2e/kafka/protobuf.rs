//! Protobuf and JSON Schema topics read through a schema registry: Confluent's own
//! serializers (`ProtobufSerializer` and `JSONSerializer` of the `confluent-kafka` package)
//! write the clickstream into Apicurio Registry's Confluent-compatible API. The Protobuf
//! message is the second of its file (message indexes `[1]`) and moves to a v2 halfway, with a
//! new field whose message is in another file (a schema reference, which the serializer
//! registers as a subject of its own). weir's lakes over both topics equal a run over the same events as plain
//! JSON; records of the wrong schema type, an unknown id or bytes that do not decode are dead
//! letters with their reasons and original bytes. The Protobuf run writes its sessions as
//! Protobuf (a `.proto` registered under `weir.sessions-value`), which Confluent's
//! `ProtobufDeserializer` reads back as the JSON run's sessions. The JSON Schema run starts
//! with the registry down: its epochs fail and rewind through the registry's circuit breaker
//! until it is back, and nothing is dead-lettered for the outage.

use std::time::Duration;

use xtask::servers::SchemaRegistryServer;

use super::avro::{
    as_decoded, assert_dead_letters, produce_raw, read_framed, reference_run,
    sessions_and_reference, sessions_as, sorted,
};
use super::{
    Broker, WeirProcess, clickstream, lake_tables, pipeline_config, use_output_topics, valid_events,
};
use crate::harness::python;

/// The sessions as a user would declare them for `sessionize`'s summaries, the second
/// message of their file.
const SESSION_PROTO: &str = "syntax = \"proto3\";\npackage shop;\n\
    message Note { string text = 1; }\n\
    message Session { string user_id = 1; string session_id = 2; int64 start = 3; int64 end = 4;\n\
    int64 duration_ms = 5; int64 event_count = 6; int64 page_views = 7;\n\
    optional string first_url = 8; optional string last_url = 9; }\n";

/// `values` of `topic` as Confluent's `ProtobufDeserializer` reads them into the same
/// message (built by protobuf's runtime), as JSON objects with numbers for the int64 fields.
fn deserialized(topic: &str, values: &[Vec<u8>]) -> Vec<serde_json::Value> {
    let file = tempfile::NamedTempFile::new().unwrap();
    let values: Vec<String> = values.iter().map(hex::encode).collect();
    std::fs::write(file.path(), serde_json::to_string(&values).unwrap()).unwrap();
    let out = python(&format!(
        r#"
import json
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
from confluent_kafka.serialization import SerializationContext, MessageField
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
STRING, INT64, OPTIONAL = 9, 3, 1
file = descriptor_pb2.FileDescriptorProto(name="session.proto", package="shop", syntax="proto3")
file.message_type.add(name="Note").field.add(name="text", number=1, type=STRING, label=OPTIONAL)
session = file.message_type.add(name="Session")
fields = [("user_id", STRING), ("session_id", STRING), ("start", INT64), ("end", INT64),
          ("duration_ms", INT64), ("event_count", INT64), ("page_views", INT64)]
for number, (name, kind) in enumerate(fields, 1):
    session.field.add(name=name, number=number, type=kind, label=OPTIONAL)
for number, name in [(8, "first_url"), (9, "last_url")]:
    session.oneof_decl.add(name="_" + name)
    session.field.add(name=name, number=number, type=STRING, label=OPTIONAL,
                      proto3_optional=True, oneof_index=len(session.oneof_decl) - 1)
pool = descriptor_pool.DescriptorPool()
pool.Add(file)
Session = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Session"))
read = ProtobufDeserializer(Session, {{"use.deprecated.format": False}})
context = SerializationContext({topic:?}, MessageField.VALUE)
out = []
for value in json.load(open({file:?})):
    record = json_format.MessageToDict(read(bytes.fromhex(value), context),
        preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    for name, kind in fields:
        if kind == INT64:
            record[name] = int(record[name])
    for name in ["first_url", "last_url"]:
        record.setdefault(name, None)
    out.append(record)
print(json.dumps(out))
"#,
        file = file.path().display().to_string()
    ));
    serde_json::from_str(&out).unwrap()
}

/// The schema ids the serializers registered.
#[derive(serde::Deserialize)]
struct Registered {
    protobuf: Vec<u32>,
    json: u32,
}

/// Produces `events` (as decoded: every field present) to `clicks` with `ProtobufSerializer`,
/// v1 then v2 (which adds `campaign`), and to `clicks-js` with `JSONSerializer`.
fn produce_framed(bootstrap: &str, registry: &str, events: &[serde_json::Value]) -> Registered {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_string(events).unwrap()).unwrap();
    let events = file.path().display().to_string();
    let out = python(&format!(
        r#"
import json
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import SerializationContext, MessageField
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FIELDS = ["event_id", "user_id", "ts", "type", "url", "referrer", "user_agent", "ip"]
STRING, OPTIONAL = 9, 1

MESSAGE = 11

def click_class(with_campaign):
    # v2's campaign is a message of another file, which the serializer registers as a
    # subject of its own and names among v2's references.
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(name="shop/clicks.proto", package="shop", syntax="proto3")
    if with_campaign:
        campaign = descriptor_pb2.FileDescriptorProto(name="shop/campaign.proto", package="shop", syntax="proto3")
        campaign.message_type.add(name="Campaign").field.add(name="name", number=1, type=STRING, label=OPTIONAL)
        pool.Add(campaign)
        file.dependency.append("shop/campaign.proto")
    file.message_type.add(name="Envelope").field.add(name="note", number=1, type=STRING, label=OPTIONAL)
    click = file.message_type.add(name="Click")
    for number, name in enumerate(FIELDS, 1):
        click.field.add(name=name, number=number, type=STRING, label=OPTIONAL)
    if with_campaign:
        click.field.add(name="campaign", number=len(FIELDS) + 1, type=MESSAGE, label=OPTIONAL, type_name=".shop.Campaign")
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Click"))

registry = SchemaRegistryClient({{"url": {registry:?}}})
v1, v2 = click_class(False), click_class(True)
protobuf = {{v1: ProtobufSerializer(v1, registry), v2: ProtobufSerializer(v2, registry)}}
schema = {{"$schema": "http://json-schema.org/draft-07/schema#", "title": "Click", "type": "object",
          "properties": {{f: {{"type": "string"}} for f in FIELDS + ["campaign"]}},
          "required": ["event_id", "user_id", "ts"]}}
as_json = JSONSerializer(json.dumps(schema), registry)
producer = Producer({{"bootstrap.servers": {bootstrap:?}, "enable.idempotence": True}})
ids = {{"protobuf": set(), "json": set()}}
for event in json.load(open({events:?})):
    kind = v2 if "campaign" in event else v1
    message = kind(**{{k: v for k, v in event.items() if k in FIELDS}})
    if "campaign" in event:
        message.campaign.name = event["campaign"]
    value = protobuf[kind](message, SerializationContext("clicks", MessageField.VALUE))
    ids["protobuf"].add(int.from_bytes(value[1:5], "big"))
    producer.produce("clicks", key=event["user_id"].encode(), value=value)
    value = as_json(event, SerializationContext("clicks-js", MessageField.VALUE))
    ids["json"].add(int.from_bytes(value[1:5], "big"))
    producer.produce("clicks-js", key=event["user_id"].encode(), value=value)
    producer.poll(0)
assert producer.flush(30) == 0
assert len(ids["json"]) == 1, ids
# v2 names its import as a reference to a subject of its own.
assert "shop/campaign.proto" in registry.get_subjects(), registry.get_subjects()
assert registry.get_latest_version("clicks-value").schema.references, "v2 has no references"
print(json.dumps({{"protobuf": sorted(ids["protobuf"]), "json": ids["json"].pop()}}))
"#
    ));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn protobuf_and_json_schema_records_from_confluents_serializers_give_the_same_lake_as_json() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("clicks-js", super::PARTITIONS);
    let servers = tempfile::tempdir().unwrap();
    let mut registry =
        SchemaRegistryServer::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));

    // Proto3 strings have no null: an absent user agent or address reads as "".
    let events = as_decoded(
        &valid_events(&clickstream(150)),
        serde_json::Value::from(""),
    );
    let ids = produce_framed(&bootstrap, &registry.url(), &events);
    assert_eq!(ids.protobuf.len(), 2, "v1 and v2 registered");

    // Bad records: each topic gets a record framed with the other's schema; the Protobuf
    // topic also an unknown id and bytes that are not a message of v1.
    let id = |id: u32| id.to_be_bytes().to_vec();
    let header = |schema: u32| [vec![0], id(schema), vec![2, 2]].concat();
    let json_framed = [vec![0], id(ids.json), b"{\"user_id\":\"u\"}".to_vec()].concat();
    let bad_protobuf = vec![
        json_framed,
        [header(9999), b"\x0a\x01x".to_vec()].concat(),
        [header(ids.protobuf[0]), vec![0x0a, 0x7f, 0x01]].concat(),
    ];
    produce_raw(&bootstrap, "clicks", &bad_protobuf);
    let bad_json = vec![[header(ids.protobuf[0]), b"\x0a\x01x".to_vec()].concat()];
    produce_raw(&bootstrap, "clicks-js", &bad_json);

    let protobuf_out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, protobuf_out.path(), "protobuf");
    read_framed(&config, "clicks", "protobuf", &registry.url());
    let session_proto = protobuf_out.path().join("session.proto");
    std::fs::write(&session_proto, SESSION_PROTO).unwrap();
    sessions_as(&config, "protobuf", &session_proto);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text + "message = \"shop.Session\"\n").unwrap();
    WeirProcess::start(&config, "protobuf", true).wait_success(Duration::from_secs(300));

    let json_schema_out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, json_schema_out.path(), "json-schema");
    use_output_topics(&broker, &config, "js.");
    read_framed(&config, "clicks-js", "json-schema", &registry.url());
    registry.stop();
    let run = WeirProcess::start(&config, "json-schema", true);
    run.wait_log(
        "epochs failing for the registry",
        Duration::from_secs(90),
        |log| {
            log.contains("Schema registry unreachable")
                && log.contains("schema registry unavailable")
        },
    );
    registry.resume().unwrap();
    run.wait_success(Duration::from_secs(300));

    let reference = reference_run(&broker, &events);

    let schema = |id: u32| format!("not protobuf: schema {id}");
    assert_dead_letters(
        &bootstrap,
        "weir.dlq",
        &bad_protobuf,
        &[
            &format!("{} is json", schema(ids.json)),
            "unknown schema id 9999",
            &format!("{}: ", schema(ids.protobuf[0])),
        ],
    );
    assert_dead_letters(
        &bootstrap,
        "js.dlq",
        &bad_json,
        &[&format!("not json: schema {} is protobuf", ids.protobuf[0])],
    );
    let expected = lake_tables(reference.path());
    assert!(
        expected["events"].as_array().is_some_and(|e| e.len() > 100),
        "{expected}"
    );
    let (protobuf_sessions, json_sessions) = sessions_and_reference(&bootstrap);
    assert_eq!(
        sorted(deserialized("weir.sessions", &protobuf_sessions)),
        json_sessions,
        "the Protobuf sessions differ from the JSON run's"
    );
    assert!(
        protobuf_sessions.iter().all(|v| v[5..7] == [2, 2]),
        "message indexes [1]: Session is the file's second message"
    );
    for (format, out) in [
        ("Protobuf", &protobuf_out),
        ("JSON Schema", &json_schema_out),
    ] {
        assert_eq!(
            lake_tables(out.path()),
            expected,
            "the {format} run's lake differs from JSON's"
        );
    }
}
