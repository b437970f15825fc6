//! Turns a source record into what the stages see: parses it once into the [`EventArena`]
//! (which checks that the value is a JSON object of bounded size, valid UTF-8, without
//! repeated top-level fields, nested at most 127 deep) and reads its key and event time from
//! the index. A record that fails becomes a dead letter with a reason that starts with its
//! class: `too large`, `invalid json`, `not an object`, `missing key`, `invalid key`,
//! `missing time`, `invalid time`; for a registry-framed topic also `not avro`, `not protobuf`,
//! `not json` and `unknown schema id`.

use std::cell::Cell;
use std::sync::Arc;

use weir_sdk::json;

use super::time::rfc3339_millis;
use crate::config::EventConfig;
use crate::event::{EventArena, EventRef, Span};
use crate::flow::SourceRecord;
use crate::source::schemas::{ToJson, Undecodable};

/// Key and event time of a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Entity key.
    pub key: Vec<u8>,
    /// Event time, ms.
    pub time: i64,
}

/// Where a record's key comes from.
enum KeyFrom {
    /// These bytes of the key field's raw value.
    Field(std::ops::Range<usize>),
    /// The key field's string, unescaped.
    Decoded(Vec<u8>),
    /// The record key.
    Record,
}

/// Reads keys and event times per the `[event]` config.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    key_field: String,
    time_field: String,
    max_bytes: usize,
    max_future_ms: i64,
    /// The latest event time known to be allowed (wall clock + max_future when last read):
    /// times below it need no clock read, since the clock only moves on.
    allowed_until: Cell<i64>,
    /// Turns registry-framed values (Avro, Protobuf, JSON Schema) into JSON first.
    converter: Option<Arc<dyn ToJson>>,
}

impl RecordDecoder {
    /// A decoder for the given fields.
    pub fn new(config: &EventConfig) -> Self {
        RecordDecoder {
            key_field: config.key_field.clone(),
            time_field: config.time_field.clone(),
            max_bytes: config.max_bytes.0,
            max_future_ms: i64::try_from(config.max_future.0.as_millis()).unwrap_or(i64::MAX),
            allowed_until: Cell::new(i64::MIN),
            converter: None,
        }
    }

    /// The same decoder for values turned into JSON by `converter` first.
    pub fn with_converter(mut self, converter: Option<Arc<dyn ToJson>>) -> Self {
        self.converter = converter;
        self
    }

    fn check_time(&self, time: i64) -> Result<i64, String> {
        if time < 0 {
            return Err(format!(
                "invalid time: field `{}` is before 1970 ({time} ms)",
                self.time_field
            ));
        }
        if time <= self.allowed_until.get() {
            return Ok(time);
        }
        let now = chrono::Utc::now().timestamp_millis();
        self.allowed_until
            .set(now.saturating_add(self.max_future_ms));
        if time > self.allowed_until.get() {
            return Err(format!(
                "invalid time: field `{}` is {} s ahead of the wall clock, more than event.max_future",
                self.time_field,
                (time - now) / 1000
            ));
        }
        Ok(time)
    }

    /// Where the key is: in the key field's raw value (quotes stripped), else the record key.
    fn key(&self, raw: Option<&[u8]>, record: &SourceRecord) -> Result<KeyFrom, String> {
        match raw {
            Some(raw) if raw.first() == Some(&b'"') => {
                let inner = 1..raw.len() - 1;
                if inner.is_empty() {
                    return Err(format!(
                        "invalid key: field `{}` is an empty string",
                        self.key_field
                    ));
                }
                if !raw[inner.clone()].contains(&b'\\') {
                    return Ok(KeyFrom::Field(inner));
                }
                match json::decode_string(raw) {
                    Some(s) if !s.is_empty() => Ok(KeyFrom::Decoded(s.into_owned().into_bytes())),
                    _ => Err(format!(
                        "invalid key: field `{}` is an empty string",
                        self.key_field
                    )),
                }
            }
            Some(raw)
                if raw
                    .first()
                    .is_some_and(|b| *b == b'-' || b.is_ascii_digit()) =>
            {
                Ok(KeyFrom::Field(0..raw.len()))
            }
            Some(b"null") | None => match &record.key {
                Some(k) if !k.is_empty() => Ok(KeyFrom::Record),
                _ => Err(format!(
                    "missing key: no field `{}` and no record key",
                    self.key_field
                )),
            },
            Some(_) => Err(format!(
                "invalid key: field `{}` must be a string or a number",
                self.key_field
            )),
        }
    }

