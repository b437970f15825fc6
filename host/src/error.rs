//! The crate-level error: which part failed, with the part's own error inside.

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::runtime::RuntimeError;
use crate::sinks::SinkError;
use crate::source::SourceError;
use crate::state::SnapshotError;

/// Anything that stops a pipeline. Per-record problems are dead letters, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin or the wasm engine failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A sink or the dead-letter output failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A state snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Reading or writing a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A stage's result, checked when it returned, could not be applied to the events: a
    /// host fault, not a plugin's.
    #[error("applying a stage's output: {0}")]
    Output(String),
    /// Outputs could not be committed (and nothing was).
    #[error("commit failed: {0}")]
    Commit(String),
    /// A dead-letter replay cannot go on without replaying something twice.
    #[error("dlq replay: {0}")]
    Replay(String),
}

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `text` on one line: every run of whitespace, line breaks included, becomes one space (a
/// library's multi-line debug dump, such as wasmparser's byte lists, in a log line or a
/// metric-free reason).
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
