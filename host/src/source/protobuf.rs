//! Protobuf records in a schema registry's wire format (magic byte 0, the schema id, the
//! message indexes, the message), turned into the JSON object the stages see. The registered
//! schema is a `.proto` file, as text or as a base64 `FileDescriptorProto` (what Confluent's
//! Python serializer registers); `protox` compiles it, with the well-known types
//! (`google/protobuf/*.proto`) at hand, and `prost-reflect` decodes the message.
//!
//! The JSON is protobuf's JSON mapping with the field names as the `.proto` writes them, every
//! field present (unset ones at their default) and 64-bit integers as numbers, so a `ts`
//! field reads the same as in a JSON topic: enums are their names, bytes base64, a
//! `google.protobuf.Timestamp` its RFC 3339 text, a map an object.

use std::collections::HashMap;

use prost_reflect::{DynamicMessage, FileDescriptor, MessageDescriptor};
use protox::Compiler;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use protox::prost::bytes::Buf;

use super::protobuf_json::write_message;
use super::registry::{ResolvedReferences, SchemaRegistry};
use super::schemas::{SchemaCache, ToJson, Undecodable, framed};
use crate::event::{Member, Written};

/// The name a registered schema given as text is compiled under.
const REGISTERED_FILE: &str = "registered.proto";

/// Decodes registry-framed Protobuf records to JSON.
pub struct ProtobufDecoder {
    files: SchemaCache<FileDescriptor>,
}

impl std::fmt::Debug for ProtobufDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtobufDecoder").finish_non_exhaustive()
    }
}

impl ProtobufDecoder {
    /// A decoder fetching schemas from `registry`.
    pub fn new(registry: SchemaRegistry) -> Self {
        ProtobufDecoder {
            files: SchemaCache::new(Some(registry), "protobuf", compile_with),
        }
    }

    /// A decoder that knows only the schemas [`ProtobufDecoder::preload`] gives it.
    pub fn offline() -> Self {
        ProtobufDecoder {
            files: SchemaCache::new(None, "protobuf", compile_with),
        }
    }

    /// Makes the schema `text` known as `id`, as if the registry had served it.
    pub fn preload(&self, id: u32, text: &str) -> Result<(), String> {
        self.files.preload(id, text)
    }
}

impl ToJson for ProtobufDecoder {
    fn to_json(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        members: &mut Vec<Member>,
    ) -> Result<Written, Undecodable> {
        let (id, mut body) = framed(bytes, "protobuf")?;
        let file = self.files.get(id)?;
        let indexes =
            message_indexes(&mut body).map_err(|e| format!("not protobuf: schema {id}: {e}"))?;
        let descriptor = message_at(&file, &indexes)
            .ok_or_else(|| format!("not protobuf: schema {id} has no message at {indexes:?}"))?;
        Ok(DynamicMessage::decode(descriptor, body)
            .map_err(|e| e.to_string())
            .and_then(|message| write_message(&message, out, Some(members)))
            .map_err(|e| format!("not protobuf: schema {id}: {e}"))?)
    }
}

/// `message` as JSON text (see [`super::protobuf_json`]).
fn json_of(message: &DynamicMessage, capacity: usize) -> Result<Vec<u8>, String> {
    let mut json = Vec::with_capacity(capacity);
    write_message(message, &mut json, None)?;
    Ok(json)
}

/// The messages of a file of length-delimited Protobuf messages (each after its varint
/// length, as `writeDelimitedTo` writes them) of `message` (default: the first) in the
/// `.proto` `schema_text`, as JSON texts.
pub fn delimited_to_json(
    bytes: &[u8],
    schema_text: &str,
    message: Option<&str>,
) -> Result<Vec<Vec<u8>>, String> {
    let file = compile(schema_text)?;
    let descriptor = match message {
        Some(name) => file
            .messages()
            .find(|m| m.full_name() == name || m.name() == name)
            .ok_or_else(|| format!("the schema has no message {name}"))?,
        None => file.messages().next().ok_or("the schema has no message")?,
    };
    let mut body = bytes;
    let mut records = Vec::new();
    while !body.is_empty() {
        let failed = |e: &dyn std::fmt::Display| format!("message {}: {e}", records.len());
        let length = protox::prost::decode_length_delimiter(&mut body).map_err(|e| failed(&e))?;
        let (message, rest) = body
            .split_at_checked(length)
            .ok_or_else(|| failed(&"shorter than its length"))?;
        body = rest;
        let message =
            DynamicMessage::decode(descriptor.clone(), message).map_err(|e| failed(&e))?;
        records.push(json_of(&message, length * 2).map_err(|e| failed(&e))?);
    }
    Ok(records)
}

