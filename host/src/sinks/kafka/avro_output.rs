//! Avro values for a kafka sink: each record's JSON resolved against the sink's schema
//! (apache-avro), written as a datum and framed with the schema's registry id, as Confluent's
//! `AvroSerializer` frames it. The id comes from the registry once per topic, at start: the
//! schema file registered (or looked up) under the topic's subject, or the
//! subject's latest version. A record that does not fit is refused with the field named.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::schema::{NamesRef, ResolvedSchema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use super::config::{KafkaSinkConfig, SubjectStrategy};
use crate::source::registry::SchemaRegistry;

/// Why a record could not be written as Avro.
#[derive(Debug)]
pub enum AvroOutputError {
    /// The record does not fit the schema: it is refused (a dead letter).
    Record(String),
    /// The schema could not be had from the registry: the sink fails.
    Schema(String),
}

/// A topic's writer schema, kept for the process.
struct TopicSchema {
    id: u32,
    schema: &'static Schema,
    names: NamesRef<'static>,
}

/// Writes a kafka sink's records as registry-framed Avro.
pub struct AvroOutput {
    registry: SchemaRegistry,
    /// The configured schema and its text, when given as a file.
    given: Option<(String, Arc<TopicSchema>)>,
    strategy: SubjectStrategy,
    register: bool,
    topics: HashMap<String, Arc<TopicSchema>>,
}

impl AvroOutput {
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
                let parsed =
                    parse(&text, 0).map_err(|e| format!("schema_file {}: {e}", path.display()))?;
                Some((text, Arc::new(parsed)))
            }
            None => None,
        };
        let mut output = AvroOutput {
            registry,
            given,
            strategy: config.subject_strategy,
            register: config.auto_register,
            topics: HashMap::new(),
        };
        for topic in topics {
            output.schema_of(topic)?;
        }
        Ok(output)
    }

    /// `json`, a record for `topic`, as a framed Avro datum.
    pub fn encode(&mut self, topic: &str, json: &[u8]) -> Result<Vec<u8>, AvroOutputError> {
        let schema = self.schema_of(topic).map_err(AvroOutputError::Schema)?;
        let value = to_avro(json, &schema).map_err(AvroOutputError::Record)?;
        let datum = GenericDatumWriter::builder(schema.schema)
            .build()
            .and_then(|writer| writer.write_value_to_vec(value))
            .map_err(|e| AvroOutputError::Record(format!("does not fit the schema: {e}")))?;
        let mut framed = Vec::with_capacity(5 + datum.len());
        framed.push(0);
        framed.extend_from_slice(&schema.id.to_be_bytes());
        framed.extend_from_slice(&datum);
        Ok(framed)
    }

    /// The schema and id `topic`'s records are written with, from the registry on first use.
    fn schema_of(&mut self, topic: &str) -> Result<Arc<TopicSchema>, String> {
        if let Some(known) = self.topics.get(topic) {
            return Ok(known.clone());
        }
        let made = match &self.given {
            Some((text, parsed)) => {
                let subject =
                    match self.strategy {
                        SubjectStrategy::TopicName => format!("{topic}-value"),
                        SubjectStrategy::RecordName => parsed
                            .schema
                            .name()
                            .map(|n| n.fullname(None))
                            .ok_or("record-name needs a named schema (a record)")?,
                    };
                let id = self.registry.id_of(&subject, text, self.register)?;
                Arc::new(TopicSchema {
                    id,
                    schema: parsed.schema,
                    names: parsed.names.clone(),
                })
            }
            None => {
                let subject = format!("{topic}-value");
                let (id, latest) = self.registry.latest(&subject)?;
                if !latest.kind.eq_ignore_ascii_case("avro") {
                    return Err(format!("subject {subject} holds a {} schema", latest.kind));
                }
                Arc::new(parse(&latest.text, id).map_err(|e| format!("subject {subject}: {e}"))?)
            }
        };
        self.topics.insert(topic.to_string(), made.clone());
        Ok(made)
    }
}

/// Parses an Avro schema; leaked on purpose, kept for the process like the decoder's.
fn parse(text: &str, id: u32) -> Result<TopicSchema, String> {
    let schema: &'static Schema = Box::leak(Box::new(
        Schema::parse_str(text).map_err(|e| e.to_string())?,
    ));
    let names = ResolvedSchema::try_from(schema)
        .map_err(|e| e.to_string())?
        .get_names()
        .clone();
    Ok(TopicSchema { id, schema, names })
}

/// The JSON record resolved against the schema, or which field does not fit and why.
fn to_avro(json: &[u8], schema: &TopicSchema) -> Result<Value, String> {
    let json: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
    let whole = Value::try_from(json.clone())
        .map_err(|e| e.to_string())
        .and_then(|v| {
            v.resolve_with_names(schema.schema, &schema.names)
                .map_err(|e| e.to_string())
        });
    whole.map_err(|error| match (schema.schema, &json) {
        (Schema::Record(record), serde_json::Value::Object(members)) => record
            .fields
            .iter()
            .find_map(|field| match members.get(&field.name) {
                None if field.default.is_none() => {
                    Some(format!("field `{}` is missing", field.name))
                }
                None => None,
                Some(member) => Value::try_from(member.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|v| {
                        v.resolve_with_names(&field.schema, &schema.names)
                            .map_err(|e| e.to_string())
                    })
                    .err()
                    .map(|e| format!("field `{}`: {e}", field.name)),
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

    #[test]
    fn records_resolve_against_the_schema_and_misfits_name_their_field() {
        let schema = parse(SESSION, 1).unwrap();
        let value = to_avro(br#"{"session_id": "s1", "end": 1767261600000}"#, &schema).unwrap();
        let datum = GenericDatumWriter::builder(schema.schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap();
        assert_eq!(datum[0], 4, "the string's zigzag length first");
        assert_eq!(
            to_avro(br#"{"end": 1}"#, &schema).unwrap_err(),
            "field `session_id` is missing"
        );
        let wrong = to_avro(br#"{"session_id": "s", "end": "soon"}"#, &schema).unwrap_err();
        assert!(wrong.starts_with("field `end`: "), "{wrong}");
    }
}
