//! The dead-letter output as an NDJSON file: one object per dead letter with the reason, the
//! stage, the plugin and its hash, where the record came from, when it failed, and the
//! original record (as JSON when it parses, else as a string).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{Value, json};

use super::ndjson::sink::create_file;
use super::{DeadLetter, DeadLetterSink, SinkError, io_error};

/// Dead letters appended to a file.
pub struct DeadLetterFile {
    out: BufWriter<File>,
}

impl DeadLetterFile {
    /// Creates (or truncates) the file.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        Ok(DeadLetterFile {
            out: create_file("dead_letter", path)?,
        })
    }
}

/// The JSON object written for one dead letter.
pub fn to_json(letter: &DeadLetter) -> Value {
    let value = serde_json::from_slice::<Value>(&letter.value)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&letter.value).into_owned()));
    json!({
        "reason": letter.reason,
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
        for letter in letters {
            serde_json::to_writer(&mut self.out, &to_json(letter))
                .map_err(|e| io_error("dead_letter", e))?;
            self.out
                .write_all(b"\n")
                .map_err(|e| io_error("dead_letter", e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| io_error("dead_letter", e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| io_error("dead_letter", e))
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
}