/// The message indexes after the header: a zigzag varint count, then that many zigzag
/// varints; a count of 0 stands for `[0]`, the file's first message.
fn message_indexes(body: &mut &[u8]) -> Result<Vec<usize>, String> {
    let count = zigzag_index(body)?;
    if count == 0 {
        return Ok(vec![0]);
    }
    if count > body.remaining() {
        return Err(format!("{count} message indexes in a shorter record"));
    }
    (0..count).map(|_| zigzag_index(body)).collect()
}

/// One zigzag varint of the message indexes.
fn zigzag_index(body: &mut &[u8]) -> Result<usize, String> {
    let raw = protox::prost::encoding::decode_varint(body)
        .map_err(|_| "a corrupt message index".to_string())?;
    let value = (raw >> 1) as i64 ^ -((raw & 1) as i64);
    usize::try_from(value).map_err(|_| format!("a negative message index {value}"))
}

/// The message `indexes` points at: the file's `indexes[0]`th message, then nested ones.
fn message_at(file: &FileDescriptor, indexes: &[usize]) -> Option<MessageDescriptor> {
    let (first, nested) = indexes.split_first()?;
    let top = file.messages().nth(*first)?;
    nested
        .iter()
        .try_fold(top, |message, i| message.child_messages().nth(*i))
}

/// The registered schema `text` compiled: a `.proto` source, or a base64
/// `FileDescriptorProto`.
pub fn compile(text: &str) -> Result<FileDescriptor, String> {
    compile_with(text, &Vec::new())
}

/// The registered schema `text` compiled with the files it imports: the well-known types and
/// `references` (each by its import path).
pub fn compile_with(text: &str, references: &ResolvedReferences) -> Result<FileDescriptor, String> {
    let registered = file_of(REGISTERED_FILE, text)?;
    let name = registered.name().to_string();
    let mut files = HashMap::from([(name.clone(), registered)]);
    for (import, text) in references {
        files.insert(import.clone(), file_of(import, text)?);
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Registered(files));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = Compiler::with_file_resolver(resolver);
    compiler.open_file(&name).map_err(|e| e.to_string())?;
    compiler
        .descriptor_pool()
        .get_file_by_name(&name)
        .ok_or_else(|| format!("{name} is missing once compiled"))
}

/// A registered `.proto` as a file named `name` (a base64 descriptor keeps its own name).
fn file_of(name: &str, text: &str) -> Result<File, String> {
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
        Ok(bytes) => File::decode_file_descriptor_proto(bytes.as_slice())
            .map_err(|e| format!("{name}: a base64 schema that is not a FileDescriptorProto: {e}")),
        Err(_) => File::from_source(name, text).map_err(|e| e.to_string()),
    }
}

/// Serves the registered files to the compiler, by name.
struct Registered(HashMap<String, File>);

impl FileResolver for Registered {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| protox::Error::file_not_found(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::schemas::indexed_text;

    const CLICK: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        message Click {
            string event_id = 1;
            int64 ts = 2;
            enum Kind { VIEW = 0; BUY = 1; }
            Kind kind = 3;
            optional string referrer = 4;
            bytes payload = 5;
            google.protobuf.Timestamp sent = 6;
            message Item { string sku = 1; }
            repeated Item items = 7;
        }
    "#;

    /// `message` of schema 1 in the wire format, at `indexes` (already zigzag-encoded).
    fn framed_record(indexes: &[u8], message: &DynamicMessage) -> Vec<u8> {
        use protox::prost::Message;
        [&[0, 0, 0, 0, 1], indexes, &message.encode_to_vec()].concat()
    }

    #[test]
    fn messages_map_to_json_with_their_proto_names_and_numbers() {
        let decoder = ProtobufDecoder::offline();
        decoder.preload(1, CLICK).unwrap();
        let file = decoder.files.get(1).unwrap();
        let click = file.messages().next().unwrap();
        let json = serde_json::json!({
            "event_id": "e1", "ts": 1_767_261_600_000_i64, "kind": "BUY",
            "payload": "AQI=", "sent": "2026-01-01T10:00:00Z", "items": [{"sku": "a"}]
        });
        let message = DynamicMessage::deserialize(click, json.clone()).unwrap();
        let out = indexed_text(&decoder, &framed_record(&[0], &message));
        let mut expected = json;
        expected["referrer"] = serde_json::Value::Null;
        let actual: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            actual["ts"], 1_767_261_600_000_i64,
            "a number, not a string"
        );
        assert_eq!(
            actual.get("referrer"),
            None,
            "an unset optional field is absent"
        );
        expected.as_object_mut().unwrap().remove("referrer");
        assert_eq!(actual, expected);
    }

