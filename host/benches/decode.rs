//! CPU µs per event to decode records into what the stages see (the indexed event, its key
//! and time), for the same events written as JSON, and as Avro and as Protobuf in a schema
//! registry's wire format, measured in the same run. The decoders have the schema already, as
//! a running instance has after the first record of each schema id.
//!
//! `cargo bench -p weir --bench decode -- --events 200000 --rounds 5` (`--only avro` for one
//! input alone)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::{Record, Value};
use apache_avro::writer::datum::GenericDatumWriter;
use weir::config::EventConfig;
use weir::event::EventArena;
use weir::flow::SourceRecord;
use weir::pipeline::RecordDecoder;
use weir::source::avro::AvroDecoder;
use weir::source::protobuf::ProtobufDecoder;
use weir::source::schemas::ToJson;

use common::{arg, cpu_time, events};

/// The bench events' fields as Avro.
const SCHEMA: &str = r#"{"type": "record", "name": "Click", "fields": [
    {"name": "event_id", "type": "string"}, {"name": "user_id", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "type", "type": "string"}, {"name": "url", "type": "string"},
    {"name": "referrer", "type": "string"},
    {"name": "user_agent", "type": ["null", "string"], "default": null},
    {"name": "ip", "type": ["null", "string"], "default": null}]}"#;

/// The bench events' fields as Protobuf.
const PROTO: &str = r#"syntax = "proto3";
package bench;
message Click {
    string event_id = 1; string user_id = 2; int64 ts = 3; string type = 4; string url = 5;
    string referrer = 6; optional string user_agent = 7; optional string ip = 8;
}"#;

/// Records per batch, as the pipeline decodes them into one arena.
const BATCH: usize = 512;

/// `record`'s JSON value as a registry-framed Avro record of schema id 1.
fn to_avro(schema: &Schema, record: &SourceRecord) -> SourceRecord {
    let json: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
    let text = |name: &str| json[name].as_str().unwrap().to_string();
    let mut avro = Record::new(schema).unwrap();
    for field in ["event_id", "user_id", "type", "url", "referrer"] {
        avro.put(field, Value::String(text(field)));
    }
    avro.put("ts", Value::TimestampMillis(json["ts"].as_i64().unwrap()));
    for field in ["user_agent", "ip"] {
        avro.put(field, Value::Union(1, Box::new(Value::String(text(field)))));
    }
    let body = GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(avro)
        .unwrap();
    SourceRecord {
        value: [vec![0, 0, 0, 0, 1], body].concat(),
        ..record.clone()
    }
}

/// `record`'s JSON value as a registry-framed Protobuf record of schema id 1 (its first
/// message).
fn to_protobuf(click: &prost_reflect::MessageDescriptor, record: &SourceRecord) -> SourceRecord {
    use prost_reflect::prost::Message;
    let json: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
    let message = prost_reflect::DynamicMessage::deserialize(click.clone(), json).unwrap();
    SourceRecord {
        value: [vec![0, 0, 0, 0, 1, 0], message.encode_to_vec()].concat(),
        ..record.clone()
    }
}

/// The message of [`PROTO`], compiled.
fn click_message() -> prost_reflect::MessageDescriptor {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("click.proto"), PROTO).unwrap();
    protox::compile(["click.proto"], [dir.path()])
        .map(|set| prost_reflect::DescriptorPool::from_file_descriptor_set(set).unwrap())
        .unwrap()
        .get_message_by_name("bench.Click")
        .unwrap()
}

/// The CPU time `decoder` takes over `records`, a batch at a time.
fn decode_all(decoder: &RecordDecoder, records: &[SourceRecord]) -> Duration {
    let mut arena = EventArena::default();
    let start = arena.mark();
    let before = cpu_time();
    for batch in records.chunks(BATCH) {
        for record in batch {
            decoder.decode_into(record, &mut arena).unwrap();
        }
        arena.truncate(start);
    }
    cpu_time() - before
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let n: usize = arg("--events", 200_000);
    let rounds: usize = arg("--rounds", 5);
    let json = events(n);
    let schema = Schema::parse_str(SCHEMA).unwrap();
    let avro: Vec<SourceRecord> = json.iter().map(|r| to_avro(&schema, r)).collect();
    let config = EventConfig::default();
    let json_decoder = RecordDecoder::new(&config);
    let avro_offline = AvroDecoder::offline();
    avro_offline.preload(1, SCHEMA).unwrap();
    let converter = |c: Arc<dyn ToJson>| RecordDecoder::new(&config).with_converter(Some(c));
    let avro_decoder = converter(Arc::new(avro_offline));
    let click = click_message();
    let protobuf: Vec<SourceRecord> = json.iter().map(|r| to_protobuf(&click, r)).collect();
    let protobuf_offline = ProtobufDecoder::offline();
    protobuf_offline.preload(1, PROTO).unwrap();
    let protobuf_decoder = converter(Arc::new(protobuf_offline));

    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let inputs = [
        ("JSON", &json_decoder, &json),
        ("Avro, registry wire format", &avro_decoder, &avro),
        (
            "Protobuf, registry wire format",
            &protobuf_decoder,
            &protobuf,
        ),
    ];
    // `--only avro` measures one input alone (for callgrind's instruction counts).
    let only: String = arg("--only", String::new()).to_lowercase();
    let inputs: Vec<_> = inputs
        .into_iter()
        .filter(|(name, ..)| name.to_lowercase().starts_with(&only))
        .collect();
    let mut us = vec![Vec::new(); inputs.len()];
    for _ in 0..rounds {
        for ((_, decoder, records), us) in inputs.iter().zip(&mut us) {
            us.push(per_event(decode_all(decoder, records)));
        }
    }
    let bytes = |records: &[SourceRecord]| {
        records.iter().map(|r| r.value.len()).sum::<usize>() as f64 / records.len() as f64
    };
    println!("{n} events; medians of {rounds} rounds\n");
    println!("| input | bytes per event | CPU µs per event | vs JSON |");
    println!("| --- | ---: | ---: | ---: |");
    // Each round measures the inputs one after the other: the ratio is the median of the
    // rounds' ratios, which a noisy machine disturbs less than a ratio of medians.
    for ((name, _, records), times) in inputs.iter().zip(&us) {
        let ratio = match inputs[0].0 {
            "JSON" if *name != "JSON" => format!(
                "{:.2}x",
                median(times.iter().zip(&us[0]).map(|(t, json)| t / json).collect())
            ),
            _ => String::new(),
        };
        println!(
            "| {name} | {:.0} | {:.3} | {ratio} |",
            bytes(records),
            median(times.clone())
        );
    }
}
