//! Sources: where records come from. One trait, [`Source`]; the NDJSON [`file`] source runs a
//! pipeline without Kafka, and [`memory`] feeds tests and benchmarks. Records framed by a
//! schema [`registry`] ([`schemas`]) are turned into JSON first: [`avro`], [`protobuf`],
//! [`json_schema`].

pub mod avro;
mod avro_stream;
pub mod file;
pub mod json_schema;
pub mod memory;
pub mod protobuf;
mod protobuf_json;
pub mod registry;
pub mod schemas;

use crate::flow::SourceRecord;

/// A source failed (not one record).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading failed.
    #[error("source {source_name}: {reason}")]
    Io {
        /// The source (file path or topic).
        source_name: String,
        /// What failed.
        reason: String,
    },
}

/// A stream of records in batches.
///
/// Contract: `next_batch` returns up to `max` records in source order; `Ok(None)` means a
/// bounded source has ended (an unbounded one never returns it); an empty batch means nothing
/// arrived for now.
pub trait Source: Send {
    /// The next batch of records.
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<SourceRecord>>, SourceError>;
}