    #[test]
    fn nested_messages_are_found_by_their_indexes() {
        let decoder = ProtobufDecoder::offline();
        decoder.preload(1, CLICK).unwrap();
        let file = decoder.files.get(1).unwrap();
        let item = message_at(&file, &[0, 0]).unwrap();
        assert_eq!(item.full_name(), "shop.Click.Item");
        let message = DynamicMessage::deserialize(item, serde_json::json!({"sku": "b"})).unwrap();
        // Two indexes, 0 and 0: the count 2 is zigzag 4.
        let out = decoder
            .json_text(&framed_record(&[4, 0, 0], &message))
            .unwrap();
        assert_eq!(out, br#"{"sku":"b"}"#);
        let missing = decoder.json_text(&framed_record(&[2, 6], &message));
        assert_eq!(
            missing.unwrap_err().to_string(),
            "not protobuf: schema 1 has no message at [3]"
        );
    }

    #[test]
    fn a_base64_descriptor_is_a_schema_too() {
        use base64::Engine;
        use protox::prost::Message;
        let file = compile(CLICK).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(file.file_descriptor_proto().encode_to_vec());
        let again = compile(&encoded).unwrap();
        assert_eq!(again.messages().next().unwrap().full_name(), "shop.Click");
    }

    #[test]
    fn imports_of_referenced_schemas_resolve() {
        let common = "syntax = \"proto3\"; package shop; message Money { int64 cents = 1; }";
        let order = "syntax = \"proto3\"; package shop; import \"shop/common.proto\";\n\
                     message Order { string id = 1; Money total = 2; }";
        assert!(
            compile(order).is_err(),
            "shop/common.proto is unknown alone"
        );
        let references = vec![("shop/common.proto".to_string(), common.to_string())];
        let file = compile_with(order, &references).unwrap();
        let message = file.messages().next().unwrap();
        let json = serde_json::json!({"id": "o1", "total": {"cents": 250}});
        let decoded = DynamicMessage::deserialize(message, json.clone()).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&json_of(&decoded, 64).unwrap()).unwrap(),
            json
        );
    }

    #[test]
    fn the_json_equals_prost_reflects_serializer_with_the_same_options() {
        let text = format!(
            "{}\n{}",
            CLICK.replace(
                "repeated Item items = 7;",
                "repeated Item items = 7; map<string, int32> counts = 8; double ratio = 9; \
                 oneof pick { string a = 10; int32 b = 11; } Kind unset = 12;"
            ),
            ""
        );
        let file = compile(&text).unwrap();
        let click = file.messages().next().unwrap();
        let json = serde_json::json!({
            "event_id": "e\"1", "ts": -5, "kind": "BUY", "payload": "AQI=",
            "sent": "2026-01-01T10:00:00.5Z", "items": [{"sku": "a"}, {}],
            "counts": {"b": 2, "a": 1}, "ratio": "NaN", "b": 7, "referrer": ""
        });
        let message = DynamicMessage::deserialize(click, json).unwrap();
        let ours = json_of(&message, 0).unwrap();
        let mut theirs = Vec::new();
        message
            .serialize_with_options(
                &mut serde_json::Serializer::new(&mut theirs),
                &super::super::protobuf_json::JSON_OPTIONS,
            )
            .unwrap();
        let value = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap();
        assert_eq!(value(&ours), value(&theirs));
    }

    #[test]
    fn bad_bytes_and_bad_schemas_say_why() {
        let decoder = ProtobufDecoder::offline();
        decoder.preload(1, CLICK).unwrap();
        let garbled = decoder
            .json_text(&[0, 0, 0, 0, 1, 0, 0xff, 0xff])
            .unwrap_err()
            .to_string();
        assert!(garbled.starts_with("not protobuf: schema 1: "), "{garbled}");
        assert!(compile("message {").is_err());
    }
}
