//! Completion markers: an hour's `dt=…/hour=…` folder announces with a `_SUCCESS` file that no
//! more rows will come to it, once every writer of the table (each source partition) has
//! published its files of that hour and its watermark has passed the hour's end plus the
//! allowed lateness. Each writer keeps its progress in `_completion/<writer>`; a writer that
//! finds every progress past an hour writes that hour's marker. Rows that come later for an
//! hour their writer has declared complete are late: dead-lettered or kept under `_late/`.

use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::sinks::resilience::Breaker;
use crate::sinks::{SinkError, now_ms};
use crate::storage::Storage;
use crate::units::HumanDuration;

/// An hour in ms: tables are partitioned by the hour of their rows' event time.
pub const HOUR_MS: i64 = 3_600_000;

/// The marker's file name in a complete hour's folder, as Hadoop and Flink write it.
pub const MARKER: &str = "_SUCCESS";

/// Folder of the writers' progress files; readers skip names starting with `_`.
const PROGRESS_DIR: &str = "_completion";

/// Folder under the table's root that keeps late rows under `late = "folder"`.
pub const LATE_DIR: &str = "_late";

/// The gauge of the end of the newest hour whose marker is written, in seconds.
pub const GAUGE: &str = "weir_sink_lake_complete_until_seconds";

/// The hour a finished writer (its watermark at the end of time) declares complete through.
const END_OF_TIME: i64 = i64::MAX / HOUR_MS - 1;

/// Markers written at most this far back from the newest complete hour in one pass (a
/// year): a writer whose oldest rows are older leaves those hours unmarked, and says so.
const MAX_HOURS_MARKED: i64 = 24 * 366;

/// `[sinks.NAME.completion]`: completion markers and what happens to late rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionConfig {
    /// How long after an hour's end (by the watermark, in event time) its rows may still
    /// come; the hour is complete after that.
    #[serde(default = "default_lateness")]
    pub lateness: HumanDuration,
    /// Where rows go that come for an hour already declared complete (see [`LateRows`]).
    #[serde(default)]
    pub late: LateRows,
}

fn default_lateness() -> HumanDuration {
    HumanDuration::from_secs(0)
}

/// Where rows go that come for an hour already declared complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LateRows {
    /// To the dead-letter output, with the reason `late: …` (class `late`).
    #[default]
    DeadLetter,
    /// Into `_late/dt=…/hour=…/` under the table's root, published like any file.
    Folder,
}

/// The writers that fill one table together, and which of them this sink is.
#[derive(Debug, Clone)]
pub struct Writers {
    /// This sink's writer name: its source partition (`topic-3`) or file partition.
    pub this: String,
    /// Every writer of the table.
    pub all: Arc<[String]>,
}

impl Writers {
    /// A table with one writer.
    pub fn alone(name: &str) -> Self {
        Writers {
            this: name.to_string(),
            all: Arc::from(vec![name.to_string()]),
        }
    }
}

/// What a writer has declared, in its progress file and its commit records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The oldest hour it has rows in that is not known to be marked.
    pub oldest: Option<i64>,
    /// The newest hour it has rows in.
    pub newest: Option<i64>,
    /// Every hour up to this one is complete as far as this writer goes.
    pub through: Option<i64>,
}

impl Progress {
    /// The newest hour this writer knows of: its newest rows, or a finite `through`.
    fn reach(&self) -> Option<i64> {
        let through = self.through.filter(|t| *t < END_OF_TIME);
        self.newest.max(through)
    }
}

/// One writer's completion: the watermark it has seen and the hours it has declared.
#[derive(Debug)]
pub struct Completion {
    sink: String,
    lateness_ms: i64,
    late: LateRows,
    writers: Writers,
    watermark: i64,
    progress: Progress,
    /// Markers known to exist up to this hour.
    marked: Option<i64>,
}

/// The folder of hour `hour` (hours since the Unix epoch).
pub fn folder_of_hour(hour: i64) -> String {
    super::partition_of(hour.saturating_mul(HOUR_MS))
}

/// The hour of folder `dt=YYYY-MM-DD/hour=HH`; `None` for any other folder (late rows').
pub fn hour_of_folder(folder: &str) -> Option<i64> {
    let (date, hour) = folder.strip_prefix("dt=")?.split_once("/hour=")?;
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let hour: i64 = hour.parse().ok()?;
    let days = date
        .signed_duration_since(chrono::NaiveDate::default())
        .num_days();
    Some(days * 24 + hour)
}

