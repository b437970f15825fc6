//! In-memory [`Sink`] and [`DeadLetterSink`] for tests and benchmarks: everything written is
//! kept in a shared vector the test can read.

use std::sync::{Arc, Mutex};

use super::{DeadLetterSink, Rejection, Sink, SinkBatch, SinkError};

use crate::flow::{DeadLetter, SinkRecord};

/// Keeps every record written, in order.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    name: String,
    records: Arc<Mutex<Vec<SinkRecord>>>,
    /// When set, keeps only a count (for benchmarks).
    count_only: bool,
    count: Arc<Mutex<usize>>,
}

impl MemorySink {
    /// A sink called `name` that keeps records.
    pub fn new(name: &str) -> Self {
        MemorySink {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// A sink that only counts records.
    pub fn counting(name: &str) -> Self {
        MemorySink {
            name: name.to_string(),
            count_only: true,
            ..Default::default()
        }
    }

    /// Records written so far.
    pub fn records(&self) -> Vec<SinkRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many records were written.
    pub fn count(&self) -> usize {
        self.count.lock().map(|c| *c).unwrap_or_default()
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &str {
        &self.name
    }
    fn write(&mut self, records: &SinkBatch) -> Result<Vec<Rejection>, SinkError> {
        if let Ok(mut c) = self.count.lock() {
            *c += records.len();
        }
        if !self.count_only
            && let Ok(mut r) = self.records.lock()
        {
            r.extend(records.iter().map(|record| record.to_record()));
        }
        Ok(Vec::new())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Keeps every dead letter written.
#[derive(Debug, Clone, Default)]
pub struct MemoryDeadLetters {
    letters: Arc<Mutex<Vec<DeadLetter>>>,
}

impl MemoryDeadLetters {
    /// Dead letters written so far.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.letters.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        if let Ok(mut l) = self.letters.lock() {
            l.extend_from_slice(letters);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
