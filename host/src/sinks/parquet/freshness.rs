//! Lake freshness: the newest event time among the rows of the files a Parquet sink has
//! published, as the gauge `weir_sink_lake_event_time_seconds`; `time()` minus it is how far
//! behind the lake is. Kept in memory: after a restart it counts from the files this process
//! publishes.

use std::collections::BTreeMap;

use crate::sinks::staging::Scope;

/// The gauge's name.
pub const GAUGE: &str = "weir_sink_lake_event_time_seconds";

/// The newest event times of one sink's open, rolled and published files.
#[derive(Debug)]
pub struct Freshness {
    sink: String,
    scope: Option<Scope>,
    /// Open files by folder: the newest event time written to each.
    open: BTreeMap<String, i64>,
    /// Rolled files waiting for their epoch to commit, by final key.
    rolled: BTreeMap<String, i64>,
    /// The newest event time published.
    published: Option<i64>,
}

impl Freshness {
    /// Tracks sink `sink`, per partition when it has a `scope`.
    pub fn new(sink: &str, scope: Option<Scope>) -> Self {
        Freshness {
            sink: sink.to_string(),
            scope,
            open: BTreeMap::new(),
            rolled: BTreeMap::new(),
            published: None,
        }
    }

    /// Rows as new as `newest` went to the open file of `folder`.
    pub fn wrote(&mut self, folder: &str, newest: i64) {
        let time = self.open.entry(folder.to_string()).or_insert(newest);
        *time = (*time).max(newest);
    }

    /// The open file of `folder` rolled into `file`, to be published when its epoch commits.
    pub fn rolled(&mut self, folder: &str, file: &str) {
        if let Some(time) = self.open.remove(folder) {
            self.rolled.insert(file.to_string(), time);
        }
    }

    /// `file` is visible in the lake.
    pub fn published(&mut self, file: &str) {
        let Some(time) = self.rolled.remove(file) else {
            return;
        };
        if self.published >= Some(time) {
            return;
        }
        self.published = Some(time);
        let seconds = time as f64 / 1000.0;
        match &self.scope {
            Some(scope) => crate::partition_gauges::set_for_sink(
                GAUGE,
                &scope.topic,
                scope.partition,
                &self.sink,
                seconds,
            ),
            None => metrics::gauge!(GAUGE, "sink" => self.sink.clone()).set(seconds),
        }
    }

    /// The sink went back to a checkpoint: what was written since is gone, and only the
    /// rolled files `committed` names will be published.
    pub fn recovered(&mut self, committed: impl Fn(&str) -> bool) {
        self.open.clear();
        self.rolled.retain(|file, _| committed(file));
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::DebugValue;

    use super::*;

    #[test]
    fn the_newest_published_time_counts_and_never_goes_back() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let gauge = || {
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .find_map(|(key, .., value)| match value {
                    DebugValue::Gauge(v) if key.key().name() == GAUGE => Some(v.into_inner()),
                    _ => None,
                })
        };
        metrics::with_local_recorder(&recorder, || {
            let mut freshness = Freshness::new("lake", None);
            freshness.wrote("dt=2026-12-06/hour=10", 36_000_000);
            freshness.wrote("dt=2026-12-06/hour=10", 36_500_000);
            freshness.wrote("dt=2026-12-06/hour=11", 40_000_000);
            freshness.rolled("dt=2026-12-06/hour=10", "a.parquet");
            freshness.rolled("dt=2026-12-06/hour=11", "b.parquet");
            freshness.published("b.parquet");
            assert_eq!(gauge(), Some(40_000.0));
            // An older file published later leaves the time where it is.
            freshness.published("a.parquet");
            assert_eq!(freshness.published, Some(40_000_000));
            // A rewound epoch's rolled files are never published.
            freshness.wrote("dt=2026-12-06/hour=12", 45_000_000);
            freshness.rolled("dt=2026-12-06/hour=12", "c.parquet");
            freshness.recovered(|_| false);
            freshness.published("c.parquet");
            assert_eq!(freshness.published, Some(40_000_000));
        });
    }
}
