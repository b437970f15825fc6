//! Writes routed records as Parquet on a [`Storage`]. Each epoch's rows of one
//! `dt=YYYY-MM-DD/hour=HH` folder become a staged part (a whole small Parquet file under
//! `_staging/<scope>/<file>.parts/`, named `.part` so no lake glob takes it for a table file). A file is made of the parts of several epochs and rolls on size or
//! age; once the epoch that rolled it has committed, its parts are joined into the final file
//! and deleted. Readers only ever see whole files of committed rows. Without a scope (the file
//! source) there are no epochs: a file is published as soon as it is due, and at close. With
//! completion markers, the epoch that declares an hour complete rolls that hour's files, and
//! its commit announces the hour (see [`super::completion`]). A Delta table adds each
//! epoch's published files to its log (see [`super::delta_log`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use super::columns::ColumnWriter;
use super::completion::{
    Completion, HOUR_MS, LATE_DIR, LateRows, Progress, Writers, folder_of_hour, hour_of_folder,
};
use super::compose::concat;
use super::delta_log::DeltaLog;
use super::delta_partitions::PartitionsTable;
use super::delta_table::TableLocation;
use super::freshness::Freshness;
use super::{ExtraFields, ParquetSinkConfig, schema_of};
use crate::sinks::commit_record::{self, Sequence};
use crate::sinks::resilience::Breaker;
use crate::sinks::staging::{STAGING_DIR, Scope};
use crate::sinks::{RecordView, Rejection, Sink, SinkBatch, SinkError, io_error, now_ms};
use crate::storage::Storage;

/// Largest part buffered in memory before it is staged, even mid-epoch.
const MAX_PART_SIZE: usize = 32 << 20;

/// Rows in a data page at most, with epochs: a column's pages are compressed as its rows
/// arrive, so an epoch's end compresses only its last page and the dictionary, not the
/// epoch's every row (parquet's default, 20,000, is more than an epoch of most partitions).
/// Without epochs (the file source) parquet's default stays: smaller pages cost it CPU.
const PAGE_ROWS: usize = 4096;

/// A staged part of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    key: String,
    bytes: u64,
}

/// A file that has staged parts and has not rolled yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OpenFile {
    folder: String,
    name: String,
    opened_at_ms: i64,
    parts: Vec<Part>,
}

impl OpenFile {
    fn final_key(&self) -> String {
        format!("{}/{}", self.folder, self.name)
    }
}

/// A rolled file: its parts are joined into `to` once the epoch commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Publish {
    parts: Vec<String>,
    to: String,
}

/// What the checkpoint keeps for this sink.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CommitRecord {
    publish: Vec<Publish>,
    open: Vec<OpenFile>,
}

/// What an epoch's commit record holds beyond its files: an extension older records lack.
#[derive(Debug, Default, Serialize, Deserialize)]
struct EpochExtras {
    /// The hours this writer has declared complete (completion markers).
    progress: Option<Progress>,
    /// The epoch's version in the Delta log (a `type = "delta"` table).
    table_version: Option<i64>,
}

/// The Parquet sink.
pub struct ParquetSink {
    name: String,
    storage: Storage,
    breaker: Arc<Breaker>,
    schema: SchemaRef,
    columns: ColumnWriter,
    props: WriterProperties,
    roll_size: u64,
    roll_interval_ms: i64,
    part_size: usize,
    staging: String,
    file_prefix: String,
    /// This instance's id, in every part it stages: an instance the group has dropped (a
    /// zombie) that stages a part of a file its successor continues cannot overwrite the
    /// successor's part of the same number.
    run_id: String,
    next_file: u64,
    buffers: BTreeMap<String, ArrowWriter<Vec<u8>>>,
    files: BTreeMap<String, OpenFile>,
    scoped: bool,
    finishing: bool,
    freshness: Freshness,
    extra_fields: ExtraFields,
    /// Whether a field left out under `extra_fields = "ignore"` was logged (once per sink).
    logged_ignored_field: bool,
    /// Staged parts no open file referred to when the sink recovered: deleted once this
    /// instance next commits an epoch, which proves it still owns the partition. An instance
    /// the group has dropped (a zombie) that recovers must not delete what its successor has
    /// staged and not yet committed.
    unreferenced: Vec<String>,
    /// Completion markers, when configured.
    completion: Option<Completion>,
    /// The newest hour whose completion this process has announced.
    announced: Option<i64>,
    /// The Delta log the published files are added to (`type = "delta"`).
    table: Option<DeltaLog>,
    /// The Delta table's `_partitions` table, when it has completion markers.
    partitions: Option<PartitionsTable>,
    /// Versions of this writer's Delta commits.
    table_versions: Sequence,
    /// This writer's name: its source partition, or `local-<run>`.
    writer: String,
}

/// The Hive partition folder of an event time.
pub fn partition_of(time_ms: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(time_ms).unwrap_or_default();
    t.format("dt=%Y-%m-%d/hour=%H").to_string()
}

