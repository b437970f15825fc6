//! Values for a kafka sink in a registered format, framed as Confluent's serializers frame
//! them: Avro (each record's JSON resolved against the schema by apache-avro, written as a
//! datum) or Protobuf (the JSON read into the message by prost-reflect, after the message
//! indexes). The schema's id comes from the registry once per topic, at start: the schema
//! file registered (or looked up) under the topic's subject, or the subject's latest version.
//! A record that does not fit is refused with the field named.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::schema::NamesRef;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor};

use super::config::{KafkaSinkConfig, OutputFormat, SubjectStrategy};
use crate::source::registry::{Patience, SchemaRegistry};

/// Why a record could not be written.
#[derive(Debug)]
pub enum OutputError {
    /// The record does not fit the schema: it is refused (a dead letter).
    Record(String),
    /// The schema could not be had from the registry: the sink fails.
    Schema(String),
}

/// How records are written with one schema.
enum Codec {
    Avro {
        schema: &'static Schema,
        names: NamesRef<'static>,
        /// Built once: it resolves the schema's names when made.
        writer: GenericDatumWriter<'static>,
    },
    Protobuf {
        message: MessageDescriptor,
        /// The message indexes as the wire header writes them.
        indexes: Vec<u8>,
    },
}

/// A topic's writer schema, kept for the process.
struct Writer {
    id: u32,
    codec: Arc<Codec>,
}

/// Writes a kafka sink's records in its registered format.
pub struct RegisteredOutput {
    registry: SchemaRegistry,
    format: OutputFormat,
    /// The message a `.proto` holds the records as (default: its first).
    message: Option<String>,
    /// The configured schema's text and codec, when given as a file.
    given: Option<(String, Arc<Codec>)>,
    strategy: SubjectStrategy,
    register: bool,
    topics: HashMap<String, Writer>,
}

impl RegisteredOutput {
    /// The writer of `config`'s values to `topics`: reads and parses its schema file and has
    /// each topic's schema id from the registry.
    pub fn new<'a>(
        config: &KafkaSinkConfig,
        registry: SchemaRegistry,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, String> {
        let given = match &config.schema_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("schema_file {}: {e}", path.display()))?;
                let codec = Codec::parse(config.format, &text, config.message.as_deref())
                    .map_err(|e| format!("schema_file {}: {e}", path.display()))?;
                Some((text, Arc::new(codec)))
            }
            None => None,
        };
        let mut output = RegisteredOutput {
            registry,
            format: config.format,
            message: config.message.clone(),
            given,
            strategy: config.subject_strategy,
            register: config.auto_register,
            topics: HashMap::new(),
        };
        for topic in topics {
            let writer = output.writer_for(topic)?;
            output.topics.insert(topic.to_string(), writer);
        }
        Ok(output)
    }

    /// `json`, a record for `topic`, framed in the format.
    pub fn encode(&self, topic: &str, json: &[u8]) -> Result<Vec<u8>, OutputError> {
        let writer = self
            .topics
            .get(topic)
            .ok_or_else(|| OutputError::Schema(format!("no schema for topic {topic}")))?;
        let mut framed = vec![0];
        framed.extend_from_slice(&writer.id.to_be_bytes());
        writer
            .codec
            .write(json, &mut framed)
            .map_err(OutputError::Record)?;
        Ok(framed)
    }

    /// The schema and id `topic`'s records are written with, from the registry.
    fn writer_for(&self, topic: &str) -> Result<Writer, String> {
        let kind = self.format.registry_kind();
        match &self.given {
            Some((text, codec)) => {
                let subject = match self.strategy {
                    SubjectStrategy::TopicName => format!("{topic}-value"),
                    SubjectStrategy::RecordName => codec.record_name()?,
                };
                let id = self.registry.id_of(&subject, kind, text, self.register)?;
                Ok(Writer {
                    id,
                    codec: codec.clone(),
                })
            }
            None => {
                let subject = format!("{topic}-value");
                let (id, latest) = self.registry.latest(&subject, Patience::Wait)?;
                if !latest.kind.eq_ignore_ascii_case(kind) {
                    return Err(format!("subject {subject} holds a {} schema", latest.kind));
                }
                let codec = Codec::parse(self.format, &latest.text, self.message.as_deref())
                    .map_err(|e| format!("subject {subject}: {e}"))?;
                Ok(Writer {
                    id,
                    codec: Arc::new(codec),
                })
            }
        }
    }
}

