//! weir: a Kafka stream processor that runs user transforms as sandboxed WebAssembly
//! components, with host-owned state, event-time timers and dead-letter routing.
//!
//! See `ARCHITECTURE.md` for the data path and who owns what.

pub mod admin;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod error;
pub mod event;
pub mod failpoint;
pub mod flow;
pub mod histogram_buckets;
pub mod kafka;
pub mod kafka_client;
pub mod liveness;
pub mod partition_gauges;
pub mod pipeline;
pub mod runtime;
pub mod sinks;
pub mod source;
pub mod state;
pub mod storage;
pub mod synth;
pub mod telemetry;
pub mod tls;
pub mod trace_parent;
pub mod units;

pub use error::{Error, Result};
