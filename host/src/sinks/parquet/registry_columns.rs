//! A Parquet sink's columns from a schema registry subject (`schema_subject`): the latest
//! version's fields, in order, as columns of the types the framed decoders' JSON fills.
//!
//! | Avro | Protobuf | column |
//! | --- | --- | --- |
//! | `boolean` | `bool` | `bool` |
//! | `int`, `time-millis` | `int32`, `sint32`, `sfixed32` | `int32` |
//! | `long`, `time-micros` | `int64`, `sint64`, `sfixed64`, `uint32`, `fixed32` | `int64` |
//! | `float` / `double` | `float` / `double` | `float32` / `float64` |
//! | `string`, `enum`, `uuid`, `decimal` | `string`, enums | `string` |
//! | `timestamp-millis` / `-micros` (and `local-`) | | `timestamp_ms` / `timestamp_us` |
//! | | `google.protobuf.Timestamp` | `timestamp_us` |
//! | `date` | | `date32` |
//! | `array` | `repeated` | `list<…>` |
//! | `record` | message | `struct<…>` |
//!
//! An Avro union of `null` and one type is that type, nullable; other fields are not
//! nullable. A Protobuf field is nullable when it tracks presence (`optional`, messages).
//! Types with no column (Avro `bytes`, `fixed`, `map`, other unions; Protobuf `bytes`,
//! `uint64`, `fixed64`, maps) are refused with the field named.

use apache_avro::Schema;
use apache_avro::schema::{NamesRef, ResolvedSchema};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::ColumnConfig;
use crate::source::registry::{Patience, SchemaRegistry};

/// The columns of the latest version of `subject`.
pub fn columns_of_subject(
    registry: &SchemaRegistry,
    subject: &str,
    patience: Patience,
) -> Result<Vec<ColumnConfig>, String> {
    let (_, registered) = registry.latest(subject, patience)?;
    let columns = match registered.kind.to_ascii_uppercase().as_str() {
        "AVRO" => avro_columns(&registered.text),
        "PROTOBUF" => protobuf_columns(&registered.text),
        other => Err(format!("a {other} schema has no column mapping")),
    };
    columns.map_err(|e| format!("subject {subject}: {e}"))
}

/// The columns of an Avro record schema.
pub fn avro_columns(text: &str) -> Result<Vec<ColumnConfig>, String> {
    let schema = Schema::parse_str(text).map_err(|e| e.to_string())?;
    let resolved = ResolvedSchema::try_from(&schema).map_err(|e| e.to_string())?;
    let names = resolved.get_names();
    let Schema::Record(record) = &schema else {
        return Err("the schema is not a record".into());
    };
    record
        .fields
        .iter()
        .map(|field| {
            let (data_type, nullable) = avro_type(&field.schema, names)
                .map_err(|e| format!("field `{}`: {e}", field.name))?;
            Ok(column(&field.name, data_type, nullable))
        })
        .collect()
}

/// The column type of an Avro schema, and whether it is nullable.
fn avro_type(schema: &Schema, names: &NamesRef) -> Result<(String, bool), String> {
    let plain = |t: &str| Ok((t.to_string(), false));
    match schema {
        Schema::Ref { name } => match names.get(name) {
            Some(named) => avro_type(named, names),
            None => Err(format!("no type named {name}")),
        },
        Schema::Boolean => plain("bool"),
        Schema::Int | Schema::TimeMillis => plain("int32"),
        Schema::Long | Schema::TimeMicros => plain("int64"),
        Schema::Float => plain("float32"),
        Schema::Double => plain("float64"),
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) | Schema::Decimal(_) => plain("string"),
        Schema::BigDecimal => plain("string"),
        Schema::TimestampMillis | Schema::LocalTimestampMillis => plain("timestamp_ms"),
        Schema::TimestampMicros | Schema::LocalTimestampMicros => plain("timestamp_us"),
        Schema::Date => plain("date32"),
        Schema::Array(array) => {
            let (items, _) = avro_type(&array.items, names)?;
            Ok((format!("list<{items}>"), false))
        }
        Schema::Record(record) => {
            let members = record
                .fields
                .iter()
                .map(|f| Ok(format!("{}: {}", f.name, avro_type(&f.schema, names)?.0)))
                .collect::<Result<Vec<_>, String>>()?;
            Ok((format!("struct<{}>", members.join(", ")), false))
        }
        Schema::Union(union) => match union.variants() {
            [Schema::Null, other] | [other, Schema::Null] => Ok((avro_type(other, names)?.0, true)),
            _ => Err("a union of other than null and one type has no column type".into()),
        },
        other => Err(format!("{other:?} has no column type")),
    }
}

