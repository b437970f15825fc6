//! A feature-store sink: each record of its routes updates the Redis hash
//! `<prefix>:<entity key>` with the record's fields, through an epoch-fenced Lua script so
//! that redoing a committed epoch after a recovery never moves a feature backwards.

mod config;
mod sink;

pub use config::RedisSinkConfig;
pub use sink::{RedisSink, ping};
