//! The `_partitions` table inside a Delta table with completion markers: a small Delta table
//! with one row per hour declared complete (`dt`, `hour`, `completed_at`, `writers`), for
//! engines that wait on a table rather than on `_SUCCESS` files. Each hour is added once: the
//! newest hour added is the transaction version of the app `weir-completion`, and a commit
//! is made only on top of the version its rows were computed from, so writers that race to
//! add the same hours conflict, and the loser adds what is still missing.

use std::ops::RangeInclusive;
use std::sync::Arc;

use arrow_array::{Date32Array, Int32Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType as ArrowType, Field, Schema, TimeUnit};
use deltalake_core::kernel::{Action, Add, DataType, StructField};
use parquet::arrow::ArrowWriter;

use super::delta_table::{Table, TableLocation};
use crate::sinks::now_ms;
use crate::storage::{Storage, io_runtime};

/// The folder of the partitions table, inside the table it describes.
pub const FOLDER: &str = "_partitions";

/// The application whose transaction version is the newest hour in the table.
const APP_ID: &str = "weir-completion";

/// Hours one addition covers at most: a table whose rows reach back further gets rows for
/// the newest year only, as completion markers do.
const MAX_HOURS: i64 = 24 * 366;

/// One writer's view of a table's `_partitions` table.
pub struct PartitionsTable {
    sink: String,
    writer: String,
    table: Table,
}

impl PartitionsTable {
    /// The partitions table of the table at `events`, written by `writer` of sink `sink`.
    pub fn new(sink: &str, writer: &str, events: &TableLocation) -> Result<Self, String> {
        let columns = vec![
            StructField::not_null("dt", DataType::DATE),
            StructField::not_null("hour", DataType::INTEGER),
            StructField::not_null("completed_at", DataType::TIMESTAMP),
            StructField::not_null("writers", DataType::INTEGER),
        ];
        Ok(PartitionsTable {
            sink: sink.to_string(),
            writer: writer.to_string(),
            table: Table::new(events.child(FOLDER)?, columns, &[]),
        })
    }

    /// Adds a row for each hour through the end of `hours` that the table lacks: from the
    /// hour after the newest it holds, or from the start of `hours` if it holds none.
    /// `writers` fill the table together. A writer that added hours meanwhile makes the
    /// commit conflict: the caller tries again.
    pub fn add(
        &mut self,
        storage: &Storage,
        hours: &RangeInclusive<i64>,
        writers: usize,
    ) -> Result<(), String> {
        let runtime = io_runtime();
        let done = runtime
            .block_on(self.table.transaction_version(APP_ID))
            .map_err(|e| e.to_string())?;
        let last = *hours.end();
        let first = done
            .map_or(*hours.start(), |newest| newest + 1)
            .max(last - MAX_HOURS + 1);
        if first > last {
            return Ok(());
        }
        let now = now_ms();
        let bytes = rows(first..=last, writers, now)?;
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let name = format!("hours-{first}-{last}-{}.parquet", self.writer);
        storage
            .put(&format!("{FOLDER}/{name}"), bytes)
            .map_err(|e| e.to_string())?;
        let add = Add {
            path: name,
            size,
            modification_time: now,
            data_change: true,
            ..Add::default()
        };
        // Rows computed from `done`: should another writer add hours meanwhile, they would
        // repeat its; the commit fails instead, and the caller's next try reads them.
        runtime
            .block_on(
                self.table
                    .commit_after(APP_ID, done, last, vec![Action::Add(add)]),
            )
            .map_err(|e| e.to_string())?;
        tracing::info!(sink = %self.sink, from = first, through = last, "Complete hours added to the partitions table.");
        Ok(())
    }
}

/// A Parquet file with a row per hour of `hours` (hours since the epoch), completed at `now`
/// (ms) by `writers`.
fn rows(hours: RangeInclusive<i64>, writers: usize, now: i64) -> Result<Vec<u8>, String> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("dt", ArrowType::Date32, false),
        Field::new("hour", ArrowType::Int32, false),
        Field::new(
            "completed_at",
            ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("writers", ArrowType::Int32, false),
    ]));
    let days: Vec<i32> = hours
        .clone()
        .map(|h| i32::try_from(h.div_euclid(24)).unwrap_or(i32::MAX))
        .collect();
    let of_day: Vec<i32> = hours
        .clone()
        .map(|h| i32::try_from(h.rem_euclid(24)).unwrap_or(0))
        .collect();
    let count = days.len();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Date32Array::from(days)),
            Arc::new(Int32Array::from(of_day)),
            Arc::new(TimestampMicrosecondArray::from(vec![now * 1000; count]).with_timezone("UTC")),
            Arc::new(Int32Array::from(vec![
                i32::try_from(writers)
                    .unwrap_or(i32::MAX);
                count
            ])),
        ],
    )
    .map_err(|e| e.to_string())?;
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, None).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.into_inner().map_err(|e| e.to_string())
}
