//! A sink writing each record's JSON value as one line of a file.

mod config;
pub(crate) mod sink;

pub use config::NdjsonSinkConfig;
pub use sink::NdjsonSink;
