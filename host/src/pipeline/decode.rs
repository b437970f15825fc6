//! Turns a source record into what the stages see: checks that the value is a JSON object of
//! bounded size, valid UTF-8 and without repeated top-level fields, and reads its key and
//! event time. A record that fails becomes a dead letter with a reason that starts with its
//! class: `too large`, `invalid json`, `not an object`, `missing key`, `invalid key`,
//! `missing time`, `invalid time`.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use foldhash::fast::RandomState;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use weir_sdk::json;

use crate::config::EventConfig;
use crate::source::SourceRecord;

/// Key and event time of a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Entity key.
    pub key: Vec<u8>,
    /// Event time, ms.
    pub time: i64,
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
        }
    }

    /// Checks the value is one JSON object, valid UTF-8, with each top-level field once (the
    /// host and the plugins must agree on which `user_id` a record has).
    fn check_object(&self, value: &[u8]) -> Result<(), String> {
        if value.len() > self.max_bytes {
            return Err(format!(
                "too large: {} bytes, more than event.max_bytes ({})",
                value.len(),
                self.max_bytes
            ));
        }
        if let Err(e) = std::str::from_utf8(value) {
            return Err(format!(
                "invalid json: not UTF-8 at byte {}",
                e.valid_up_to()
            ));
        }
        if value.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return match serde_json::from_slice::<IgnoredAny>(value) {
                Ok(_) => Err("not an object: the record must be a JSON object".to_string()),
                Err(e) => Err(format!("invalid json: {e}")),
            };
        }
        let mut de = serde_json::Deserializer::from_slice(value);
        de.deserialize_map(UniqueFields)
            .and_then(|()| de.end())
            .map_err(|e| format!("invalid json: {e}"))
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

    /// Decodes one record, or says why it cannot be.
    pub fn decode(&self, record: &SourceRecord) -> Result<Decoded, String> {
        let value = &record.value;
        self.check_object(value)?;
        let key = match json::find_raw(value, &self.key_field) {
            Some(raw) if raw.first() == Some(&b'"') => match json::decode_string(raw) {
                Some(s) if !s.is_empty() => s.into_owned().into_bytes(),
                _ => {
                    return Err(format!(
                        "invalid key: field `{}` is an empty string",
                        self.key_field
                    ));
                }
            },
            Some(raw)
                if raw
                    .first()
                    .is_some_and(|b| *b == b'-' || b.is_ascii_digit()) =>
            {
                raw.to_vec()
            }
            Some(b"null") | None => match &record.key {
                Some(k) if !k.is_empty() => k.clone(),
                _ => {
                    return Err(format!(
                        "missing key: no field `{}` and no record key",
                        self.key_field
                    ));
                }
            },
            Some(_) => {
                return Err(format!(
                    "invalid key: field `{}` must be a string or a number",
                    self.key_field
                ));
            }
        };
        let time = match json::find_raw(value, &self.time_field) {
            Some(raw) if raw.first() == Some(&b'"') => {
                let text = json::decode_string(raw).unwrap_or_default();
                chrono::DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.timestamp_millis())
                    .map_err(|e| {
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
        Ok(Decoded {
            key,
            time: self.check_time(time)?,
        })
    }
}

/// Visits a JSON object's top level, refusing a field name that appears twice.
struct UniqueFields;

/// Any JSON value, visited (not kept) so that serde_json's nesting limit (128) applies:
/// `IgnoredAny` skips values without it.
struct NestedValue;

impl<'de> de::Deserialize<'de> for NestedValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NestedValue)
    }
}

impl<'de> Visitor<'de> for NestedValue {
    type Value = NestedValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(NestedValue)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(NestedValue)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(NestedValue)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(NestedValue)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(NestedValue)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(NestedValue)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NestedValue>()?.is_some() {}
        Ok(NestedValue)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<NestedValue>()?;
        }
        Ok(NestedValue)
    }
}

/// A field name, borrowed from the input when it has no escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

impl<'de> Visitor<'de> for UniqueFields {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A few names are compared in a list; many go into a set, so a record with 100k
        // fields costs linear time, not quadratic.
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>, RandomState> = HashSet::default();
        while let Some(Name(name)) = map.next_key()? {
            let seen = if many.is_empty() && few.len() < 32 {
                few.contains(&name)
            } else {
                many.extend(few.drain(..));
                many.contains(&name)
            };
            if seen {
                return Err(de::Error::custom(format_args!("duplicate field `{name}`")));
            }
            map.next_value::<NestedValue>()?;
            if many.is_empty() {
                few.push(name);
            } else {
                many.insert(name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::Provenance;

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
