//! Avro records in a schema registry's wire format (magic byte 0, the writer schema's id as 4
//! big-endian bytes, one Avro binary datum), turned into the JSON object the stages see. The
//! writer schema is fetched once per id and kept for the process (`apache-avro` decodes).
//!
//! The JSON follows what Kafka Connect's converters give for Avro, so records read the same
//! whichever tool turned them into JSON: a union is its branch's value (no `{"type": v}`
//! wrapper); an enum its symbol; bytes and fixed base64; `timestamp-millis`, `date` (days),
//! `time-*` and the other timestamps their number; a decimal its exact value as a string;
//! a uuid its text; a duration `{"months", "days", "millis"}`.

use std::io::Write;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{NamesRef, ResolvedSchema};
use apache_avro::types::Value;
use base64::Engine;

use super::avro_stream::{JsonText, streamable};
use super::registry::{ResolvedReferences, SchemaRegistry};
use super::schemas::{SchemaCache, ToJson, Undecodable, framed};
use crate::event::{Member, Written};

/// A writer schema ready to decode with, kept for the life of the process.
struct Writer {
    schema: &'static Schema,
    names: NamesRef<'static>,
    reader: GenericDatumReader<'static>,
    /// Whether the JSON is written while the datum is read ([`streamable`]).
    streams: bool,
    /// Whether the schema is a record's.
    record: bool,
}

/// Decodes registry-framed Avro records to JSON.
pub struct AvroDecoder {
    writers: SchemaCache<Writer>,
}

impl std::fmt::Debug for AvroDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroDecoder").finish_non_exhaustive()
    }
}

impl AvroDecoder {
    /// A decoder fetching writer schemas from `registry`.
    pub fn new(registry: SchemaRegistry) -> Self {
        AvroDecoder {
            writers: SchemaCache::new(Some(registry), "avro", writer_of),
        }
    }

    /// A decoder that knows only the schemas [`AvroDecoder::preload`] gives it (schema files
    /// of a test or a benchmark).
    pub fn offline() -> Self {
        AvroDecoder {
            writers: SchemaCache::new(None, "avro", writer_of),
        }
    }

    /// Makes the schema `text` known as `id`, as if the registry had served it.
    pub fn preload(&self, id: u32, text: &str) -> Result<(), String> {
        self.writers.preload(id, text)
    }
}

impl ToJson for AvroDecoder {
    fn to_json(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        members: &mut Vec<Member>,
    ) -> Result<Written, Undecodable> {
        let (id, mut body) = framed(bytes, "avro")?;
        let writer = self.writers.get(id)?;
        let bad = |e: &dyn std::fmt::Display| format!("not avro: schema {id}: {e}");
        let written = if writer.streams {
            let json: JsonText = writer.reader.read_deser(&mut body).map_err(|e| bad(&e))?;
            let at = out.len() as u32;
            out.extend_from_slice(&json.text);
            // A record's fields are named once each (a map's keys need not be).
            let written = if writer.record {
                members.extend(json.members.iter().map(|m| Member {
                    name: m.name.shifted(at),
                    value: m.value.shifted(at),
                    escaped: m.escaped,
                }));
                Written::Indexed
            } else {
                Written::Text
            };
            json.recycle();
            written
        } else {
            let value = writer.reader.read_value(&mut body).map_err(|e| bad(&e))?;
            write_json(value, writer.schema, &writer.names, out).map_err(|e| bad(&e))?;
            Written::Text
        };
        match body.len() {
            0 => Ok(written),
            left => Err(bad(&format!("{left} bytes left after the record")).into()),
        }
    }
}

