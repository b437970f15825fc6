//! Writes routed records as Parquet: one open file per `dt=/hour=` folder, written under a
//! hidden in-progress name and renamed into place when it rolls (on size or age) or when the
//! sink closes, so readers only ever see whole files. Under checkpoints (a [`Scope`] is set)
//! finished files wait in the scope's staging folder until their epoch commits, and every
//! epoch's files are finished at its end.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_json::ReaderBuilder;
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{ParquetSinkConfig, schema_of};
use crate::sinks::staging::{self, PostCommit, Scope};
use crate::sinks::{Rejection, Sink, SinkError, SinkRecord, io_error};

/// A file being written.
struct OpenFile {
    writer: ArrowWriter<File>,
    in_progress: PathBuf,
    final_path: PathBuf,
    opened_at: Instant,
}

/// The Parquet sink.
pub struct ParquetSink {
    name: String,
    root: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    roll_size: usize,
    roll_interval: std::time::Duration,
    run_id: String,
    next_file: u64,
    open: HashMap<String, OpenFile>,
    scope: Option<Scope>,
    staged: Vec<PostCommit>,
}

/// The Hive partition folder of an event time.
pub fn partition_of(time_ms: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(time_ms).unwrap_or_default();
    t.format("dt=%Y-%m-%d/hour=%H").to_string()
}

impl ParquetSink {
    /// Creates the sink; the table folder is created on first write. With a `scope`, files
    /// are staged until [`Sink::prepare_commit`]'s steps publish them.
    pub fn new(
        name: &str,
        config: &ParquetSinkConfig,
        scope: Option<Scope>,
    ) -> Result<Self, SinkError> {
        let setup = |reason: String| SinkError::Setup {
            sink: name.to_string(),
            reason,
        };
        let schema = schema_of(&config.schema).map_err(setup)?;
        let level = ZstdLevel::try_new(config.zstd_level).map_err(|e| setup(e.to_string()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(config.row_group_rows))
            .build();
        let run_id = format!(
            "{}-{:04x}",
            Utc::now().format("%Y%m%dT%H%M%SZ"),
            rand::random::<u16>()
        );
        Ok(ParquetSink {
            name: name.to_string(),
            root: config.path.clone(),
            schema,
            props,
            roll_size: config.roll_size.0,
            roll_interval: config.roll_interval.0,
            run_id,
            next_file: 0,
            open: HashMap::new(),
            scope,
            staged: Vec::new(),
        })
    }

    fn open_file(&mut self, partition: &str) -> Result<OpenFile, SinkError> {
        self.next_file += 1;
        let (file_name, in_progress) = match &self.scope {
            Some(scope) => {
                let name = format!(
                    "part-{}-{}-{:05}.zstd.parquet",
                    scope.label(),
                    self.run_id,
                    self.next_file
                );
                let staged = scope
                    .staging_dir(&self.root)
                    .join(partition)
                    .join(format!("{name}.staged"));
                (name, staged)
            }
            None => {
                let name = format!("part-{}-{:05}.zstd.parquet", self.run_id, self.next_file);
                let hidden = self
                    .root
                    .join(partition)
                    .join(format!(".{name}.inprogress"));
                (name, hidden)
            }
        };
        if let Some(dir) = in_progress.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| io_error(&self.name, format!("creating {}: {e}", dir.display())))?;
        }
        let file = File::create(&in_progress).map_err(|e| {
            io_error(
                &self.name,
                format!("creating {}: {e}", in_progress.display()),
            )
        })?;
        let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
            .map_err(|e| io_error(&self.name, e))?;
        Ok(OpenFile {
            writer,
            in_progress,
            final_path: self.root.join(partition).join(file_name),
            opened_at: Instant::now(),
        })
    }

    fn finish(&mut self, file: OpenFile) -> Result<(), SinkError> {
        let OpenFile {
            writer,
            in_progress,
            final_path,
            ..
        } = file;
        let file = writer.into_inner().map_err(|e| io_error(&self.name, e))?;
        file.sync_all().map_err(|e| io_error(&self.name, e))?;
        let publish = PostCommit::Publish {
            from: in_progress,
            to: final_path,
        };
        if self.scope.is_some() {
            self.staged.push(publish);
            Ok(())
        } else {
            publish.apply()
        }
    }

    fn write_partition(&mut self, partition: &str, batch: &RecordBatch) -> Result<(), SinkError> {
        let file = match self.open.remove(partition) {
            Some(file) => file,
            None => self.open_file(partition)?,
        };
        let mut file = file;
        file.writer
            .write(batch)
            .map_err(|e| io_error(&self.name, e))?;
        let size = file.writer.bytes_written() + file.writer.in_progress_size();
        if size >= self.roll_size || file.opened_at.elapsed() >= self.roll_interval {
            self.finish(file)
        } else {
            self.open.insert(partition.to_string(), file);
            Ok(())
        }
    }
}

