//! `weir dlq list` and `weir dlq show`: what is in the dead-letter output (the topic, or the
//! NDJSON file), selected by reason, stage, class and time: counts by where and why, or the
//! dead letters themselves.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{Context, Result, bail};
use rdkafka::message::Message;
use serde_json::{Value, json};

use crate::config::{PipelineConfig, SourceConfig};
use crate::kafka::replay::{dlq_reader, header};
use crate::kafka::topic_reader::read_to_end;
use crate::pipeline::reason_class;
use crate::sinks::dead_letter::Selection;
use crate::sinks::kafka::headers::{
    DLQ_CLASS, DLQ_EVENT_TIME, DLQ_REASON, DLQ_STAGE, SOURCE_OFFSET, SOURCE_PARTITION,
    SOURCE_TOPIC, to_pairs,
};

/// One dead letter as read back.
#[derive(Debug, Clone)]
pub struct Letter {
    /// Where it is kept: `topic/partition/offset` or `file:line`.
    pub at: String,
    /// When it was written (ms).
    pub written_ms: i64,
    /// Where it failed.
    pub stage: String,
    /// Its class (`decode`, `plugin`, `trap`, ...).
    pub class: String,
    /// Why.
    pub reason: String,
    /// The source record: `topic/partition/offset`, when known.
    pub source: Option<String>,
    /// The record's event time (ms), when known.
    pub event_time: Option<i64>,
    /// The record's key.
    pub key: Option<String>,
    /// The record: its JSON, or its text when it is not JSON.
    pub record: Value,
}

impl Letter {
    fn to_json(&self) -> Value {
        let written = chrono::DateTime::from_timestamp_millis(self.written_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        json!({
            "at": self.at, "written": written, "stage": self.stage, "class": self.class,
            "reason": self.reason, "source": self.source, "event_time": self.event_time,
            "key": self.key, "record": self.record,
        })
    }
}

/// The record bytes as JSON, or as a string when they are not JSON.
fn record_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Hands `each` the dead letters of `config`'s dead-letter output that `selection` takes, in
/// order, one at a time (a topic of millions is not held in memory).
pub fn read(
    config: &PipelineConfig,
    selection: &Selection,
    mut each: impl FnMut(Letter),
) -> Result<()> {
    let mut keep = |letter: Letter| {
        if selection.takes(
            &letter.reason,
            &letter.stage,
            &letter.class,
            letter.written_ms,
        ) {
            each(letter);
        }
    };
    match (
        &config.dead_letter.topic,
        &config.dead_letter.path,
        &config.source,
    ) {
        (Some(topic), _, SourceConfig::Kafka(source)) => {
            let consumer =
                dlq_reader(source, "view").context("dead_letter.topic: creating a consumer")?;
            read_to_end(&consumer, topic, config.checkpoint.timeout.0, |message| {
                let headers = message.headers().map(to_pairs).unwrap_or_default();
                let text = |name: &str| header(&headers, name).map(str::to_string);
                let source = match (
                    text(SOURCE_TOPIC),
                    text(SOURCE_PARTITION),
                    text(SOURCE_OFFSET),
                ) {
                    (Some(t), Some(p), Some(o)) => Some(format!("{t}/{p}/{o}")),
                    _ => None,
                };
                keep(Letter {
                    at: format!("{topic}/{}/{}", message.partition(), message.offset()),
                    written_ms: message.timestamp().to_millis().unwrap_or(0),
                    stage: text(DLQ_STAGE).unwrap_or_default(),
                    class: text(DLQ_CLASS).unwrap_or_default(),
                    reason: text(DLQ_REASON).unwrap_or_default(),
                    source,
                    event_time: text(DLQ_EVENT_TIME).and_then(|t| t.parse().ok()),
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    record: record_value(message.payload().unwrap_or_default()),
                });
                Ok(())
            })?;
        }
        (Some(_), _, _) => bail!("dead_letter.topic: reading it needs a [source.kafka] table"),
        (None, Some(path), _) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("dead_letter.path {}", path.display()))?;
            for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                let Ok(letter) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let text = |name: &str| letter[name].as_str().unwrap_or_default().to_string();
                let source = &letter["source"];
                keep(Letter {
                    at: format!("{}:{}", path.display(), n + 1),
                    written_ms: chrono::DateTime::parse_from_rfc3339(&text("failed_at"))
                        .map_or(0, |t| t.timestamp_millis()),
                    stage: text("stage"),
                    class: text("class"),
                    reason: text("reason"),
                    source: source["source"]
                        .as_str()
                        .map(|s| format!("{s}/{}/{}", source["partition"], source["offset"])),
                    event_time: letter["event_time"].as_i64(),
                    key: letter["key"].as_str().map(str::to_string),
                    record: letter["record"].clone(),
                });
            }
        }
        (None, None, _) => bail!("dead_letter: the config names no path or topic"),
    }
    Ok(())
}