/// The records of an Avro file as JSON texts: an object container file (`Obj\x01…`, which
/// holds its schema), or datums one after another of the schema `schema_text`.
pub fn file_to_json(bytes: &[u8], schema_text: Option<&str>) -> Result<Vec<Vec<u8>>, String> {
    let mut records = Vec::new();
    if bytes.starts_with(b"Obj\x01") {
        let reader = apache_avro::Reader::new(bytes).map_err(|e| e.to_string())?;
        let schema = reader.writer_schema().clone();
        let names = ResolvedSchema::try_from(&schema)
            .map_err(|e| e.to_string())?
            .get_names()
            .clone();
        for (i, value) in reader.enumerate() {
            let value = value.map_err(|e| format!("record {i}: {e}"))?;
            let mut json = Vec::new();
            write_json(value, &schema, &names, &mut json)
                .map_err(|e| format!("record {i}: {e}"))?;
            records.push(json);
        }
        return Ok(records);
    }
    let text = schema_text.ok_or("not an Avro container file: give the datums' schema file")?;
    let decoder = AvroDecoder::offline();
    decoder.preload(0, text)?;
    let writer = decoder.writers.get(0).map_err(|e| e.to_string())?;
    let mut body = bytes;
    while !body.is_empty() {
        let value = writer
            .reader
            .read_value(&mut body)
            .map_err(|e| format!("record {}: {e}", records.len()))?;
        let mut json = Vec::new();
        write_json(value, writer.schema, &writer.names, &mut json)
            .map_err(|e| format!("record {}: {e}", records.len()))?;
        records.push(json);
    }
    Ok(records)
}

/// A schema parsed with the schemas it refers to, kept for the life of the process: they are
/// leaked on purpose, so that readers and writers can borrow them for as long.
pub struct KeptSchema {
    /// The schema.
    pub schema: &'static Schema,
    /// The schemas it refers to, then it.
    pub all: Vec<&'static Schema>,
    /// Every named type among them.
    pub names: NamesRef<'static>,
}

/// The schema `text`, whose named types from other schemas are in `references`.
pub fn kept_schema(text: &str, references: &ResolvedReferences) -> Result<KeptSchema, String> {
    let (schema, others) = if references.is_empty() {
        (Schema::parse_str(text), Vec::new())
    } else {
        Schema::parse_str_with_list(text, references.iter().map(|(_, text)| text.as_str()))
            .map(|(schema, others)| (Ok(schema), others))
            .map_err(|e| e.to_string())?
    };
    let schema: &'static Schema = Box::leak(Box::new(schema.map_err(|e| e.to_string())?));
    // The referenced schemas first: names resolve in order.
    let mut all: Vec<&'static Schema> = others
        .into_iter()
        .map(|s| &*Box::leak(Box::new(s)))
        .collect();
    all.push(schema);
    let names = ResolvedSchema::new_with_schemata(all.clone())
        .map_err(|e| e.to_string())?
        .get_names()
        .clone();
    Ok(KeptSchema { schema, all, names })
}

/// A writer schema parsed from its text and references (see [`kept_schema`]).
fn writer_of(text: &str, references: &ResolvedReferences) -> Result<Writer, String> {
    let kept = kept_schema(text, references)?;
    let reader = GenericDatumReader::builder(kept.schema)
        .writer_schemata(kept.all.clone())
        .and_then(|builder| builder.build())
        .map_err(|e| e.to_string())?;
    let record = match kept.schema {
        Schema::Ref { name } => kept.names.get(name).copied(),
        other => Some(other),
    };
    Ok(Writer {
        streams: kept.all.iter().all(|s| streamable(s)),
        record: matches!(record, Some(Schema::Record(_))),
        schema: kept.schema,
        names: kept.names,
        reader,
    })
}