impl ParquetSink {
    /// Creates the sink. With a `scope`, output is staged until the epoch commits.
    pub fn new(
        name: &str,
        config: &ParquetSinkConfig,
        scope: Option<Scope>,
        breaker: Arc<Breaker>,
    ) -> Result<Self, SinkError> {
        let setup = |reason: String| SinkError::Setup {
            sink: name.to_string(),
            reason,
        };
        let schema = schema_of(&config.schema).map_err(setup)?;
        let level = ZstdLevel::try_new(config.zstd_level).map_err(|e| setup(e.to_string()))?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(config.row_group_rows));
        if scope.is_some() {
            props = props.set_data_page_row_count_limit(PAGE_ROWS);
        }
        for column in config.schema.iter().filter(|c| !c.dictionary) {
            props =
                props.set_column_dictionary_enabled(ColumnPath::from(column.name.as_str()), false);
        }
        let props = props.build();
        let storage = Storage::open(&config.path, &config.s3).map_err(|e| setup(e.to_string()))?;
        let label = scope
            .as_ref()
            .map_or_else(|| "local".to_string(), Scope::label);
        let run_id = format!(
            "{}-{:04x}",
            Utc::now().format("%Y%m%dT%H%M%S%3fZ"),
            rand::random::<u16>()
        );
        let roll_size = config.roll_size.0 as u64;
        let writer = match &scope {
            Some(_) => label.clone(),
            None => format!("local-{run_id}"),
        };
        let completion = config
            .completion
            .as_ref()
            .map(|c| Completion::new(name, c, Writers::alone(&label)));
        Ok(ParquetSink {
            name: name.to_string(),
            storage,
            breaker,
            columns: ColumnWriter::new(schema.clone()),
            schema,
            props,
            roll_size,
            roll_interval_ms: config.roll_interval.0.as_millis() as i64,
            part_size: (roll_size as usize).min(MAX_PART_SIZE),
            staging: match &scope {
                Some(_) => format!("{STAGING_DIR}/{label}"),
                None => format!("{STAGING_DIR}/{label}-{run_id}"),
            },
            file_prefix: format!("part-{label}-{run_id}"),
            run_id,
            next_file: 0,
            buffers: BTreeMap::new(),
            files: BTreeMap::new(),
            scoped: scope.is_some(),
            finishing: false,
            freshness: Freshness::new(name, scope),
            extra_fields: config.extra_fields,
            logged_ignored_field: false,
            unreferenced: Vec::new(),
            completion,
            announced: None,
            table: None,
            partitions: None,
            table_versions: Sequence::default(),
            writer,
        })
    }

    /// Adds the files this sink publishes to a Delta table at its path, and the hours it
    /// declares complete to the table's `_partitions` table.
    pub fn logging_to_delta(mut self, config: &ParquetSinkConfig) -> Result<Self, SinkError> {
        let name = self.name.clone();
        let setup = |reason| SinkError::Setup {
            sink: name.clone(),
            reason,
        };
        let location = TableLocation::new(&self.storage, &config.path).map_err(setup)?;
        if self.completion.is_some() {
            let partitions =
                PartitionsTable::new(&self.name, &self.writer, &location).map_err(setup)?;
            self.partitions = Some(partitions);
        }
        let log = DeltaLog::new(&self.name, location, &self.schema, &self.writer).map_err(setup)?;
        self.table = Some(log);
        Ok(self)
    }

    /// Publishes `files` and, for a Delta table, adds them to its log as `version`.
    fn publish_all(&mut self, files: &[Publish], version: Option<i64>) -> Result<(), SinkError> {
        for publish in files {
            self.publish(publish)?;
        }
        let (Some(version), Some(table)) = (version, &mut self.table) else {
            return Ok(());
        };
        let storage = &self.storage;
        let mut sized = Vec::with_capacity(files.len());
        for publish in files {
            let size = self
                .breaker
                .call("sizing a published file", || storage.size(&publish.to))?
                .ok_or_else(|| {
                    io_error(
                        &self.name,
                        format!("published file {} is missing", publish.to),
                    )
                })?;
            sized.push((publish.to.clone(), size));
        }
        crate::failpoint::hit("table-committing");
        self.breaker.call("committing to the Delta log", || {
            table.commit(version, &sized)
        })?;
        crate::failpoint::hit("table-committed");
        Ok(())
    }

    /// Whether the Delta table holds this writer's commit `version`: the epoch was
    /// published, and a compaction may have joined its files into others and vacuumed them,
    /// so publishing them again would look for parts long deleted.
    fn logged(&mut self, version: Option<i64>) -> Result<bool, SinkError> {
        let (Some(version), Some(table)) = (version, &mut self.table) else {
            return Ok(false);
        };
        self.breaker
            .call("reading the Delta log", || table.holds(version))
    }

    /// The version of the next Delta commit, for a Delta table.
    fn next_table_version(&mut self) -> Option<i64> {
        self.table.as_ref()?;
        Some(self.table_versions.advance())
    }

    /// Sets the writers that fill the table together, for completion markers.
    pub fn writing_with(mut self, writers: Option<Writers>) -> Self {
        if let (Some(completion), Some(writers)) = (&mut self.completion, writers) {
            completion.set_writers(writers);
        }
        self
    }

    /// Where rows of `hour` go: their hour's folder, `_late/` or (`None`) the dead-letter
    /// output, when their hour is complete.
    fn folder_for(&mut self, hour: i64, rows: usize) -> Option<String> {
        let folder = folder_of_hour(hour);
        let Some(completion) = &mut self.completion else {
            return Some(folder);
        };
        if !completion.is_late(hour) {
            completion.wrote(hour);
            return Some(folder);
        }
        metrics::counter!("weir_sink_late_rows_total", "sink" => self.name.clone())
            .increment(rows as u64);
        match completion.late_rows() {
            LateRows::Folder => Some(format!("{LATE_DIR}/{folder}")),
            LateRows::DeadLetter => None,
        }
    }

    /// Declares the hours the watermark has passed complete: `None` when none is new.
    fn declare(&mut self) -> Option<i64> {
        self.completion.as_mut()?.declare()
    }

    /// Announces `progress` once its epoch's files are published, if it moved.
    fn announce(&mut self, progress: Option<Progress>) -> Result<(), SinkError> {
        let (Some(completion), Some(progress)) = (&mut self.completion, progress) else {
            return Ok(());
        };
        if progress.through.is_none() || progress.through == self.announced {
            return Ok(());
        }
        let marked = completion.announce(&self.storage, &self.breaker, &progress)?;
        if let (Some(hours), Some(partitions)) = (marked, &mut self.partitions) {
            let (storage, writers) = (&self.storage, completion.writer_count());
            self.breaker
                .call("adding complete hours to the partitions table", || {
                    partitions.add(storage, &hours, writers)
                })?;
        }
        self.announced = progress.through;
        Ok(())
    }

    /// Unscoped: publishes the files of newly complete hours and announces them.
    fn complete_unscoped(&mut self) -> Result<(), SinkError> {
        let Some(through) = self.declare() else {
            return Ok(());
        };
        let rolled = self.roll(false, Some(through))?;
        let version = self.next_table_version();
        self.publish_all(&rolled, version)?;
        let progress = self.completion.as_ref().map(Completion::progress);
        self.announce(progress)
    }

    fn write_batch(&mut self, folder: &str, batch: &RecordBatch) -> Result<(), SinkError> {
        if !self.buffers.contains_key(folder) {
            let writer =
                ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(self.props.clone()))
                    .map_err(|e| io_error(&self.name, e))?;
            self.buffers.insert(folder.to_string(), writer);
        }
        let Some(writer) = self.buffers.get_mut(folder) else {
            return Ok(());
        };
        writer.write(batch).map_err(|e| io_error(&self.name, e))?;
        if writer.memory_size() + writer.bytes_written() >= self.part_size {
            self.stage(folder)?;
        }
        Ok(())
    }

    /// Stages the buffered rows of `folder` as the next part of its open file.
    fn stage(&mut self, folder: &str) -> Result<(), SinkError> {
        let Some(writer) = self.buffers.remove(folder) else {
            return Ok(());
        };
        let bytes = Bytes::from(writer.into_inner().map_err(|e| io_error(&self.name, e))?);
        if !self.files.contains_key(folder) {
            self.next_file += 1;
            let file = OpenFile {
                folder: folder.to_string(),
                name: format!("{}-{:05}.zstd.parquet", self.file_prefix, self.next_file),
                opened_at_ms: now_ms(),
                parts: Vec::new(),
            };
            self.files.insert(folder.to_string(), file);
        }
        let Some(file) = self.files.get_mut(folder) else {
            return Ok(());
        };
        // Named so that no lake glob (`**/*.parquet`) takes a staged part for a table file.
        let key = format!(
            "{}/{}.parts/{:05}-{}.part",
            self.staging,
            file.name,
            file.parts.len(),
            self.run_id
        );
        if crate::failpoint::fails("stage-part") {
            return Err(io_error(
                &self.name,
                format!("staging {key}: refused (failpoint)"),
            ));
        }
        let storage = &self.storage;
        self.breaker
            .call("staging a part", || storage.put(&key, bytes.clone()))?;
        file.parts.push(Part {
            key,
            bytes: bytes.len() as u64,
        });
        crate::failpoint::hit("part-staged");
        Ok(())
    }

    /// Logs the first field this sink leaves out under `extra_fields = "ignore"`.
    fn note_ignored_field(&mut self, record: &RecordView<'_>) {
        if self.logged_ignored_field {
            return;
        }
        self.logged_ignored_field = true;
        let field = self.columns.extra_field(record).unwrap_or_default();
        tracing::warn!(sink = %self.name, %field, "A record has a field that is not a column; it is left out (extra_fields = \"ignore\"; weir_sink_extra_fields_total counts such records). Add the column, or set extra_fields to \"dead-letter\" or \"error\".");
    }

    fn stage_all(&mut self) -> Result<(), SinkError> {
        let folders: Vec<String> = self.buffers.keys().cloned().collect();
        for folder in folders {
            self.stage(&folder)?;
        }
        Ok(())
    }

    fn due(&self, file: &OpenFile, now: i64) -> bool {
        let buffered = self
            .buffers
            .get(&file.folder)
            .map_or(0, |w| (w.memory_size() + w.bytes_written()) as u64);
        let size: u64 = file.parts.iter().map(|p| p.bytes).sum::<u64>() + buffered;
        size >= self.roll_size || now - file.opened_at_ms >= self.roll_interval_ms
    }

    /// Takes the files due to roll (every file with `force`, and those of hours up to a
    /// `complete` one), staging their last rows.
    fn roll(&mut self, force: bool, complete: Option<i64>) -> Result<Vec<Publish>, SinkError> {
        let now = now_ms();
        let completed = |folder: &str| {
            complete.is_some_and(|c| hour_of_folder(folder).is_some_and(|hour| hour <= c))
        };
        let due: Vec<String> = self
            .files
            .values()
            .filter(|f| force || self.due(f, now) || completed(&f.folder))
            .map(|f| f.folder.clone())
            .collect();
        let mut rolled = Vec::new();
        for folder in due {
            self.stage(&folder)?;
            if let Some(file) = self.files.remove(&folder) {
                self.freshness.rolled(&folder, &file.final_key());
                rolled.push(Publish {
                    to: file.final_key(),
                    parts: file.parts.into_iter().map(|p| p.key).collect(),
                });
            }
        }
        Ok(rolled)
    }

    /// Makes a rolled file visible and deletes its parts. Idempotent: a published file
    /// counts as done.
    fn publish(&mut self, publish: &Publish) -> Result<(), SinkError> {
        let storage = &self.storage;
        self.breaker.call("publishing a file", || {
            if !storage.exists(&publish.to)? {
                if let [only] = publish.parts.as_slice() {
                    storage.copy(only, &publish.to)?;
                } else {
                    let mut parts = Vec::with_capacity(publish.parts.len());
                    for key in &publish.parts {
                        let part = storage.get(key)?.ok_or_else(|| {
                            io_error(
                                &self.name,
                                format!(
                                    "staged part {key} of committed file {} is missing",
                                    publish.to
                                ),
                            )
                        })?;
                        parts.push(part);
                    }
                    let joined = concat(&parts).map_err(|e| io_error(&self.name, e))?;
                    storage.put(&publish.to, joined)?;
                }
                crate::failpoint::hit("file-published");
            }
            for key in &publish.parts {
                storage.delete(key)?;
            }
            Ok::<(), PublishError>(())
        })?;
        metrics::counter!("weir_sink_files_published_total", "sink" => self.name.clone())
            .increment(1);
        self.freshness.published(&publish.to);
        tracing::debug!(sink = %self.name, file = %publish.to, parts = publish.parts.len(), "File published.");
        Ok(())
    }

    /// Forgets open files that are already published. Only a committed epoch publishes, so
    /// such a file rolled in an epoch this record does not know of (one that committed
    /// without moving the offset, when recovery had to choose by offset); appending to it
    /// would write rows into a file that is never published again.
    fn drop_published_files(&mut self) -> Result<(), SinkError> {
        let storage = &self.storage;
        let mut published = Vec::new();
        for file in self.files.values() {
            let key = file.final_key();
            if self
                .breaker
                .call("checking a published file", || storage.exists(&key))?
            {
                published.push(file.folder.clone());
            }
        }
        for folder in published {
            self.files.remove(&folder);
        }
        Ok(())
    }

    /// Staged objects no open file refers to: parts of epochs that never committed.
    fn unreferenced(&self) -> Result<Vec<String>, SinkError> {
        let keep: BTreeSet<&str> = self
            .files
            .values()
            .flat_map(|f| f.parts.iter().map(|p| p.key.as_str()))
            .collect();
        let storage = &self.storage;
        let staged = self
            .breaker
            .call("listing staged parts", || storage.list_all(&self.staging))?;
        Ok(staged
            .into_iter()
            .filter(|k| !keep.contains(k.as_str()))
            .collect())
    }

    /// Deletes the parts found unreferenced when the sink recovered.
    fn discard_unreferenced(&mut self) -> Result<(), SinkError> {
        let storage = &self.storage;
        for key in &self.unreferenced {
            self.breaker
                .call("discarding a staged part", || storage.delete(key))?;
        }
        self.unreferenced.clear();
        Ok(())
    }
}

