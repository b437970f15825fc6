//! The dead-letter outputs: [`DeadLetterSink`], written to an NDJSON [`file`] or, with a Kafka
//! source, to a [`topic`] inside the epoch's transaction.

pub mod file;
mod selection;
pub mod topic;

pub use file::DeadLetterFile;
pub use selection::Selection;
pub use topic::DeadLetterTopic;

use super::SinkError;
use crate::flow::DeadLetter;

/// The dead-letter output.
///
/// Contract as for [`Sink`]: `write` may buffer, `flush` makes durable, `close` finalizes. A
/// dead-letter output refuses nothing.
pub trait DeadLetterSink: Send {
    /// Takes dead letters.
    fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError>;
    /// Makes everything written durable.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Flushes and releases resources.
    fn close(&mut self) -> Result<(), SinkError>;
}
