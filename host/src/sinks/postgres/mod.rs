//! A sink writing routes to PostgreSQL tables, exactly once under checkpoints: an epoch's
//! rows and this source partition's epoch number commit in one database transaction.

mod config;
mod sink;
mod statements;

pub use config::{PostgresSinkConfig, TableConfig};
pub use sink::{PostgresSink, ping};