impl OutputFormat {
    /// The format's `schemaType` in the registry.
    fn registry_kind(self) -> &'static str {
        match self {
            OutputFormat::Protobuf => "PROTOBUF",
            _ => "AVRO",
        }
    }
}

impl Codec {
    /// The codec of the schema `text` in `format`.
    fn parse(format: OutputFormat, text: &str, message: Option<&str>) -> Result<Codec, String> {
        if format == OutputFormat::Protobuf {
            let file = crate::source::protobuf::compile(text)?;
            let (index, found) = file
                .messages()
                .enumerate()
                .find(|(_, m)| message.is_none_or(|name| m.full_name() == name || m.name() == name))
                .ok_or_else(|| match message {
                    Some(name) => format!("no top-level message {name}"),
                    None => "no message".into(),
                })?;
            return Ok(Codec::Protobuf {
                message: found,
                indexes: message_indexes(index),
            });
        }
        let kept = crate::source::avro::kept_schema(text, &Vec::new())?;
        let writer = GenericDatumWriter::builder(kept.schema)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Codec::Avro {
            schema: kept.schema,
            names: kept.names,
            writer,
        })
    }

    /// The subject of the RecordNameStrategy: the record's or message's full name.
    fn record_name(&self) -> Result<String, String> {
        match self {
            Codec::Avro { schema, .. } => schema
                .name()
                .map(|n| n.fullname(None))
                .ok_or_else(|| "record-name needs a named schema (a record)".into()),
            Codec::Protobuf { message, .. } => Ok(message.full_name().to_string()),
        }
    }

    /// Appends `json` written with this schema to `out`, or says which field does not fit.
    fn write(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        match self {
            Codec::Avro {
                schema,
                names,
                writer,
            } => {
                let value = to_avro(json, bytes, schema, names)?;
                writer
                    .write_value(out, value)
                    .map_err(|e| format!("does not fit the schema: {e}"))?;
            }
            Codec::Protobuf { message, indexes } => {
                use prost_reflect::prost::Message;
                let decoded = to_message(&json, message)?;
                out.extend_from_slice(indexes);
                decoded
                    .encode(out)
                    .map_err(|e| format!("does not fit the schema: {e}"))?;
            }
        }
        Ok(())
    }
}

/// The wire header's message indexes of the `index`th top-level message: `[0]` is one zero
/// byte, else the count and the index, zigzag varints.
fn message_indexes(index: usize) -> Vec<u8> {
    if index == 0 {
        return vec![0];
    }
    let mut out = Vec::new();
    for value in [1, index as u64] {
        prost_reflect::prost::encoding::encode_varint(value << 1, &mut out);
    }
    out
}

/// The JSON record (`json`, parsed from `bytes`) resolved against an Avro schema, or which
/// field does not fit and why.
fn to_avro(
    json: serde_json::Value,
    bytes: &[u8],
    schema: &Schema,
    names: &NamesRef,
) -> Result<Value, String> {
    let resolve = |json: serde_json::Value, schema: &Schema| {
        Value::try_from(json)
            .and_then(|v| v.resolve_with_names(schema, names))
            .map_err(|e| e.to_string())
    };
    // Resolving consumes the record: to say which field failed, it is parsed again.
    resolve(json, schema).map_err(|error| match (schema, serde_json::from_slice(bytes)) {
        (Schema::Record(record), Ok(serde_json::Value::Object(members))) => record
            .fields
            .iter()
            .find_map(|field| match members.get(&field.name) {
                None if field.default.is_none() => {
                    Some(format!("field `{}` is missing", field.name))
                }
                None => None,
                Some(member) => resolve(member.clone(), &field.schema)
                    .err()
                    .map(|e| format!("field `{}`: {e}", field.name)),
            })
            .unwrap_or_else(|| format!("does not fit the schema: {error}")),
        _ => format!("does not fit the schema: {error}"),
    })
}

