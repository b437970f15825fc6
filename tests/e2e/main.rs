//! End-to-end tests of weir: real plugins built from source for wasm32-wasip2, the real
//! binary, real files, and an independent Parquet reader (DuckDB in a Python venv).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod airflow;
mod bundled;
mod cli;
mod configs;
mod deploy;
mod example;
mod file_source;
mod guest_limits;
mod harness;
mod isolation;
mod kafka;
mod lake_completion;
mod languages;
mod malformed;
mod plugin_store;
mod registry;
mod sinks;
mod state_ttl;