/// Dead letters counted by stage, class and reason (the text before its first `:`), with the
/// first and last time each was written.
#[derive(Debug, Default)]
pub struct Counts {
    groups: BTreeMap<(String, String, String), (u64, i64, i64)>,
    total: u64,
}

impl Counts {
    /// Counts one more.
    pub fn add(&mut self, letter: &Letter) {
        let key = (
            letter.stage.clone(),
            letter.class.clone(),
            reason_class(&letter.reason).to_string(),
        );
        let group = self.groups.entry(key).or_insert((0, i64::MAX, i64::MIN));
        group.0 += 1;
        group.1 = group.1.min(letter.written_ms);
        group.2 = group.2.max(letter.written_ms);
        self.total += 1;
    }

    /// How many were counted.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// The counts as a table, one line a group, most frequent first.
pub fn list(counts: &Counts) -> Vec<String> {
    let mut rows: Vec<_> = counts.groups.iter().collect();
    rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    let mut lines = vec![format!(
        "{:>8}  {:<16} {:<14} {:<40} {:<20} {}",
        "count", "stage", "class", "reason", "first", "last"
    )];
    for ((stage, class, reason), (count, first, last)) in rows {
        lines.push(format!(
            "{count:>8}  {stage:<16} {class:<14} {reason:<40} {:<20} {}",
            time(*first),
            time(*last)
        ));
    }
    lines
}

/// A dead letter as one JSON line.
pub fn show(letter: &Letter) -> String {
    letter.to_json().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(stage: &str, class: &str, reason: &str, written_ms: i64) -> Letter {
        Letter {
            at: "dlq.ndjson:1".into(),
            written_ms,
            stage: stage.into(),
            class: class.into(),
            reason: reason.into(),
            source: Some("clicks/0/7".into()),
            event_time: Some(5),
            key: Some("u1".into()),
            record: json!({"user_id": "u1"}),
        }
    }

    #[test]
    fn counts_by_stage_class_and_reason_most_frequent_first_and_shows_json_lines() {
        let letters = [
            letter("decode", "decode", "invalid json: at 3", 1_000),
            letter("ip-geo", "trap", "trap: unreachable in f", 2_000),
            letter("decode", "decode", "invalid json: at 9", 3_000),
        ];
        let mut counts = Counts::default();
        letters.iter().for_each(|l| counts.add(l));
        assert_eq!(counts.total(), 3);
        let lines = list(&counts);
        assert!(lines[0].contains("count") && lines[0].contains("reason"));
        assert!(lines[1].trim_start().starts_with("2  decode"), "{lines:?}");
        assert!(lines[1].contains("invalid json") && lines[1].contains("1970-01-01T00:00:03Z"));
        assert!(lines[2].contains("trap") && lines[2].contains("ip-geo"));
        let first: Value = serde_json::from_str(&show(&letters[0])).unwrap();
        assert_eq!(first["reason"], "invalid json: at 3");
        assert_eq!(first["source"], "clicks/0/7");
        assert_eq!(first["record"]["user_id"], "u1");
    }
}
