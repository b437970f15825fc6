//! Writes record values as lines, buffered, flushed on [`Sink::flush`].

use std::io::Write;

use super::NdjsonSinkConfig;
use crate::sinks::files::{OutputFiles, SharedFile};
use crate::sinks::{Rejection, Sink, SinkBatch, SinkError};

/// An NDJSON file, shared by the partitions of a run.
pub struct NdjsonSink {
    name: String,
    out: SharedFile,
}

impl NdjsonSink {
    /// Opens the sink's file (once per run: `files` shares it between partitions).
    pub fn new(
        name: &str,
        config: &NdjsonSinkConfig,
        files: &OutputFiles,
    ) -> Result<Self, SinkError> {
        Ok(NdjsonSink {
            name: name.to_string(),
            out: files.open(name, &config.path)?,
        })
    }
}

impl Sink for NdjsonSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &SinkBatch) -> Result<Vec<Rejection>, SinkError> {
        self.out.write(|out| {
            for r in records.iter() {
                out.write_all(r.value)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })?;
        Ok(Vec::new())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
}
