//! Writes record values as lines, buffered, flushed on [`Sink::flush`].

use std::fs::File;
use std::io::{BufWriter, Write};

use super::NdjsonSinkConfig;
use crate::sinks::{Rejection, Sink, SinkError, SinkRecord, io_error};

/// An NDJSON file.
pub struct NdjsonSink {
    name: String,
    out: BufWriter<File>,
}

/// Creates `path` (and its folder), truncating it.
pub(crate) fn create_file(
    sink: &str,
    path: &std::path::Path,
) -> Result<BufWriter<File>, SinkError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_error(sink, format!("creating {}: {e}", dir.display())))?;
    }
    let file = File::create(path)
        .map_err(|e| io_error(sink, format!("creating {}: {e}", path.display())))?;
    Ok(BufWriter::with_capacity(1 << 16, file))
}

impl NdjsonSink {
    /// Opens the sink's file.
    pub fn new(name: &str, config: &NdjsonSinkConfig) -> Result<Self, SinkError> {
        Ok(NdjsonSink {
            name: name.to_string(),
            out: create_file(name, &config.path)?,
        })
    }
}

impl Sink for NdjsonSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[SinkRecord]) -> Result<Vec<Rejection>, SinkError> {
        for r in records {
            self.out
                .write_all(&r.value)
                .and_then(|()| self.out.write_all(b"\n"))
                .map_err(|e| io_error(&self.name, e))?;
        }
        Ok(Vec::new())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| io_error(&self.name, e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| io_error(&self.name, e))
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
}
