//! The `kafka` sink and what it shares with the dead-letter topic: the instance's one producer
//! (transactional under exactly-once) and the headers weir adds to what it produces.

mod config;
pub mod headers;
pub mod producer;
mod registered_output;
mod sink;

pub use config::{KafkaSinkConfig, OutputFormat, SubjectStrategy};
pub use producer::{OutputProducer, ProducerSettings};
pub use sink::KafkaSink;