/// A failure while publishing: the store's or the sink's.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl Sink for ParquetSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &SinkBatch) -> Result<Vec<Rejection>, SinkError> {
        // Records by the hour of their event time: a batch spans one or two hours.
        let mut groups: Vec<(i64, Vec<usize>)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let hour = r.time.div_euclid(HOUR_MS);
            match groups.iter_mut().find(|(h, _)| *h == hour) {
                Some((_, rows)) => rows.push(i),
                None => groups.push((hour, vec![i])),
            }
        }
        groups.sort_by_key(|(hour, _)| *hour);
        let mut rejections = Vec::new();
        let mut with_extra_fields = 0_u64;
        for (hour, rows) in groups {
            let Some(folder) = self.folder_for(hour, rows.len()) else {
                let reason = format!(
                    "late: {} is complete (the watermark passed its end plus the lateness)",
                    folder_of_hour(hour)
                );
                rejections.extend(rows.into_iter().map(|index| Rejection {
                    index,
                    reason: reason.clone(),
                }));
                continue;
            };
            let mut cells = Vec::with_capacity(self.schema.fields().len());
            let mut newest = i64::MIN;
            for index in rows {
                let Some(record) = records.get(index) else {
                    continue;
                };
                if self.extra_fields != ExtraFields::Ignore
                    && let Some(field) = self.columns.extra_field(&record)
                {
                    let reason = format!("extra field: {field:?} is not a column of the sink");
                    if self.extra_fields == ExtraFields::Error {
                        return Err(io_error(
                            &self.name,
                            format!("{reason} (extra_fields = \"error\")"),
                        ));
                    }
                    rejections.push(Rejection { index, reason });
                    continue;
                }
                match self.columns.append(&record, &mut cells) {
                    Ok(found) => {
                        newest = newest.max(record.time);
                        if found < record.member_count() {
                            with_extra_fields += 1;
                            self.note_ignored_field(&record);
                        }
                    }
                    Err(reason) => rejections.push(Rejection { index, reason }),
                }
            }
            if self.columns.rows() == 0 {
                continue;
            }
            let batch = self.columns.finish().map_err(|e| io_error(&self.name, e))?;
            self.write_batch(&folder, &batch)?;
            self.freshness.wrote(&folder, newest);
        }
        if with_extra_fields > 0 {
            metrics::counter!("weir_sink_extra_fields_total", "sink" => self.name.clone())
                .increment(with_extra_fields);
        }
        if !self.scoped {
            let rolled = self.roll(false, None)?;
            let version = self.next_table_version();
            self.publish_all(&rolled, version)?;
            self.complete_unscoped()?;
        }
        Ok(rejections)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.stage_all()
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.stage_all()?;
        let rolled = self.roll(true, None)?;
        let version = self.next_table_version();
        self.publish_all(&rolled, version)?;
        if !self.scoped {
            self.complete_unscoped()?;
        }
        Ok(())
    }

    fn observe_watermark(&mut self, watermark: i64) {
        if let Some(completion) = &mut self.completion {
            completion.observe(watermark);
        }
    }

    fn prepare_commit(&mut self) -> Result<Option<Vec<u8>>, SinkError> {
        self.stage_all()?;
        let complete = self.declare();
        let record = CommitRecord {
            publish: self.roll(self.finishing, complete)?,
            open: self.files.values().cloned().collect(),
        };
        tracing::debug!(sink = %self.name, rolled = record.publish.len(), open = record.open.len(), finishing = self.finishing, "Epoch prepared.");
        let extras = EpochExtras {
            progress: self.completion.as_ref().map(Completion::progress),
            table_version: self.next_table_version(),
        };
        let extended = extras.progress.is_some() || extras.table_version.is_some();
        commit_record::encode_extended(&self.name, &record, extended.then_some(&extras))
    }

    fn commit(&mut self, record: &[u8]) -> Result<(), SinkError> {
        let (record, extras) =
            commit_record::decode_extended::<CommitRecord, EpochExtras>(&self.name, record)?;
        let extras = extras.unwrap_or_default();
        self.publish_all(&record.publish, extras.table_version)?;
        self.discard_unreferenced()?;
        self.announce(extras.progress)
    }

    fn recover(&mut self, record: Option<&[u8]>) -> Result<(), SinkError> {
        self.buffers.clear();
        self.files.clear();
        self.announced = None;
        let Some(bytes) = record else {
            self.freshness.recovered(|_| false);
            if let Some(completion) = &mut self.completion {
                completion.restore(Progress::default());
            }
            self.unreferenced = self.unreferenced()?;
            return Ok(());
        };
        let (record, extras) =
            commit_record::decode_extended::<CommitRecord, EpochExtras>(&self.name, bytes)?;
        let extras = extras.unwrap_or_default();
        let committed = |file: &str| record.publish.iter().any(|p| p.to == file);
        self.freshness.recovered(committed);
        if let Some(version) = extras.table_version {
            self.table_versions.recovered(version);
        }
        if !self.logged(extras.table_version)? {
            self.publish_all(&record.publish, extras.table_version)?;
        }
        self.files = record
            .open
            .into_iter()
            .map(|f| (f.folder.clone(), f))
            .collect();
        self.drop_published_files()?;
        self.unreferenced = self.unreferenced()?;
        if let Some(completion) = &mut self.completion {
            completion.restore(extras.progress.unwrap_or_default());
        }
        self.announce(extras.progress)
    }

    fn wants_commit(&self) -> bool {
        let now = now_ms();
        let declaring = || {
            self.completion
                .as_ref()
                .is_some_and(Completion::can_declare)
        };
        self.scoped
            && (self.finishing || self.files.values().any(|f| self.due(f, now)) || declaring())
    }

    fn finish_files(&mut self) {
        self.finishing = true;
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use arrow_array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::super::LateRows;
    use super::*;
    use crate::flow::SinkRecord;
    use crate::sinks::parquet::ColumnConfig;
    use crate::sinks::resilience::RetryConfig;

    fn config(root: &Path) -> ParquetSinkConfig {
        let column = |name: &str, ty: &str, nullable: bool| ColumnConfig {
            name: name.into(),
            data_type: ty.into(),
            nullable,
            dictionary: true,
        };
        ParquetSinkConfig {
            routes: vec!["main".into()],
            path: root.display().to_string(),
            s3: Default::default(),
            schema: vec![
                column("id", "string", false),
                column("n", "int64", true),
                column("tags", "list<string>", true),
            ],
            schema_subject: None,
            extra_fields: ExtraFields::Ignore,
            roll_size: crate::units::ByteSize(128 << 20),
            roll_interval: crate::units::HumanDuration::from_secs(300),
            row_group_rows: 1024,
            zstd_level: 3,
            retry: RetryConfig::default(),
            completion: None,
        }
    }

    fn sink(root: &Path, scope: Option<Scope>) -> ParquetSink {
        let breaker = Arc::new(Breaker::new("lake", &RetryConfig::default()));
        ParquetSink::new("lake", &config(root), scope, breaker).unwrap()
    }

    /// A sink of `config` for partition 0 of `clicks`.
    fn partition_sink(config: &ParquetSinkConfig) -> ParquetSink {
        let breaker = Arc::new(Breaker::new("lake", &RetryConfig::default()));
        let scope = Scope {
            topic: "clicks".into(),
            partition: 0,
        };
        ParquetSink::new("lake", config, Some(scope), breaker).unwrap()
    }

    fn record_at(id: &str, time: i64) -> SinkRecord {
        record(&format!(r#"{{"id":"{id}"}}"#), time)
    }

    fn record(value: &str, time: i64) -> SinkRecord {
        SinkRecord {
            route: Arc::from("main"),
            key: b"k".to_vec(),
            value: value.as_bytes().to_vec(),
            time,
            provenance: None,
        }
    }

    /// Published files (not staged ones) and the ids they hold.
    fn visible(root: &Path) -> (Vec<PathBuf>, Vec<String>) {
        let mut files = Vec::new();
        for hour in ["hour=00", "hour=01"] {
            if let Ok(entries) = std::fs::read_dir(root.join("dt=1970-01-01").join(hour)) {
                files.extend(
                    entries
                        .map(|e| e.unwrap().path())
                        .filter(|p| p.extension().is_some_and(|e| e == "parquet")),
                );
            }
        }
        files.sort();
        let mut ids = Vec::new();
        for file in &files {
            let bytes = Bytes::from(std::fs::read(file).unwrap());
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                let column = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap();
                ids.extend((0..column.len()).map(|i| column.value(i).to_string()));
            }
        }
        (files, ids)
    }

    #[test]
    fn an_epoch_past_an_hour_publishes_its_files_marks_it_complete_and_refuses_its_late_rows() {
        let dir = tempfile::tempdir().unwrap();
        let config = ParquetSinkConfig {
            completion: Some(super::super::CompletionConfig {
                lateness: crate::units::HumanDuration::from_secs(60),
                late: LateRows::DeadLetter,
            }),
            ..config(dir.path())
        };
        let new_sink = || partition_sink(&config);
        let marker = dir.path().join("dt=1970-01-01/hour=00/_SUCCESS");
        let mut sink = new_sink();
        let hour = 3_600_000;
        sink.write(&SinkBatch::of(&[
            record(r#"{"id":"a"}"#, 10),
            record(r#"{"id":"b"}"#, hour + 10),
        ]))
        .unwrap();
        // Past the hour's end, not past its lateness: nothing is declared.
        sink.observe_watermark(hour + 59_999);
        let record_1 = sink.prepare_commit().unwrap().unwrap();
        sink.commit(&record_1).unwrap();
        assert!(!marker.exists());
        assert!(visible(dir.path()).1.is_empty(), "both files stay open");

        sink.observe_watermark(hour + 60_000);
        assert!(sink.wants_commit(), "an hour to declare ends the epoch");
        let record_2 = sink.prepare_commit().unwrap().unwrap();
        assert!(!marker.exists(), "announced only once the epoch commits");
        sink.commit(&record_2).unwrap();
        assert!(marker.exists());
        assert_eq!(visible(dir.path()).1, ["a"], "hour 00 rolled, hour 01 open");

        let late = sink
            .write(&SinkBatch::of(&[
                record(r#"{"id":"late"}"#, 20),
                record(r#"{"id":"c"}"#, hour + 20),
            ]))
            .unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].index, 0);
        assert!(late[0].reason.starts_with("late: dt=1970-01-01/hour=00"));

        // A successor from the committed record knows the hour is complete.
        std::fs::remove_file(&marker).unwrap();
        let mut successor = new_sink();
        successor.recover(Some(&record_2)).unwrap();
        assert!(marker.exists(), "the redone commit announces again");
        let late = successor
            .write(&SinkBatch::of(&[record(r#"{"id":"late"}"#, 30)]))
            .unwrap();
        assert_eq!(late.len(), 1);
    }

    #[test]
    fn a_field_that_is_not_a_column_is_left_out_dead_lettered_or_an_error_as_configured() {
        let records = [
            record(r#"{"id":"a","n":1}"#, 0),
            record(r#"{"id":"b","n":2,"extra":true}"#, 0),
        ];
        let with = |policy| {
            let dir = tempfile::tempdir().unwrap();
            let breaker = Arc::new(Breaker::new("lake", &RetryConfig::default()));
            let config = ParquetSinkConfig {
                schema_subject: None,
                extra_fields: policy,
                ..config(dir.path())
            };
            let mut sink = ParquetSink::new("lake", &config, None, breaker).unwrap();
            let written = sink.write(&SinkBatch::of(&records));
            let ids = written.is_ok().then(|| {
                sink.close().unwrap();
                visible(dir.path()).1
            });
            (written, ids)
        };
        let (ignored, ids) = with(ExtraFields::Ignore);
        assert!(ignored.unwrap().is_empty());
        assert_eq!(ids.unwrap(), ["a", "b"]);
        let (dead, ids) = with(ExtraFields::DeadLetter);
        let dead = dead.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].index, 1);
        assert!(dead[0].reason.contains("\"extra\""), "{}", dead[0].reason);
        assert_eq!(ids.unwrap(), ["a"]);
        let (error, _) = with(ExtraFields::Error);
        let error = error.unwrap_err().to_string();
        assert!(
            error.contains("\"extra\"") && error.contains("extra_fields"),
            "{error}"
        );
    }

    #[test]
    fn refuses_records_that_do_not_fit_naming_the_field_and_writes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = sink(dir.path(), None);
        let hour = 3_600_000;
        let records = [
            record(r#"{"id":"a","n":1,"tags":["x"]}"#, 0),
            record(r#"{"id":"b","n":"two"}"#, 0),
            record(r#"{"n":3}"#, 0),
            record(r#"{"id":"d","extra":true}"#, hour),
        ];
        let rejections = sink.write(&SinkBatch::of(&records)).unwrap();
        assert_eq!(
            rejections.iter().map(|r| r.index).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(
            rejections[0].reason.contains("'n'") || rejections[0].reason.contains("\"n\""),
            "{}",
            rejections[0].reason
        );
        assert!(
            rejections[1].reason.contains("id"),
            "{}",
            rejections[1].reason
        );
        assert!(visible(dir.path()).0.is_empty(), "nothing before a roll");
        sink.close().unwrap();
        let (files, ids) = visible(dir.path());
        assert_eq!(files.len(), 2);
        assert_eq!(ids, ["a", "d"]);
    }

    /// The actions of a Delta table's log, commit by commit.
    fn delta_log(root: &Path) -> Vec<Vec<serde_json::Value>> {
        let mut commits: Vec<PathBuf> = std::fs::read_dir(root.join("_delta_log"))
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        commits.retain(|p| p.extension().is_some_and(|e| e == "json"));
        commits.sort();
        commits
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_delta_table_adds_each_epochs_files_once_with_the_epoch_as_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let config = ParquetSinkConfig {
            roll_size: crate::units::ByteSize(1024),
            ..config(dir.path())
        };
        let new_sink = || partition_sink(&config).logging_to_delta(&config).unwrap();
        let mut sink = new_sink();
        let rows: Vec<SinkRecord> = (0..200)
            .map(|i| record(&format!(r#"{{"id":"{i:0>64}"}}"#), i * 36_000))
            .collect();
        sink.write(&SinkBatch::of(&rows)).unwrap();
        let record = sink.prepare_commit().unwrap().unwrap();
        sink.commit(&record).unwrap();
        let log = delta_log(dir.path());
        let adds = |commit: &Vec<serde_json::Value>| -> Vec<serde_json::Value> {
            commit
                .iter()
                .filter_map(|a| a.get("add").cloned())
                .collect()
        };
        // The table's creation, then one commit with both hours' files and the epoch.
        assert_eq!(log.len(), 2, "{log:?}");
        let added = adds(&log[1]);
        assert_eq!(added.len(), 2);
        assert_eq!(
            added[0]["partitionValues"],
            serde_json::json!({"dt": "1970-01-01", "hour": "0"})
        );
        assert_eq!(
            added[1]["partitionValues"],
            serde_json::json!({"dt": "1970-01-01", "hour": "1"})
        );
        let txn = log[1].iter().find_map(|a| a.get("txn")).unwrap();
        assert_eq!(txn["appId"], "weir-lake-clicks-0");

        // The commit redone, by this writer or by a successor from the record: no new commit.
        sink.commit(&record).unwrap();
        // A compaction may have joined the epoch's files into another and vacuumed them
        // since: a successor does not publish them again (their parts are long deleted).
        for add in &added {
            std::fs::remove_file(dir.path().join(add["path"].as_str().unwrap())).unwrap();
        }
        let mut successor = new_sink();
        successor.recover(Some(&record)).unwrap();
        assert_eq!(delta_log(dir.path()).len(), 2);
        // The successor's next epochs come after the recovered one.
        successor
            .write(&SinkBatch::of(&[record_at("late-ish", 3 * 3_600_000)]))
            .unwrap();
        successor.finish_files();
        let next = successor.prepare_commit().unwrap().unwrap();
        successor.commit(&next).unwrap();
        let log = delta_log(dir.path());
        assert_eq!(log.len(), 3);
        let versions: Vec<i64> = log[1..]
            .iter()
            .map(|c| c.iter().find_map(|a| a["txn"]["version"].as_i64()).unwrap())
            .collect();
        assert!(versions[1] > versions[0], "{versions:?}");
    }

    #[test]
    fn a_file_spans_epochs_and_only_committed_parts_survive_a_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope {
            topic: "clicks".into(),
            partition: 0,
        };
        let mut first = sink(dir.path(), Some(scope.clone()));
        first
            .write(&SinkBatch::of(&[record(r#"{"id":"e1"}"#, 0)]))
            .unwrap();
        let committed = first.prepare_commit().unwrap().unwrap();
        first.commit(&committed).unwrap();
        assert!(!first.wants_commit(), "a young file does not roll");
        // The next epoch stages its part, then the process dies before the commit.
        first
            .write(&SinkBatch::of(&[record(r#"{"id":"lost"}"#, 0)]))
            .unwrap();
        first.prepare_commit().unwrap();
        assert!(visible(dir.path()).0.is_empty());
        drop(first);

        let mut second = sink(dir.path(), Some(scope));
        second.recover(Some(&committed)).unwrap();
        second
            .write(&SinkBatch::of(&[record(r#"{"id":"e2"}"#, 0)]))
            .unwrap();
        second.finish_files();
        assert!(second.wants_commit());
        let last = second.prepare_commit().unwrap().unwrap();
        assert!(
            visible(dir.path()).0.is_empty(),
            "visible only after the commit"
        );
        second.commit(&last).unwrap();
        second.commit(&last).unwrap();
        let (files, ids) = visible(dir.path());
        assert_eq!(files.len(), 1, "one file for both epochs");
        assert_eq!(ids, ["e1", "e2"]);
        let staged = dir.path().join(STAGING_DIR).join("clicks-0");
        let left: Vec<_> = walk(&staged);
        assert!(left.is_empty(), "staged parts are gone: {left:?}");
    }

    #[test]
    fn a_recovery_deletes_uncommitted_parts_only_after_its_own_commit() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope {
            topic: "clicks".into(),
            partition: 0,
        };
        let mut owner = sink(dir.path(), Some(scope.clone()));
        owner
            .write(&SinkBatch::of(&[record(r#"{"id":"e1"}"#, 0)]))
            .unwrap();
        let committed = owner.prepare_commit().unwrap().unwrap();
        owner.commit(&committed).unwrap();
        // The owner stages its next epoch; meanwhile an instance the group has dropped (a
        // zombie) recovers the partition from the committed record.
        owner
            .write(&SinkBatch::of(&[record(r#"{"id":"e2"}"#, 0)]))
            .unwrap();
        let in_flight = owner.prepare_commit().unwrap().unwrap();
        let mut zombie = sink(dir.path(), Some(scope));
        zombie.recover(Some(&committed)).unwrap();
        drop(zombie);
        // The owner's epoch commits: its part is still there to publish.
        owner.commit(&in_flight).unwrap();
        owner.finish_files();
        let last = owner.prepare_commit().unwrap().unwrap();
        owner.commit(&last).unwrap();
        assert_eq!(visible(dir.path()).1, ["e1", "e2"]);
    }

    #[test]
    fn a_file_published_by_an_epoch_recovery_cannot_see_is_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope {
            topic: "clicks".into(),
            partition: 0,
        };
        let mut first = sink(dir.path(), Some(scope.clone()));
        first
            .write(&SinkBatch::of(&[record(r#"{"id":"e1"}"#, 0)]))
            .unwrap();
        let older = first.prepare_commit().unwrap().unwrap();
        first.commit(&older).unwrap();
        // An epoch that only rolls the file commits and publishes it; recovery then has to
        // start from the older record, which still lists the file as open.
        first.finish_files();
        let rolled = first.prepare_commit().unwrap().unwrap();
        first.commit(&rolled).unwrap();
        drop(first);

        let mut second = sink(dir.path(), Some(scope));
        second.recover(Some(&older)).unwrap();
        second
            .write(&SinkBatch::of(&[record(r#"{"id":"e2"}"#, 0)]))
            .unwrap();
        second.finish_files();
        let last = second.prepare_commit().unwrap().unwrap();
        second.commit(&last).unwrap();
        let (files, mut ids) = visible(dir.path());
        // Files made in the same millisecond sort by their random suffix.
        ids.sort();
        assert_eq!(ids, ["e1", "e2"]);
        assert_eq!(files.len(), 2, "the new row went to a new file");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flat_map(|e| {
                let path = e.unwrap().path();
                if path.is_dir() {
                    walk(&path)
                } else {
                    vec![path]
                }
            })
            .collect()
    }
}
