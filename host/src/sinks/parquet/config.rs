//! Settings of the Parquet sink.

use serde::Deserialize;

use crate::sinks::resilience::RetryConfig;
use crate::storage::S3Options;
use crate::units::{ByteSize, HumanDuration};

/// A Parquet sink on a local folder or an S3-compatible bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// The routes this sink takes.
    pub routes: Vec<String>,
    /// Root of the table: a folder, `file:///abs/path` or `s3://bucket/prefix`; files go
    /// under `dt=YYYY-MM-DD/hour=HH/`.
    pub path: String,
    /// Settings of an `s3://` path.
    #[serde(default)]
    pub s3: S3Options,
    /// Columns, in order.
    #[serde(default)]
    pub schema: Vec<ColumnConfig>,
    /// Instead of `schema`: the columns of this schema registry subject's latest version
    /// (Avro or Protobuf), fetched at start.
    #[serde(default)]
    pub schema_subject: Option<String>,
    /// What happens to a record with a field that is not a column (see [`ExtraFields`]).
    #[serde(default)]
    pub extra_fields: ExtraFields,
    /// A file is closed and a new one started past this size.
    #[serde(default = "default_roll_size")]
    pub roll_size: ByteSize,
    /// A file is closed and a new one started after it has been open this long.
    #[serde(default = "default_roll_interval")]
    pub roll_interval: HumanDuration,
    /// Rows per row group.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// zstd compression level (1-22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Retries and circuit breaker of the store.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Completion markers: a `_SUCCESS` file in each hour's folder once the hour is
    /// complete; off without this section.
    #[serde(default)]
    pub completion: Option<super::CompletionConfig>,
}

/// The policy for a record's fields that are not columns of the sink's schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtraFields {
    /// Store the columns, leave the other fields out; counted in
    /// `weir_sink_extra_fields_total`, and the first such field of a run is logged.
    #[default]
    Ignore,
    /// Send the record to the dead-letter output, naming the field.
    DeadLetter,
    /// Fail the write, naming the field: a file run stops; a Kafka run's epochs fail until the
    /// schema or the plugin is fixed.
    Error,
}

/// One column of the declared schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// JSON field name, also the column name.
    pub name: String,
    /// Type: `string`, `bool`, `int32`, `int64`, `float32`, `float64`, `timestamp_ms`,
    /// `timestamp_us`, `date32`, `list<T>`, `struct<name: T, ...>`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether the field may be missing or null. A missing non-nullable field refuses the record.
    #[serde(default = "default_nullable")]
    pub nullable: bool,
    /// Dictionary-encode the column (the default): small files and fast scans for columns with
    /// few distinct values. Turn it off for columns whose values are mostly distinct (event or
    /// session ids): the writer then skips building a dictionary it would abandon.
    #[serde(default = "default_dictionary")]
    pub dictionary: bool,
}

fn default_dictionary() -> bool {
    true
}

fn default_roll_size() -> ByteSize {
    ByteSize(128 << 20)
}

fn default_roll_interval() -> HumanDuration {
    HumanDuration::from_secs(300)
}

fn default_row_group_rows() -> usize {
    128 * 1024
}

fn default_zstd_level() -> i32 {
    3
}

fn default_nullable() -> bool {
    true
}

impl ParquetSinkConfig {
    /// Checks the schema and limits; errors are `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::storage::validate_location(&self.path).map_err(|e| ("path".into(), e))?;
        self.retry.validate()?;
        match (&self.schema_subject, self.schema.is_empty()) {
            (Some(_), false) => {
                return Err((
                    "schema_subject".into(),
                    "give the columns in `schema` or a `schema_subject`, not both".into(),
                ));
            }
            (None, true) => {
                return Err(("schema".into(), "must declare at least one column".into()));
            }
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        for (i, column) in self.schema.iter().enumerate() {
            if column.name.is_empty() || !seen.insert(&column.name) {
                return Err((
                    format!("schema[{i}].name"),
                    format!("{:?} is empty or repeated", column.name),
                ));
            }
            super::parse_type(&column.data_type).map_err(|e| (format!("schema[{i}].type"), e))?;
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(("zstd_level".into(), "must be between 1 and 22".into()));
        }
        if self.row_group_rows == 0 {
            return Err(("row_group_rows".into(), "must be positive".into()));
        }
        if self.roll_size.0 < 1024 {
            return Err(("roll_size".into(), "must be at least 1KiB".into()));
        }
        Ok(())
    }

    /// Checks the settings of a Delta table (`type = "delta"`).
    pub fn validate_for_delta(&self) -> Result<(), (String, String)> {
        self.validate()?;
        if self.schema_subject.is_some() {
            // The columns come at start; the sink checks them then.
            return Ok(());
        }
        let schema = super::schema_of(&self.schema).map_err(|e| ("schema".into(), e))?;
        super::delta_log::delta_schema(&schema).map_err(|e| ("schema".into(), e))?;
        Ok(())
    }
}
