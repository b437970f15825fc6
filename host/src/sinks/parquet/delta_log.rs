//! A Delta Lake transaction log over a Parquet sink's files (`type = "delta"`): the files an
//! epoch publishes are added to the table in one Delta commit that also records the epoch's
//! sequence number as the writer's application transaction (`txn`: app id and version), so a
//! redone commit adds nothing twice. The table is created at the first commit, partitioned
//! by `dt` (date) and `hour` (integer) like the folders.

use std::collections::HashMap;

use arrow_schema::{DataType as ArrowType, TimeUnit};
use deltalake_core::kernel::{Action, Add, ArrayType, DataType, StructField, StructType};

use super::completion::hour_of_folder;
use super::delta_table::{Table, TableLocation};
use crate::sinks::{SinkError, io_error, now_ms};

/// One writer's log of a Delta table.
pub struct DeltaLog {
    sink: String,
    app_id: String,
    table: Table,
}

/// The Delta type of an Arrow column type the Parquet sink writes.
fn delta_type(arrow: &ArrowType) -> Result<DataType, String> {
    Ok(match arrow {
        ArrowType::Utf8 => DataType::STRING,
        ArrowType::Boolean => DataType::BOOLEAN,
        ArrowType::Int32 => DataType::INTEGER,
        ArrowType::Int64 => DataType::LONG,
        ArrowType::Float32 => DataType::FLOAT,
        ArrowType::Float64 => DataType::DOUBLE,
        ArrowType::Date32 => DataType::DATE,
        ArrowType::Timestamp(TimeUnit::Millisecond | TimeUnit::Microsecond, Some(_)) => {
            DataType::TIMESTAMP
        }
        ArrowType::Timestamp(TimeUnit::Millisecond | TimeUnit::Microsecond, None) => {
            DataType::TIMESTAMP_NTZ
        }
        ArrowType::List(item) => {
            ArrayType::new(delta_type(item.data_type())?, item.is_nullable()).into()
        }
        ArrowType::Struct(fields) => DataType::Struct(Box::new(
            StructType::try_new(
                fields
                    .iter()
                    .map(|f| {
                        Ok(StructField::new(
                            f.name(),
                            delta_type(f.data_type())?,
                            f.is_nullable(),
                        ))
                    })
                    .collect::<Result<Vec<_>, String>>()?,
            )
            .map_err(|e| e.to_string())?,
        )),
        other => return Err(format!("no Delta type for {other}")),
    })
}

/// The Delta columns of a Parquet sink's schema, with the partition columns `dt` and `hour`.
pub fn delta_schema(schema: &arrow_schema::Schema) -> Result<Vec<StructField>, String> {
    let mut columns = Vec::with_capacity(schema.fields().len() + 2);
    for field in schema.fields() {
        let data_type =
            delta_type(field.data_type()).map_err(|e| format!("{}: {e}", field.name()))?;
        columns.push(StructField::new(
            field.name(),
            data_type,
            field.is_nullable(),
        ));
    }
    columns.push(StructField::not_null("dt", DataType::DATE));
    columns.push(StructField::not_null("hour", DataType::INTEGER));
    Ok(columns)
}

impl DeltaLog {
    /// The log of the table at `location`, with `schema`, written by `writer` of sink
    /// `sink`.
    pub fn new(
        sink: &str,
        location: TableLocation,
        schema: &arrow_schema::Schema,
        writer: &str,
    ) -> Result<Self, String> {
        Ok(DeltaLog {
            sink: sink.to_string(),
            app_id: format!("weir-{sink}-{writer}"),
            table: Table::new(location, delta_schema(schema)?, &["dt", "hour"]),
        })
    }

    /// Whether the table holds this writer's commit `version` (or a later one): its files
    /// were all published before it, and may since have been compacted away.
    pub fn holds(&mut self, version: i64) -> Result<bool, SinkError> {
        let done = crate::storage::io_runtime()
            .block_on(self.table.transaction_version(&self.app_id))
            .map_err(|e| io_error(&self.sink, format!("reading the Delta log: {e}")))?;
        Ok(done.is_some_and(|done| done >= version))
    }

    /// Adds `files` (keys under the table's root, with their sizes) as this writer's commit
    /// `version`, unless the table already holds that version or a later one. Returns
    /// whether it committed.
    pub fn commit(&mut self, version: i64, files: &[(String, u64)]) -> Result<bool, SinkError> {
        if files.is_empty() {
            return Ok(false);
        }
        let now = now_ms();
        let actions: Vec<Action> = files
            .iter()
            .map(|(key, size)| Action::Add(add(key, *size, now)))
            .collect();
        let committed = crate::storage::io_runtime()
            .block_on(self.table.commit_once(&self.app_id, version, actions))
            .map_err(|e| io_error(&self.sink, format!("Delta commit: {e}")))?;
        if let Some(table_version) = committed {
            tracing::debug!(sink = %self.sink, table_version, files = files.len(), "Delta commit.");
        }
        Ok(committed.is_some())
    }
}

/// The add action of a published file `key` (`dt=…/hour=…/name`).
fn add(key: &str, size: u64, now: i64) -> Add {
    let folder = key.rsplit_once('/').map_or("", |(folder, _)| folder);
    let mut partition_values = HashMap::new();
    if let Some(hour) = hour_of_folder(folder) {
        let day = chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default();
        partition_values.insert("dt".into(), Some(day.format("%Y-%m-%d").to_string()));
        partition_values.insert("hour".into(), Some(day.format("%-H").to_string()));
    }
    Add {
        path: key.to_string(),
        partition_values,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        modification_time: now,
        data_change: true,
        ..Add::default()
    }
}