/// Writes `value`, of `schema`, as JSON text to `out`.
fn write_json(
    value: Value,
    schema: &Schema,
    names: &NamesRef,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let schema = match schema {
        Schema::Ref { name } => names
            .get(name)
            .copied()
            .ok_or_else(|| format!("no type named {name}"))?,
        other => other,
    };
    let number = |out: &mut Vec<u8>, n: &dyn std::fmt::Display| {
        write!(out, "{n}").map_err(|e| e.to_string())
    };
    match (value, schema) {
        (Value::Null, _) => out.extend_from_slice(b"null"),
        (Value::Boolean(b), _) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        (Value::Int(n) | Value::Date(n) | Value::TimeMillis(n), _) => number(out, &n)?,
        (
            Value::Long(n)
            | Value::TimeMicros(n)
            | Value::TimestampMillis(n)
            | Value::TimestampMicros(n)
            | Value::TimestampNanos(n)
            | Value::LocalTimestampMillis(n)
            | Value::LocalTimestampMicros(n)
            | Value::LocalTimestampNanos(n),
            _,
        ) => number(out, &n)?,
        // serde_json writes a NaN or an infinity as null.
        (Value::Float(x), _) => write_text(out, &f64::from(x))?,
        (Value::Double(x), _) => write_text(out, &x)?,
        (Value::Bytes(bytes) | Value::Fixed(_, bytes), _) => {
            write_text(
                out,
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            )?;
        }
        (Value::String(text) | Value::Enum(_, text), _) => write_text(out, &text)?,
        (Value::Uuid(uuid), _) => write_text(out, &uuid.to_string())?,
        (Value::BigDecimal(decimal), _) => write_text(out, &decimal.to_string())?,
        (Value::Decimal(decimal), Schema::Decimal(declared)) => {
            let unscaled = num_bigint::BigInt::from(decimal);
            let scale = i64::try_from(declared.scale).unwrap_or(i64::MAX);
            write_text(
                out,
                &bigdecimal::BigDecimal::new(unscaled, scale).to_string(),
            )?;
        }
        (Value::Duration(d), _) => write!(
            out,
            r#"{{"months":{},"days":{},"millis":{}}}"#,
            u32::from(d.months()),
            u32::from(d.days()),
            u32::from(d.millis())
        )
        .map_err(|e| e.to_string())?,
        (Value::Union(branch, inner), Schema::Union(union)) => {
            let branch_schema = usize::try_from(branch)
                .ok()
                .and_then(|b| union.variants().get(b))
                .ok_or_else(|| format!("union branch {branch} out of range"))?;
            write_json(*inner, branch_schema, names, out)?;
        }
        (Value::Array(items), Schema::Array(array)) => {
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, &array.items, names, out)?;
            }
            out.push(b']');
        }
        (Value::Map(entries), Schema::Map(map)) => {
            let mut sorted: Vec<(String, Value)> = entries.into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            write_members(
                sorted.into_iter().map(|(k, v)| (k, v, &*map.types)),
                names,
                out,
            )?;
        }
        (Value::Record(fields), Schema::Record(record)) => {
            let members = fields
                .into_iter()
                .zip(&record.fields)
                .map(|((name, item), field)| (name, item, &field.schema));
            write_members(members, names, out)?;
        }
        (value, schema) => {
            return Err(format!("a {value:?} where the schema has {schema:?}"));
        }
    }
    Ok(())
}