    /// The event time from the time field's raw value, else the record timestamp.
    fn time(&self, raw: Option<&[u8]>, record: &SourceRecord) -> Result<i64, String> {
        let time = match raw {
            Some(raw) if raw.first() == Some(&b'"') => {
                let text = json::decode_string(raw).unwrap_or_default();
                rfc3339_millis(&text).map_err(|e| {
                    format!(
                        "invalid time: field `{}` value {text:?} is not RFC 3339 ({e})",
                        self.time_field
                    )
                })?
            }
            Some(raw)
                if raw
                    .first()
                    .is_some_and(|b| *b == b'-' || b.is_ascii_digit()) =>
            {
                std::str::from_utf8(raw)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| {
                        format!(
                            "invalid time: field `{}` must be integer epoch milliseconds",
                            self.time_field
                        )
                    })?
            }
            Some(b"null") | None => record.timestamp.ok_or_else(|| {
                format!(
                    "missing time: no field `{}` and no record timestamp",
                    self.time_field
                )
            })?,
            Some(_) => {
                return Err(format!(
                    "invalid time: field `{}` must be an RFC 3339 string or epoch ms",
                    self.time_field
                ));
            }
        };
        self.check_time(time)
    }

    /// Parses one record into `arena`, or says why it cannot be (leaving `arena` as it was).
    pub fn decode_into(
        &self,
        record: &SourceRecord,
        arena: &mut EventArena,
    ) -> Result<EventRef, Undecodable> {
        let mark = arena.mark();
        let (members, bytes) = match &self.converter {
            Some(converter) => {
                arena.write_object(|out, members| converter.to_json(&record.value, out, members))?
            }
            None => {
                self.check_size(record.value.len())?;
                arena
                    .push_object(&record.value)
                    .map_err(|e| e.to_string())?
            }
        };
        let event = self
            .check_size(bytes.len())
            .and_then(|()| self.event_of(members, bytes, record, arena));
        if event.is_err() {
            arena.truncate(mark);
        }
        Ok(event?)
    }

    fn check_size(&self, len: usize) -> Result<(), String> {
        if len > self.max_bytes {
            return Err(format!(
                "too large: {len} bytes, more than event.max_bytes ({})",
                self.max_bytes
            ));
        }
        Ok(())
    }

    /// The event whose `members` and `bytes` are in `arena`, with its key and time.
    fn event_of(
        &self,
        members: Span,
        bytes: Span,
        record: &SourceRecord,
        arena: &mut EventArena,
    ) -> Result<EventRef, String> {
        let probe = EventRef {
            members,
            key: Span::default(),
            time: 0,
            verbatim: Some(bytes),
            appended: 0,
        };
        let key_span = arena.field_span(&probe, &self.key_field);
        let key = self.key(key_span.map(|s| &arena.bytes()[s.range()]), record)?;
        let time = self.time(arena.field(&probe, &self.time_field), record)?;
        let key = match (key, key_span) {
            // Most keys are a string in the value: point at it rather than copy it.
            (KeyFrom::Field(inner), Some(span)) => {
                Span::new(span.start as usize + inner.start..span.start as usize + inner.end)
            }
            (KeyFrom::Decoded(bytes), _) => arena.push_key(&bytes),
            (_, _) => arena.push_key(record.key.as_deref().unwrap_or_default()),
        };
        Ok(EventRef { key, time, ..probe })
    }

    /// Decodes one record on its own (tools and tests), or says why it cannot be.
    pub fn decode(&self, record: &SourceRecord) -> Result<Decoded, String> {
        let mut arena = EventArena::default();
        let event = self
            .decode_into(record, &mut arena)
            .map_err(|e| e.to_string())?;
        Ok(Decoded {
            key: arena.key(&event).to_vec(),
            time: event.time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Provenance;

    fn record(value: &str) -> SourceRecord {
        SourceRecord {
            key: None,
            value: value.as_bytes().to_vec(),
            timestamp: None,
            headers: Vec::new(),
            provenance: Provenance {
                source: "t".into(),
                partition: 0,
                offset: 0,
                trace: None,
            },
        }
    }

    fn decode(value: &str) -> Result<Decoded, String> {
        RecordDecoder::new(&EventConfig::default()).decode(&record(value))
    }

    #[test]
    fn reads_string_and_numeric_keys_and_times() {
        assert_eq!(
            decode(r#"{"user_id":"u1","ts":"2026-01-01T00:00:01.5Z"}"#),
            Ok(Decoded {
                key: b"u1".to_vec(),
                time: 1_767_225_601_500
            })
        );
        assert_eq!(
            decode(r#"{"user_id":42,"ts":1000}"#),
            Ok(Decoded {
                key: b"42".to_vec(),
                time: 1000
            })
        );
    }

    #[test]
    fn every_malformed_class_has_its_reason() {
        let cases = [
            ("{\"user_id\":", "invalid json"),
            ("[1,2]", "not an object"),
            (r#"{"ts":1}"#, "missing key"),
            (r#"{"user_id":"","ts":1}"#, "invalid key"),
            (r#"{"user_id":{"a":1},"ts":1}"#, "invalid key"),
            (r#"{"user_id":"u"}"#, "missing time"),
            (r#"{"user_id":"u","ts":"yesterday"}"#, "invalid time"),
            (r#"{"user_id":"u","ts":true}"#, "invalid time"),
            (r#"{"user_id":"u","ts":-5}"#, "invalid time"),
            (
                r#"{"user_id":"u","ts":"9999-01-01T00:00:00Z"}"#,
                "invalid time",
            ),
            (
                r#"{"user_id":"a","ts":1,"user_id":"b"}"#,
                "invalid json: duplicate field `user_id`",
            ),
            ("", "invalid json"),
            ("{} {}", "invalid json"),
            (
                &format!(
                    r#"{{"user_id":"u","ts":1,"a":{}{}}}"#,
                    "[".repeat(200),
                    "]".repeat(200)
                ),
                "invalid json: recursion limit exceeded",
            ),
        ];
        for (input, class) in cases {
            let err = decode(input).unwrap_err();
            assert!(err.starts_with(class), "{input}: {err}");
        }
        let mut bytes = record("");
        bytes.value = b"{\"user_id\":\"\xff\",\"ts\":1}".to_vec();
        let err = RecordDecoder::new(&EventConfig::default())
            .decode(&bytes)
            .unwrap_err();
        assert_eq!(err, "invalid json: not UTF-8 at byte 12");
    }
}
