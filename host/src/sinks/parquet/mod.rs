//! A sink writing Parquet files (zstd) under Hive-style `dt=YYYY-MM-DD/hour=HH/` folders by
//! event time, building the Arrow columns declared in the config from the host's index of each
//! record. Records that do not fit the schema are refused with the field named and go to the
//! dead-letter output. Complete hours get a `_SUCCESS` marker when configured.

mod columns;
mod completion;
mod compose;
mod config;
mod delta_compact;
mod delta_log;
mod delta_partitions;
mod delta_table;
mod freshness;
mod registry_columns;
mod schema;
mod sink;

pub use completion::{CompletionConfig, LateRows, Writers};
pub use compose::concat;
pub use config::{ColumnConfig, ExtraFields, ParquetSinkConfig};
pub use delta_compact::{CompactOptions, CompactReport, compact};
pub use registry_columns::columns_of_subject;
pub use schema::{parse_type, schema_of};
pub use sink::{ParquetSink, partition_of};
