//! Protobuf messages written as JSON text straight from their decoded fields, as protobuf's JSON
//! mapping writes them with weir's options (the `.proto`'s field names, every field without
//! presence at its value or default, 64-bit integers as numbers): enums by name, bytes as
//! base64, floats that are not finite as `"NaN"` and `"±Infinity"`, map keys as strings. The
//! well-known types (`google.protobuf.*`), whose JSON has shapes of its own, go through
//! prost-reflect's serializer.

use std::io::Write;

use base64::Engine;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, SerializeOptions, Value};

/// The options of prost-reflect's serializer that give the same JSON.
pub(super) const JSON_OPTIONS: SerializeOptions = SerializeOptions::new()
    .stringify_64_bit_integers(false)
    .use_proto_field_name(true)
    .skip_default_fields(false);

/// Appends `message` as a JSON object to `out`.
pub fn write_message(message: &DynamicMessage, out: &mut Vec<u8>) -> Result<(), String> {
    let descriptor = message.descriptor();
    if descriptor.full_name().starts_with("google.protobuf.") {
        return message
            .serialize_with_options(&mut serde_json::Serializer::new(&mut *out), &JSON_OPTIONS)
            .map_err(|e| e.to_string());
    }
    out.push(b'{');
    let mut first = true;
    for field in descriptor.fields() {
        if field.supports_presence() && !message.has_field(&field) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_text(out, field.name())?;
        out.push(b':');
        write_value(&message.get_field(&field), &field.kind(), out)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_value(value: &Value, kind: &Kind, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::I32(n) => write_number(out, *n),
        Value::I64(n) => write_number(out, *n),
        Value::U32(n) => write_number(out, *n),
        Value::U64(n) => write_number(out, *n),
        Value::F32(x) => write_float(out, f64::from(*x))?,
        Value::F64(x) => write_float(out, *x)?,
        Value::String(text) => write_text(out, text)?,
        Value::Bytes(bytes) => {
            write_text(
                out,
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            )?;
        }
        Value::EnumNumber(number) => match kind.as_enum().and_then(|e| e.get_value(*number)) {
            Some(symbol) => write_text(out, symbol.name())?,
            None => write_number(out, *number),
        },
        Value::Message(message) => write_message(message, out)?,
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, kind, out)?;
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            let value_kind = kind
                .as_message()
                .map(|entry| entry.map_entry_value_field().kind())
                .ok_or("a map without its entry message")?;
            let mut sorted: Vec<(String, &Value)> =
                entries.iter().map(|(k, v)| (key_text(k), v)).collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_text(out, &key)?;
                out.push(b':');
                write_value(item, &value_kind, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A map key as its JSON object key.
fn key_text(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(text) => text.clone(),
    }
}

fn write_number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_float(out: &mut Vec<u8>, x: f64) -> Result<(), String> {
    match x {
        x if x.is_nan() => write_text(out, "NaN"),
        x if x == f64::INFINITY => write_text(out, "Infinity"),
        x if x == f64::NEG_INFINITY => write_text(out, "-Infinity"),
        x => write!(
            out,
            "{}",
            serde_json::Number::from_f64(x).ok_or("not finite")?
        )
        .map_err(|e| e.to_string()),
    }
}

/// Writes `text` as a JSON string, escaped as serde_json escapes it.
fn write_text(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    serde_json::to_writer(&mut *out, text).map_err(|e| e.to_string())
}
