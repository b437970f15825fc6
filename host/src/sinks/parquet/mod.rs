//! A sink writing Parquet files (zstd) under Hive-style `dt=YYYY-MM-DD/hour=HH/` folders by
//! event time, decoding JSON into the Arrow schema declared in the config. Records that do not
//! fit the schema are refused with the field named and go to the dead-letter output.

mod compose;
mod config;
mod schema;
mod sink;

pub use compose::concat;
pub use config::{ColumnConfig, ParquetSinkConfig};
pub use schema::{parse_type, schema_of};
pub use sink::{ParquetSink, partition_of};
