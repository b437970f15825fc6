//! A bounded source over records held in memory.

use std::collections::VecDeque;

use super::{Source, SourceError};

use crate::flow::SourceRecord;

/// Hands out the records it was given, then ends.
#[derive(Debug, Default)]
pub struct MemorySource {
    records: VecDeque<SourceRecord>,
}

impl MemorySource {
    /// A source over `records`.
    pub fn new(records: Vec<SourceRecord>) -> Self {
        MemorySource {
            records: records.into(),
        }
    }
}

impl Source for MemorySource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<SourceRecord>>, SourceError> {
        if self.records.is_empty() {
            return Ok(None);
        }
        let n = max.min(self.records.len());
        Ok(Some(self.records.drain(..n).collect()))
    }
}
