//! The dead-letter output as an NDJSON file: one object per dead letter with the reason, the
//! stage, the plugin and its hash, where the record came from, when it failed, and the
//! original record (as JSON when it parses, else as a string).

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use super::DeadLetterSink;
use crate::flow::DeadLetter;
use crate::sinks::SinkError;
use crate::sinks::files::{OutputFiles, SharedFile};

/// Dead letters appended to a file (shared by the partitions of a run).
pub struct DeadLetterFile {
    out: SharedFile,
}

impl DeadLetterFile {
    /// Opens the file (once per run: `files` shares it between partitions).
    pub fn create(path: &Path, files: &OutputFiles) -> Result<Self, SinkError> {
        Ok(DeadLetterFile {
            out: files.open("dead_letter", path)?,
        })
    }
}

/// The JSON object written for one dead letter.
pub fn to_json(letter: &DeadLetter) -> Value {
    let value = serde_json::from_slice::<Value>(&letter.value)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&letter.value).into_owned()));
    json!({
        "reason": letter.reason,
        "class": letter.class().as_str(),
        "stage": letter.stage,
        "plugin": letter.plugin.as_ref().map(|p| &p.0),
        "plugin_sha256": letter.plugin.as_ref().map(|p| &p.1),
        "source": letter.provenance.as_ref().map(|p| json!({
            "source": &*p.source, "partition": p.partition, "offset": p.offset,
        })),
        "key": letter.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "event_time": letter.time,
        "failed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "record": value,
    })
}

impl DeadLetterSink for DeadLetterFile {
    fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        self.out.write(|out| {
            for letter in letters {
                serde_json::to_writer(&mut *out, &to_json(letter))?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
}