/// Writes `members` as a JSON object to `out`.
fn write_members<'a>(
    members: impl Iterator<Item = (String, Value, &'a Schema)>,
    names: &NamesRef,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.push(b'{');
    for (i, (name, item, schema)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_text(out, &name)?;
        out.push(b':');
        write_json(item, schema, names, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// Writes `value` as JSON (a string escaped) to `out`.
fn write_text<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), String> {
    serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::schemas::indexed_text;

    #[test]
    fn streamed_json_equals_the_value_paths() {
        use apache_avro::writer::datum::GenericDatumWriter;
        let text = r#"{"type": "record", "name": "Click", "fields": [
            {"name": "id", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "ratio", "type": "double"},
            {"name": "referrer", "type": ["null", "string"], "default": null},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "BUY"]}},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "counts", "type": {"type": "map", "values": "int"}},
            {"name": "next", "type": ["null", "Kind"], "default": null}
        ]}"#;
        let writer = writer_of(text, &Vec::new()).unwrap();
        assert!(writer.streams);
        let value = Value::Record(vec![
            ("id".into(), Value::String("e\"1".into())),
            ("ts".into(), Value::TimestampMillis(1_767_261_600_000)),
            ("ratio".into(), Value::Double(0.5)),
            ("referrer".into(), Value::Union(0, Box::new(Value::Null))),
            ("kind".into(), Value::Enum(1, "BUY".into())),
            ("tags".into(), Value::Array(vec![Value::String("x".into())])),
            (
                "counts".into(),
                Value::Map([("a".to_string(), Value::Int(3))].into()),
            ),
            (
                "next".into(),
                Value::Union(1, Box::new(Value::Enum(0, "VIEW".into()))),
            ),
        ]);
        let body = GenericDatumWriter::builder(writer.schema)
            .build()
            .unwrap()
            .write_value_to_vec(value.clone())
            .unwrap();
        let decoder = AvroDecoder::offline();
        decoder.preload(1, text).unwrap();
        let streamed = indexed_text(&decoder, &[&[0, 0, 0, 0, 1], &body[..]].concat());
        let mut through_value = Vec::new();
        write_json(value, writer.schema, &writer.names, &mut through_value).unwrap();
        assert_eq!(
            String::from_utf8(streamed).unwrap(),
            String::from_utf8(through_value).unwrap()
        );
        let decimal = text.replace(
            r#""type": "double""#,
            r#""type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}"#,
        );
        assert!(
            !writer_of(&decimal, &Vec::new()).unwrap().streams,
            "a decimal needs the value path"
        );
    }

    #[test]
    fn named_types_of_referenced_schemas_resolve() {
        let address = r#"{"type": "record", "name": "Address", "namespace": "shop",
            "fields": [{"name": "city", "type": "string"}]}"#;
        let order = r#"{"type": "record", "name": "Order", "namespace": "shop",
            "fields": [{"name": "id", "type": "string"}, {"name": "ship_to", "type": "Address"}]}"#;
        assert!(
            writer_of(order, &Vec::new()).is_err(),
            "Address is unknown alone"
        );
        let writer = writer_of(order, &vec![("shop.Address".into(), address.into())]).unwrap();
        // "a", then the address's "b": each a zigzag length and its bytes.
        let mut body: &[u8] = &[2, b'a', 2, b'b'];
        let json: JsonText = writer.reader.read_deser(&mut body).unwrap();
        assert_eq!(json.text, br#"{"id":"a","ship_to":{"city":"b"}}"#);
    }

    #[test]
    fn a_record_nested_deeper_than_a_json_record_may_be_is_refused() {
        let text = r#"{"type": "record", "name": "Node", "fields": [
            {"name": "next", "type": ["null", "Node"]}]}"#;
        let decoder = AvroDecoder::offline();
        decoder.preload(1, text).unwrap();
        // Each level is the union's second branch (zigzag 1 = 2); the last is null (0).
        let nested = |levels: usize| [&[0, 0, 0, 0, 1][..], &vec![2; levels], &[0]].concat();
        assert!(decoder.json_text(&nested(120)).is_ok());
        let err = decoder.json_text(&nested(200)).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 127"), "{err}");
    }

    #[test]
    fn values_map_to_json_as_kafka_connect_gives_them() {
        let text = r#"{"type": "record", "name": "Click", "fields": [
            {"name": "id", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
            {"name": "referrer", "type": ["null", "string"], "default": null},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "BUY"]}},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "next", "type": ["null", "Kind"], "default": null}
        ]}"#;
        let writer = writer_of(text, &Vec::new()).unwrap();
        let value = Value::Record(vec![
            ("id".into(), Value::String("e1".into())),
            ("ts".into(), Value::TimestampMillis(1_767_261_600_000)),
            (
                "price".into(),
                Value::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39])),
            ),
            (
                "referrer".into(),
                Value::Union(1, Box::new(Value::String("https://a.example".into()))),
            ),
            ("kind".into(), Value::Enum(1, "BUY".into())),
            ("tags".into(), Value::Array(vec![Value::String("x".into())])),
            (
                "next".into(),
                Value::Union(1, Box::new(Value::Enum(0, "VIEW".into()))),
            ),
        ]);
        let mut json = Vec::new();
        write_json(value, writer.schema, &writer.names, &mut json).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
            serde_json::json!({
                "id": "e1", "ts": 1_767_261_600_000_i64, "price": "123.45",
                "referrer": "https://a.example", "kind": "BUY", "tags": ["x"], "next": "VIEW"
            })
        );
    }
}
