//! Turns a source record into what the stages see: checks that the value is a JSON object and
//! reads its key and event time. A record that fails becomes a dead letter with a reason that
//! starts with its class: `invalid json`, `not an object`, `missing key`, `invalid key`,
//! `missing time`, `invalid time`.

use serde::de::IgnoredAny;
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
}

impl RecordDecoder {
    /// A decoder for the given fields.
    pub fn new(config: &EventConfig) -> Self {
        RecordDecoder {
            key_field: config.key_field.clone(),
            time_field: config.time_field.clone(),
        }
    }

    /// Decodes one record, or says why it cannot be.
    pub fn decode(&self, record: &SourceRecord) -> Result<Decoded, String> {
        let value = &record.value;
        if let Err(e) = serde_json::from_slice::<IgnoredAny>(value) {
            return Err(format!("invalid json: {e}"));
        }
        if value.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("not an object: the record must be a JSON object".to_string());
        }
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
        Ok(Decoded { key, time })
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
        ];
        for (input, class) in cases {
            let err = decode(input).unwrap_err();
            assert!(err.starts_with(class), "{input}: {err}");
        }
    }
}
