//! Kafka: the consumer-group source and its daemon loop, the per-partition tasks, the epoch
//! coordinator, the instance's producer, the `kafka` sink, the dead-letter topic and its
//! replay.

pub mod config;
pub mod coordinator;
pub mod daemon;
pub mod dead_letter_topic;
pub mod headers;
pub mod producer;
pub mod replay;
pub mod sink;
pub mod task;
pub mod topic_reader;

pub use config::{KafkaSinkConfig, KafkaSourceConfig, StartPosition};
pub use daemon::{DaemonOptions, DaemonSummary};
pub use dead_letter_topic::DeadLetterTopic;
pub use producer::OutputProducer;
pub use sink::KafkaSink;
