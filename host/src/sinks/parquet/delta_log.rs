//! A Delta Lake transaction log over a Parquet sink's files (`type = "delta"`): the files an
//! epoch publishes are added to the table in one Delta commit that also records the epoch's
//! sequence number as the writer's application transaction (`txn`: app id and version), so a
//! redone commit adds nothing twice. The table is created at the first commit, partitioned
//! by `dt` (date) and `hour` (integer) like the folders.

use std::collections::HashMap;

use arrow_schema::{DataType as ArrowType, TimeUnit};
use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{
    Action, Add, ArrayType, DataType, StructField, StructType, Transaction,
};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use url::Url;

use super::completion::hour_of_folder;
use crate::sinks::{SinkError, io_error, now_ms};

/// Commit attempts when other writers of the table commit at the same time.
const COMMIT_RETRIES: usize = 100;

/// One writer's log of a Delta table.
pub struct DeltaLog {
    sink: String,
    url: Url,
    app_id: String,
    columns: Vec<StructField>,
    table: Option<DeltaTable>,
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

/// The table's URL: `file://` for a folder (made absolute), the path itself otherwise.
pub fn table_url(path: &str) -> Result<Url, String> {
    if path.contains("://") {
        return Url::parse(path).map_err(|e| format!("{path}: {e}"));
    }
    let absolute = std::path::absolute(path).map_err(|e| format!("{path}: {e}"))?;
    Url::from_directory_path(&absolute).map_err(|()| format!("{path}: not a folder path"))
}

impl DeltaLog {
    /// The log of the table at `path` (a folder or `file://` URL) with `schema`, written by
    /// `writer` of sink `sink`.
    pub fn new(
        sink: &str,
        path: &str,
        schema: &arrow_schema::Schema,
        writer: &str,
    ) -> Result<Self, String> {
        if path.starts_with("s3://") {
            return Err("Delta tables on S3 are not supported yet: use a folder".into());
        }
        let columns = delta_schema(schema)?;
        Ok(DeltaLog {
            sink: sink.to_string(),
            url: table_url(path)?,
            app_id: format!("weir-{sink}-{writer}"),
            columns,
            table: None,
        })
    }

    /// Adds `files` (keys under the table's root, with their sizes) as this writer's commit
    /// `version`, unless the table already holds that version or a later one. Returns
    /// whether it committed.
    pub fn commit(&mut self, version: i64, files: &[(String, u64)]) -> Result<bool, SinkError> {
        if files.is_empty() {
            return Ok(false);
        }
        crate::storage::io_runtime()
            .block_on(self.commit_async(version, files))
            .map_err(|e| io_error(&self.sink, format!("Delta commit: {e}")))
    }

    async fn commit_async(
        &mut self,
        version: i64,
        files: &[(String, u64)],
    ) -> Result<bool, DeltaTableError> {
        let table = load_or_create(&mut self.table, &self.url, &self.columns).await?;
        let log_store = table.log_store();
        let snapshot = table.snapshot()?;
        if snapshot
            .transaction_version(log_store.as_ref(), &self.app_id)
            .await?
            .is_some_and(|done| done >= version)
        {
            return Ok(false);
        }
        let now = now_ms();
        let mut actions: Vec<Action> = files
            .iter()
            .map(|(key, size)| Action::Add(add(key, *size, now)))
            .collect();
        actions.push(Action::Txn(Transaction {
            app_id: self.app_id.clone(),
            version,
            last_updated: Some(now),
        }));
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec!["dt".into(), "hour".into()]),
            predicate: None,
        };
        let committed = CommitBuilder::default()
            .with_actions(actions)
            .with_max_retries(COMMIT_RETRIES)
            .build(Some(snapshot), log_store, operation)
            .await?;
        tracing::debug!(sink = %self.sink, table_version = committed.version(), files = files.len(), "Delta commit.");
        Ok(true)
    }
}

/// The table at `url` in `slot`, loaded to its latest version, created with `columns` if it
/// does not exist yet.
async fn load_or_create<'a>(
    slot: &'a mut Option<DeltaTable>,
    url: &Url,
    columns: &[StructField],
) -> Result<&'a DeltaTable, DeltaTableError> {
    let mut table = match slot.take() {
        Some(table) => table,
        None => DeltaTable::try_from_url(url.clone()).await?,
    };
    match table.load().await {
        Ok(()) => {}
        Err(DeltaTableError::NotATable(_)) => {
            // Another writer may create it at the same time: either creation wins.
            let created = table
                .create()
                .with_columns(columns.to_vec())
                .with_partition_columns(["dt", "hour"])
                .with_save_mode(SaveMode::Ignore)
                .await;
            table = match created {
                Ok(table) => table,
                Err(_) => {
                    let mut again = DeltaTable::try_from_url(url.clone()).await?;
                    again.load().await?;
                    again
                }
            };
        }
        Err(e) => return Err(e),
    }
    Ok(slot.insert(table))
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
