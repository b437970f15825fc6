//! Kafka: the consumer-group source and its daemon loop, the per-partition tasks, the epoch
//! coordinator and its transaction, and the dead-letter topic's replay. What weir produces
//! (the `kafka` sink, the dead-letter topic, the instance's producer) lives in `sinks`.

pub mod config;
pub mod coordinator;
pub mod daemon;
pub mod replay;
pub mod restore;
pub mod task;
pub mod topic_reader;
pub mod transaction;

pub use config::{KafkaSourceConfig, StartPosition, ValueFormat};
pub use daemon::{DaemonOptions, DaemonSummary};
