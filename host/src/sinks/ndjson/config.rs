//! Settings of the NDJSON sink.

use std::path::PathBuf;

use serde::Deserialize;

/// An NDJSON file sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonSinkConfig {
    /// The routes this sink takes.
    pub routes: Vec<String>,
    /// Output file; created (with its folders) or truncated at start.
    pub path: PathBuf,
}
