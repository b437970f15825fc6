//! The schema registry's wire format as every registry-framed decoder reads it: the header
//! (magic byte 0, the schema id as 4 big-endian bytes) and the writer schemas it names, fetched
//! once per id and kept for the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::registry::{ResolvedReferences, SchemaRegistry};
use crate::event::{Member, ParseError, Written};

/// Turns a topic's registry-framed record values into the JSON objects the stages read.
pub trait ToJson: Send + Sync + std::fmt::Debug {
    /// Appends the record `bytes` to `out` as one JSON object, or says why it is not a record
    /// of a schema the registry knows, or that the registry cannot be asked now. A converter
    /// that writes the object itself pushes its top-level members to `members` as it writes
    /// them (see [`Written`]).
    fn to_json(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        members: &mut Vec<Member>,
    ) -> Result<Written, Undecodable>;

    /// The record `bytes` as a JSON text of its own (tools and tests).
    fn json_text(&self, bytes: &[u8]) -> Result<Vec<u8>, Undecodable> {
        let mut out = Vec::new();
        self.to_json(bytes, &mut out, &mut Vec::new())?;
        Ok(out)
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecodable {
    /// The record is at fault: it is a dead letter with this reason.
    Record(String),
    /// The registry could not be asked for the record's schema (its breaker is open or the
    /// tries failed): nobody's record is at fault, and the partition rewinds and retries.
    SchemaUnavailable(String),
}

impl From<String> for Undecodable {
    fn from(reason: String) -> Self {
        Undecodable::Record(reason)
    }
}

impl From<ParseError> for Undecodable {
    fn from(error: ParseError) -> Self {
        Undecodable::Record(error.to_string())
    }
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undecodable::Record(reason) => f.write_str(reason),
            Undecodable::SchemaUnavailable(reason) => {
                write!(f, "schema registry unavailable: {reason}")
            }
        }
    }
}

/// The schema id and the body of a registry-framed record of `format` (`avro`, …).
pub fn framed<'a>(bytes: &'a [u8], format: &str) -> Result<(u32, &'a [u8]), String> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [] => Err(format!("not {format}: an empty value")),
        [magic, ..] if *magic != 0 => Err(format!(
            "not {format}: magic byte {magic}, not 0 (the schema registry's wire format)"
        )),
        _ => Err(format!(
            "not {format}: shorter than the registry's 5-byte header"
        )),
    }
}

/// Schemas by id (or why an id has none), hashed fast: every record looks its id up.
type Known<T> = HashMap<u32, Result<Arc<T>, String>, foldhash::fast::RandomState>;

/// Writer schemas of one format by id, parsed once.
pub struct SchemaCache<T> {
    /// Where unknown ids are looked up; without one, only preloaded schemas are known.
    registry: Option<SchemaRegistry>,
    /// Schemas kept, at most this many.
    cache_size: usize,
    /// The format's name in reasons (`avro`) and in the registry's `schemaType` (`AVRO`).
    format: &'static str,
    /// Makes a schema usable from its registered text and its references' texts.
    parse: fn(&str, &ResolvedReferences) -> Result<T, String>,
    known: Mutex<Known<T>>,
}

impl<T> SchemaCache<T> {
    /// A cache of `format` schemas fetched from `registry` (or only preloaded, without one).
    pub fn new(
        registry: Option<SchemaRegistry>,
        format: &'static str,
        parse: fn(&str, &ResolvedReferences) -> Result<T, String>,
    ) -> Self {
        SchemaCache {
            cache_size: registry
                .as_ref()
                .map_or(usize::MAX, SchemaRegistry::cache_size),
            registry,
            format,
            parse,
            known: Mutex::default(),
        }
    }

    /// Makes the schema `text` known as `id`, as if the registry had served it.
    pub fn preload(&self, id: u32, text: &str) -> Result<(), String> {
        let schema = (self.parse)(text, &Vec::new()).map_err(|e| format!("schema {id}: {e}"))?;
        self.lock().insert(id, Ok(Arc::new(schema)));
        Ok(())
    }

    /// The writer schema `id`, fetched on first use.
    pub fn get(&self, id: u32) -> Result<Arc<T>, Undecodable> {
        if let Some(known) = self.lock().get(&id) {
            return Ok(known.clone()?);
        }
        let Some(registry) = &self.registry else {
            return Err(format!("unknown schema id {id}").into());
        };
        let format = self.format;
        let registered = registry
            .schema(id)
            .map_err(Undecodable::SchemaUnavailable)?;
        let made = match registered {
            Some(registered) if !registered.kind.eq_ignore_ascii_case(format) => Err(format!(
                "not {format}: schema {id} is {}",
                registered.kind.to_lowercase()
            )),
            Some(registered) => registry
                .references(&registered.references)
                .map_err(Undecodable::SchemaUnavailable)?
                .and_then(|references| (self.parse)(&registered.text, &references))
                .map(Arc::new)
                .map_err(|e| format!("not {format}: schema {id}: {e}")),
            None => Err(format!("unknown schema id {id}")),
        };
        let mut known = self.lock();
        if known.len() < self.cache_size {
            known.insert(id, made.clone());
        }
        Ok(made?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known<T>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What `converter` makes of `bytes`, with the check that the members it indexed while
/// writing are the ones the parser finds in its text.
#[cfg(test)]
pub(crate) fn indexed_text(converter: &dyn ToJson, bytes: &[u8]) -> Vec<u8> {
    use crate::event::EventArena;
    let mut written = EventArena::default();
    let (members, text) = written
        .write_object(|out, members| converter.to_json(bytes, out, members))
        .unwrap();
    let text = written.bytes()[text.range()].to_vec();
    let mut parsed = EventArena::default();
    let (parsed_members, _) = parsed.push_object(&text).unwrap();
    assert_eq!(
        written.members_in(members),
        parsed.members_in(parsed_members),
        "{}",
        String::from_utf8_lossy(&text)
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_header_names_the_schema_and_bad_ones_say_why() {
        assert_eq!(
            framed(&[0, 0, 0, 1, 2, 9], "avro").unwrap(),
            (258, &[9][..])
        );
        assert!(
            framed(b"{\"a\":1}", "avro")
                .unwrap_err()
                .starts_with("not avro: magic byte 123")
        );
        assert!(
            framed(&[0, 0, 1], "protobuf")
                .unwrap_err()
                .starts_with("not protobuf: shorter than the registry's 5-byte header")
        );
        assert!(framed(&[], "avro").unwrap_err().contains("empty"));
    }

    #[test]
    fn an_offline_cache_knows_only_what_was_preloaded() {
        let cache = SchemaCache::new(None, "avro", |text, _| Ok(text.len()));
        cache.preload(7, "abc").unwrap();
        assert_eq!(*cache.get(7).unwrap(), 3);
        assert_eq!(
            cache.get(8).unwrap_err(),
            Undecodable::Record("unknown schema id 8".into())
        );
    }
}
