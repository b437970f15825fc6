//! The records that flow through a pipeline: [`SourceRecord`] as read, [`Provenance`] (where
//! it was read), [`SinkRecord`] as routed to a sink, and [`DeadLetter`] for a record that failed.

use std::sync::Arc;

/// One record as read, before decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// The record key, if the source has one.
    pub key: Option<Vec<u8>>,
    /// The raw value (expected to be a JSON object).
    pub value: Vec<u8>,
    /// The record timestamp in ms, if the source has one.
    pub timestamp: Option<i64>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Where it was read.
    pub provenance: Provenance,
}

/// Where a record was read from: enough to find it again and to detect duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Topic name, or file path for the file source.
    pub source: Arc<str>,
    /// Partition (0 for files).
    pub partition: i32,
    /// Offset in the partition (line number for files).
    pub offset: i64,
}

/// One record, owned (what tests and the in-memory sink keep; sinks get a [`SinkBatch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// The route it was sent on.
    pub route: Arc<str>,
    /// Entity key.
    pub key: Vec<u8>,
    /// The JSON value.
    pub value: Vec<u8>,
    /// Event time, ms.
    pub time: i64,
    /// The source record it derives from; `None` for records made by timers.
    pub provenance: Option<Provenance>,
}

/// A record that could not be processed, with why and where.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Why, e.g. `invalid json: ...`, `trap: ...`, `timeout`, `memory limit`.
    pub reason: String,
    /// Where it failed: `decode`, a stage name, or `sink:<name>`.
    pub stage: String,
    /// The plugin and its sha256, when a plugin was involved.
    pub plugin: Option<(String, String)>,
    /// Where the original record came from.
    pub provenance: Option<Provenance>,
    /// The original record key, if any.
    pub key: Option<Vec<u8>>,
    /// The original record value (for replay), or the stage's value for timer outputs.
    pub value: Vec<u8>,
    /// The original record headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Event time if it was known.
    pub time: Option<i64>,
}