/// Decodes JSON values into one record batch of `schema`.
fn decode(
    schema: &SchemaRef,
    values: &[&[u8]],
) -> Result<Vec<RecordBatch>, arrow_schema::ArrowError> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(values.len().max(1))
        .build_decoder()?;
    let mut batches = Vec::new();
    for value in values {
        for chunk in [*value, b"\n"] {
            let mut rest = chunk;
            while !rest.is_empty() {
                let read = decoder.decode(rest)?;
                if read == 0 {
                    batches.extend(decoder.flush()?);
                }
                rest = &rest[read..];
            }
        }
    }
    batches.extend(decoder.flush()?);
    Ok(batches)
}

fn schema_reason(e: &arrow_schema::ArrowError) -> String {
    format!("schema mismatch: {e}")
}

impl Sink for ParquetSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &[SinkRecord]) -> Result<Vec<Rejection>, SinkError> {
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            groups.entry(partition_of(r.time)).or_default().push(i);
        }
        let mut partitions: Vec<_> = groups.into_iter().collect();
        partitions.sort();
        let mut rejections = Vec::new();
        for (partition, indices) in partitions {
            let values: Vec<&[u8]> = indices
                .iter()
                .map(|i| records[*i].value.as_slice())
                .collect();
            match decode(&self.schema, &values) {
                Ok(batches) => {
                    for batch in batches {
                        self.write_partition(&partition, &batch)?;
                    }
                }
                // Decoding is all or nothing: find the records that do not fit one by one.
                Err(_) => {
                    for (index, value) in indices.into_iter().zip(values) {
                        match decode(&self.schema, &[value]) {
                            Ok(batches) => {
                                for batch in batches {
                                    self.write_partition(&partition, &batch)?;
                                }
                            }
                            Err(e) => rejections.push(Rejection {
                                index,
                                reason: schema_reason(&e),
                            }),
                        }
                    }
                }
            }
        }
        Ok(rejections)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for file in self.open.values_mut() {
            file.writer.flush().map_err(|e| io_error(&self.name, e))?;
        }
        let expired: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened_at.elapsed() >= self.roll_interval)
            .map(|(k, _)| k.clone())
            .collect();
        for partition in expired {
            if let Some(file) = self.open.remove(&partition) {
                self.finish(file)?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let mut open: Vec<_> = self.open.drain().collect();
        open.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, file) in open {
            self.finish(file)?;
        }
        Ok(())
    }

    fn prepare_commit(&mut self) -> Result<Vec<PostCommit>, SinkError> {
        self.close()?;
        Ok(std::mem::take(&mut self.staged))
    }

    fn discard_uncommitted(&mut self) -> Result<(), SinkError> {
        self.open.clear();
        self.staged.clear();
        match &self.scope {
            Some(scope) => staging::discard(&scope.staging_dir(&self.root)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::path::Path;

    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::sinks::parquet::ColumnConfig;

    fn config(root: &Path) -> ParquetSinkConfig {
        let column = |name: &str, ty: &str, nullable: bool| ColumnConfig {
            name: name.into(),
            data_type: ty.into(),
            nullable,
        };
        ParquetSinkConfig {
            routes: vec!["main".into()],
            path: root.to_path_buf(),
            schema: vec![
                column("id", "string", false),
                column("n", "int64", true),
                column("tags", "list<string>", true),
            ],
            roll_size: crate::config::ByteSize(128 << 20),
            roll_interval: crate::config::Duration::from_secs(300),
            row_group_rows: 1024,
            zstd_level: 3,
        }
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

    #[test]
    fn refuses_records_that_do_not_fit_naming_the_field_and_writes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = ParquetSink::new("lake", &config(dir.path()), None).unwrap();
        let hour = 3_600_000;
        let records = [
            record(r#"{"id":"a","n":1,"tags":["x"]}"#, 0),
            record(r#"{"id":"b","n":"two"}"#, 0),
            record(r#"{"n":3}"#, 0),
            record(r#"{"id":"d","extra":true}"#, hour),
        ];
        let rejections = sink.write(&records).unwrap();
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

        // Nothing is visible before the file rolls or the sink closes.
        let visible = |dir: &Path| -> Vec<PathBuf> {
            let mut files = Vec::new();
            for part in ["dt=1970-01-01/hour=00", "dt=1970-01-01/hour=01"] {
                if let Ok(entries) = std::fs::read_dir(dir.join(part)) {
                    files.extend(
                        entries
                            .map(|e| e.unwrap().path())
                            .filter(|p| p.extension().is_some_and(|e| e == "parquet")),
                    );
                }
            }
            files
        };
        assert!(visible(dir.path()).is_empty());
        sink.close().unwrap();
        let files = visible(dir.path());
        assert_eq!(files.len(), 2);
        let rows: i64 = files
            .iter()
            .map(|f| {
                SerializedFileReader::new(File::open(f).unwrap())
                    .unwrap()
                    .metadata()
                    .file_metadata()
                    .num_rows()
            })
            .sum();
        assert_eq!(rows, 2);
    }
}