/// The columns of a Protobuf schema's first message (`.proto` text or a base64 descriptor).
pub fn protobuf_columns(text: &str) -> Result<Vec<ColumnConfig>, String> {
    let file = crate::source::protobuf::compile(text)?;
    let message = file.messages().next().ok_or("the schema has no message")?;
    message
        .fields()
        .map(|field| {
            let data_type =
                protobuf_type(&field).map_err(|e| format!("field `{}`: {e}", field.name()))?;
            Ok(column(field.name(), data_type, field.supports_presence()))
        })
        .collect()
}

/// The column type of a Protobuf field.
fn protobuf_type(field: &FieldDescriptor) -> Result<String, String> {
    if field.is_map() {
        return Err("a map has no column type".into());
    }
    let item = kind_type(&field.kind())?;
    Ok(if field.is_list() {
        format!("list<{item}>")
    } else {
        item
    })
}

fn kind_type(kind: &Kind) -> Result<String, String> {
    Ok(match kind {
        Kind::Bool => "bool".into(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => "int32".into(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint32 | Kind::Fixed32 => {
            "int64".into()
        }
        Kind::Float => "float32".into(),
        Kind::Double => "float64".into(),
        Kind::String | Kind::Enum(_) => "string".into(),
        Kind::Message(message) if message.full_name() == "google.protobuf.Timestamp" => {
            "timestamp_us".into()
        }
        Kind::Message(message) => message_type(message)?,
        other => return Err(format!("{other:?} has no column type")),
    })
}

fn message_type(message: &MessageDescriptor) -> Result<String, String> {
    let members = message
        .fields()
        .map(|f| Ok(format!("{}: {}", f.name(), protobuf_type(&f)?)))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(format!("struct<{}>", members.join(", ")))
}

fn column(name: &str, data_type: String, nullable: bool) -> ColumnConfig {
    ColumnConfig {
        name: name.to_string(),
        data_type,
        nullable,
        dictionary: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(columns: &[ColumnConfig]) -> Vec<String> {
        columns
            .iter()
            .map(|c| {
                format!(
                    "{} {}{}",
                    c.name,
                    c.data_type,
                    if c.nullable { "?" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn avro_fields_become_columns() {
        let text = r#"{"type": "record", "name": "Session", "fields": [
            {"name": "session_id", "type": "string"},
            {"name": "end", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "first_url", "type": ["null", "string"], "default": null},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A"]}},
            {"name": "tags", "type": {"type": "array", "items": "Kind"}},
            {"name": "geo", "type": {"type": "record", "name": "Geo", "fields": [
                {"name": "lat", "type": "double"}]}}]}"#;
        let columns = avro_columns(text).unwrap();
        assert_eq!(
            described(&columns),
            [
                "session_id string",
                "end timestamp_ms",
                "first_url string?",
                "kind string",
                "tags list<string>",
                "geo struct<lat: float64>"
            ]
        );
        for column in &columns {
            super::super::parse_type(&column.data_type).unwrap();
        }
        let bytes = text.replace(r#""type": "string"}"#, r#""type": "bytes"}"#);
        assert!(
            avro_columns(&bytes)
                .unwrap_err()
                .starts_with("field `session_id`: ")
        );
    }

    #[test]
    fn protobuf_fields_become_columns() {
        let text = r#"syntax = "proto3";
            import "google/protobuf/timestamp.proto";
            message Click {
                string event_id = 1; int64 ts = 2; optional string ip = 3;
                repeated int32 counts = 4; google.protobuf.Timestamp sent = 5;
                message Geo { double lat = 1; } Geo geo = 6;
            }"#;
        let columns = protobuf_columns(text).unwrap();
        assert_eq!(
            described(&columns),
            [
                "event_id string",
                "ts int64",
                "ip string?",
                "counts list<int32>",
                "sent timestamp_us?",
                "geo struct<lat: float64>?"
            ]
        );
        for column in &columns {
            super::super::parse_type(&column.data_type).unwrap();
        }
    }
}