fn progress_key(writer: &str) -> String {
    format!("{PROGRESS_DIR}/{writer}.json")
}

fn marker_key(hour: i64) -> String {
    format!("{}/{MARKER}", folder_of_hour(hour))
}

impl Completion {
    /// The completion of `writers.this` in sink `sink`.
    pub fn new(sink: &str, config: &CompletionConfig, writers: Writers) -> Self {
        Completion {
            sink: sink.to_string(),
            lateness_ms: i64::try_from(config.lateness.0.as_millis()).unwrap_or(i64::MAX),
            late: config.late,
            writers,
            watermark: i64::MIN,
            progress: Progress::default(),
            marked: None,
        }
    }

    /// The writer's watermark moved to `watermark`.
    pub fn observe(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
    }

    /// Rows of `hour` went into its folder.
    pub fn wrote(&mut self, hour: i64) {
        let p = &mut self.progress;
        p.oldest = Some(p.oldest.map_or(hour, |o| o.min(hour)));
        p.newest = p.newest.max(Some(hour));
    }

    /// Whether rows of `hour` are late: this writer has declared the hour complete.
    pub fn is_late(&self, hour: i64) -> bool {
        self.progress.through.is_some_and(|t| hour <= t)
    }

    /// Where late rows go.
    pub fn late_rows(&self) -> LateRows {
        self.late
    }

    /// Declares complete every hour whose end plus the lateness the watermark has passed;
    /// returns the newest one if that moved. Files of those hours must be rolled into the
    /// same epoch.
    pub fn declare(&mut self) -> Option<i64> {
        let hour = self.declarable()?;
        self.progress.through = Some(hour);
        Some(hour)
    }

    /// Whether the watermark has passed an hour this writer has not declared complete.
    pub fn can_declare(&self) -> bool {
        self.declarable().is_some()
    }

    fn declarable(&self) -> Option<i64> {
        let hour = match self.watermark {
            i64::MIN => return None,
            i64::MAX => END_OF_TIME,
            w => w.saturating_sub(self.lateness_ms).div_euclid(HOUR_MS) - 1,
        };
        (self.progress.through < Some(hour)).then_some(hour)
    }

    /// The writers that fill the table together.
    pub fn set_writers(&mut self, writers: Writers) {
        self.writers = writers;
    }

    /// What this writer has declared, for its commit record.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Starts from a committed record's progress (or none).
    pub fn restore(&mut self, progress: Progress) {
        self.progress = progress;
    }

    /// Publishes `progress` (declared by an epoch whose files are published) and writes the
    /// marker of every hour that all the table's writers have declared complete.
    /// Idempotent: a redone commit writes the same.
    pub fn announce(
        &mut self,
        storage: &Storage,
        breaker: &Breaker,
        progress: &Progress,
    ) -> Result<Option<RangeInclusive<i64>>, SinkError> {
        let own = serde_json::to_vec(progress).unwrap_or_default();
        let key = progress_key(&self.writers.this);
        breaker.call("writing completion progress", || {
            storage.put(&key, Bytes::from(own.clone()))
        })?;
        let mut all = Vec::with_capacity(self.writers.all.len());
        for writer in self.writers.all.iter() {
            let key = progress_key(writer);
            let found = breaker.call("reading completion progress", || storage.get(&key))?;
            let Some(found) = found.and_then(|b| serde_json::from_slice::<Progress>(&b).ok())
            else {
                return Ok(None);
            };
            all.push(found);
        }
        let Some(range) = self.unmarked(&all) else {
            return Ok(None);
        };
        let (first, last) = (range.start(), range.end());
        for hour in range.clone() {
            let key = marker_key(hour);
            breaker.call("writing a completion marker", || {
                if storage.exists(&key)? {
                    return Ok(());
                }
                let body = serde_json::json!({
                    "partition": folder_of_hour(hour),
                    "completed_at_ms": now_ms(),
                    "writers": self.writers.all.len(),
                });
                storage.put(&key, Bytes::from(body.to_string()))
            })?;
        }
        tracing::info!(sink = %self.sink, from = %folder_of_hour(*first), through = %folder_of_hour(*last), "Partitions complete: markers written.");
        self.marked = Some(*last);
        if self.progress.oldest.is_some_and(|o| o <= *last) {
            self.progress.oldest = None;
        }
        metrics::gauge!(GAUGE, "sink" => self.sink.clone())
            .set(((*last + 1) * HOUR_MS) as f64 / 1000.0);
        Ok(Some(range))
    }

