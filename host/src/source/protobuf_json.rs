//! Protobuf messages written as JSON text straight from their decoded fields, as protobuf's JSON
//! mapping writes them with weir's options (the `.proto`'s field names, every field without
//! presence at its value or default, 64-bit integers as numbers): enums by name, bytes as
//! base64, floats that are not finite as `"NaN"` and `"±Infinity"`, map keys as strings. The
//! well-known types (`google.protobuf.*`), whose JSON has shapes of its own, go through
//! prost-reflect's serializer.

use std::io::Write;

use base64::Engine;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, MapKey, ReflectMessage, SerializeOptions, Value,
};

use crate::event::parse::write_string;
use crate::event::{Member, Span, Written};

/// The options of prost-reflect's serializer that give the same JSON.
pub(super) const JSON_OPTIONS: SerializeOptions = SerializeOptions::new()
    .stringify_64_bit_integers(false)
    .use_proto_field_name(true)
    .skip_default_fields(false);

/// Appends `message` as a JSON object to `out`. When `index` is given, pushes where each
/// field's name and value lie in `out` to it and says [`Written::Indexed`]; a well-known type,
/// whose JSON may not be an object, is [`Written::Text`].
pub fn write_message(
    message: &DynamicMessage,
    out: &mut Vec<u8>,
    mut index: Option<&mut Vec<Member>>,
) -> Result<Written, String> {
    let descriptor = message.descriptor();
    if descriptor.full_name().starts_with("google.protobuf.") {
        message
            .serialize_with_options(&mut serde_json::Serializer::new(&mut *out), &JSON_OPTIONS)
            .map_err(|e| e.to_string())?;
        return Ok(Written::Text);
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
        let name_at = out.len();
        write_string(out, field.name());
        let name = Span::new(name_at + 1..out.len() - 1);
        out.push(b':');
        let value_at = out.len();
        write_value(&message.get_field(&field), &field, out)?;
        if let Some(index) = index.as_deref_mut() {
            // A field name is an identifier: nothing in it is escaped.
            index.push(Member {
                name,
                value: Span::new(value_at..out.len()),
                escaped: false,
            });
        }
    }
    out.push(b'}');
    Ok(match index {
        Some(_) => Written::Indexed,
        None => Written::Text,
    })
}

/// Writes `value` of `field` (whose kind is looked up only for enums and maps).
fn write_value(value: &Value, field: &FieldDescriptor, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::I32(n) => write_number(out, *n),
        Value::I64(n) => write_number(out, *n),
        Value::U32(n) => write_number(out, *n),
        Value::U64(n) => write_number(out, *n),
        Value::F32(x) => write_float(out, f64::from(*x)),
        Value::F64(x) => write_float(out, *x),
        Value::String(text) => write_string(out, text),
        Value::Bytes(bytes) => {
            write_string(
                out,
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            );
        }
        Value::EnumNumber(number) => {
            match field.kind().as_enum().and_then(|e| e.get_value(*number)) {
                Some(symbol) => write_string(out, symbol.name()),
                None => write_number(out, *number),
            }
        }
        Value::Message(message) => {
            write_message(message, out, None)?;
        }
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, field, out)?;
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            let value_field = field
                .kind()
                .as_message()
                .map(|entry| entry.map_entry_value_field())
                .ok_or("a map without its entry message")?;
            let mut sorted: Vec<(String, &Value)> =
                entries.iter().map(|(k, v)| (key_text(k), v)).collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, &key);
                out.push(b':');
                write_value(item, &value_field, out)?;
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

fn write_float(out: &mut Vec<u8>, x: f64) {
    match serde_json::Number::from_f64(x) {
        // Writing to a Vec cannot fail.
        Some(number) => {
            let _ = write!(out, "{number}");
        }
        None if x.is_nan() => write_string(out, "NaN"),
        None if x > 0.0 => write_string(out, "Infinity"),
        None => write_string(out, "-Infinity"),
    }
}