/// The JSON record read into a Protobuf message (fields the message lacks are left out, but
/// not all of them: that is the wrong message), or which field does not fit and why.
fn to_message(
    json: &serde_json::Value,
    message: &MessageDescriptor,
) -> Result<DynamicMessage, String> {
    if let serde_json::Value::Object(members) = json
        && !members.is_empty()
        && !members.keys().any(|name| {
            message.get_field_by_name(name).is_some()
                || message.get_field_by_json_name(name).is_some()
        })
    {
        return Err(format!(
            "none of the record's fields is in message {}",
            message.full_name()
        ));
    }
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let read = |json: &serde_json::Value| {
        DynamicMessage::deserialize_with_options(message.clone(), json, &options)
            .map_err(|e| e.to_string())
    };
    read(json).map_err(|error| match json {
        serde_json::Value::Object(members) => members
            .iter()
            .find_map(|(name, value)| {
                let alone = serde_json::Value::Object(
                    [(name.clone(), value.clone())].into_iter().collect(),
                );
                read(&alone).err().map(|e| format!("field `{name}`: {e}"))
            })
            .unwrap_or_else(|| format!("does not fit the schema: {error}")),
        _ => format!("does not fit the schema: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = r#"{"type": "record", "name": "Session", "namespace": "shop",
        "fields": [{"name": "session_id", "type": "string"},
                   {"name": "end", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                   {"name": "first_url", "type": ["null", "string"], "default": null}]}"#;

    const SESSION_PROTO: &str = r#"syntax = "proto3"; package shop;
        message Other { string x = 1; }
        message Session { string session_id = 1; int64 end = 2; optional string first_url = 3; }"#;

    fn written(codec: &Codec, json: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        codec.write(json.as_bytes(), &mut out).map(|()| out)
    }

    #[test]
    fn avro_records_resolve_against_the_schema_and_misfits_name_their_field() {
        let codec = Codec::parse(OutputFormat::Avro, SESSION, None).unwrap();
        let datum = written(&codec, r#"{"session_id": "s1", "end": 1767261600000}"#).unwrap();
        assert_eq!(datum[0], 4, "the string's zigzag length first");
        assert_eq!(
            written(&codec, r#"{"end": 1}"#).unwrap_err(),
            "field `session_id` is missing"
        );
        let wrong = written(&codec, r#"{"session_id": "s", "end": "soon"}"#).unwrap_err();
        assert!(wrong.starts_with("field `end`: "), "{wrong}");
        assert_eq!(codec.record_name().unwrap(), "shop.Session");
    }

    #[test]
    fn protobuf_records_follow_their_message_indexes_and_misfits_name_their_field() {
        let codec =
            Codec::parse(OutputFormat::Protobuf, SESSION_PROTO, Some("shop.Session")).unwrap();
        let body = written(
            &codec,
            r#"{"session_id": "s1", "end": 1767261600000, "extra": true}"#,
        )
        .unwrap();
        // One index, 1: the count and the index as zigzag varints.
        assert_eq!(&body[..2], &[2, 2]);
        let Codec::Protobuf { message, .. } = &codec else {
            unreachable!()
        };
        let decoded = DynamicMessage::decode(message.clone(), &body[2..]).unwrap();
        assert_eq!(
            decoded.get_field_by_name("end").unwrap().as_i64(),
            Some(1_767_261_600_000)
        );
        let wrong = written(&codec, r#"{"session_id": "s", "end": "soon"}"#).unwrap_err();
        assert!(wrong.starts_with("field `end`: "), "{wrong}");
        assert_eq!(codec.record_name().unwrap(), "shop.Session");
        assert_eq!(message_indexes(0), [0]);
        let first = Codec::parse(OutputFormat::Protobuf, SESSION_PROTO, None).unwrap();
        assert_eq!(
            written(&first, r#"{"session_id": "s"}"#).unwrap_err(),
            "none of the record's fields is in message shop.Other"
        );
    }
}