    /// How many writers fill the table together.
    pub fn writer_count(&self) -> usize {
        self.writers.all.len()
    }

    /// The hours every writer has declared complete whose markers this writer has not
    /// written yet.
    fn unmarked(&self, all: &[Progress]) -> Option<RangeInclusive<i64>> {
        let complete = all.iter().map(|p| p.through).min()??;
        let last = complete.min(all.iter().filter_map(Progress::reach).max()?);
        let oldest = all.iter().filter_map(|p| p.oldest.or(p.through)).min()?;
        let mut first = self.marked.map_or(oldest, |m| m + 1);
        if last - first >= MAX_HOURS_MARKED {
            tracing::warn!(sink = %self.sink, from = %folder_of_hour(first), "Rows older than a year before the newest complete hour: their hours get no completion marker.");
            first = last - MAX_HOURS_MARKED + 1;
        }
        (first <= last).then_some(first..=last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H10: i64 = 493_618; // 2026-04-24 10:00 UTC, in hours since the epoch

    fn config(lateness_secs: u64) -> CompletionConfig {
        CompletionConfig {
            lateness: HumanDuration::from_secs(lateness_secs),
            late: LateRows::DeadLetter,
        }
    }

    fn writers(this: &str, all: &[&str]) -> Writers {
        Writers {
            this: this.to_string(),
            all: all.iter().map(|w| w.to_string()).collect(),
        }
    }

    fn markers(storage: &Storage) -> Vec<String> {
        let mut found: Vec<String> = storage
            .list_all("")
            .unwrap()
            .into_iter()
            .filter(|k| k.ends_with(MARKER))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn folders_and_hours_map_both_ways() {
        assert_eq!(hour_of_folder(&folder_of_hour(H10)), Some(H10));
        assert_eq!(folder_of_hour(H10), "dt=2026-04-24/hour=10");
        assert_eq!(hour_of_folder("_late/dt=2026-04-24/hour=10"), None);
    }

    #[test]
    fn an_hour_is_declared_once_the_watermark_passes_its_end_plus_the_lateness() {
        let mut c = Completion::new("lake", &config(600), Writers::alone("w"));
        assert_eq!(c.declare(), None, "no watermark yet");
        c.wrote(H10);
        c.observe((H10 + 1) * HOUR_MS + 599_999);
        assert_eq!(c.declare(), Some(H10 - 1));
        assert!(!c.is_late(H10));
        c.observe((H10 + 1) * HOUR_MS + 600_000);
        assert_eq!(c.declare(), Some(H10));
        assert_eq!(c.declare(), None, "declared once");
        assert!(c.is_late(H10) && !c.is_late(H10 + 1));
        c.observe(i64::MAX);
        assert!(c.declare().is_some());
        assert!(c.is_late(H10 + 1_000_000));
    }

    #[test]
    fn markers_wait_for_every_writer_and_cover_hours_without_rows() {
        let storage = Storage::in_memory();
        let breaker = Breaker::new("lake", &crate::sinks::resilience::RetryConfig::default());
        let group = ["t-0", "t-1"];
        let mut first = Completion::new("lake", &config(0), writers("t-0", &group));
        let mut second = Completion::new("lake", &config(0), writers("t-1", &group));
        first.wrote(H10);
        first.observe((H10 + 3) * HOUR_MS);
        first.declare();
        first
            .announce(&storage, &breaker, &first.progress())
            .unwrap();
        assert!(markers(&storage).is_empty(), "t-1 has declared nothing");
        // t-1 has rows only two hours later; its watermark passed hour 11 only.
        second.wrote(H10 + 2);
        second.observe((H10 + 2) * HOUR_MS);
        second.declare();
        second
            .announce(&storage, &breaker, &second.progress())
            .unwrap();
        assert_eq!(
            markers(&storage),
            [
                "dt=2026-04-24/hour=10/_SUCCESS",
                "dt=2026-04-24/hour=11/_SUCCESS"
            ]
        );
        // The end of input: everything both have rows in is complete, nothing beyond.
        second.observe(i64::MAX);
        second.declare();
        second
            .announce(&storage, &breaker, &second.progress())
            .unwrap();
        assert_eq!(markers(&storage).len(), 3);
        assert!(markers(&storage)[2].starts_with("dt=2026-04-24/hour=12/"));
    }
}
