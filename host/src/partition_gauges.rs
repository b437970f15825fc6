//! Per-partition gauges (consumer lag, watermark lag, state and checkpoint sizes), kept apart
//! from the Prometheus recorder, which cannot forget a series: here a partition's series leave
//! `/metrics` when the partition leaves this instance, so an old owner does not keep exporting
//! a stale lag that fires alerts and misleads an autoscaler.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};

/// Every gauge kept here (the OTLP export registers one instrument per name).
pub const NAMES: [&str; 8] = [
    "weir_source_consumer_lag_records",
    "weir_source_watermark_lag_seconds",
    "weir_state_keys",
    "weir_state_timers",
    "weir_state_bytes",
    "weir_state_snapshot_bytes",
    "weir_checkpoint_chain_length",
    "weir_sink_lake_event_time_seconds",
];

/// A partition: topic and number.
type Partition = (String, i32);

/// A label beside topic and partition: `stage` or `sink`, and its value.
type Label = (&'static str, String);

/// One series: its gauge's name, its partition and, for per-stage or per-sink gauges, the
/// stage or sink.
type Series = (&'static str, Partition, Option<Label>);

#[derive(Default)]
struct Gauges {
    owned: BTreeSet<Partition>,
    values: BTreeMap<Series, f64>,
}

fn gauges() -> MutexGuard<'static, Gauges> {
    static GAUGES: Mutex<Gauges> = Mutex::new(Gauges {
        owned: BTreeSet::new(),
        values: BTreeMap::new(),
    });
    GAUGES.lock().unwrap_or_else(|p| p.into_inner())
}

/// The partition is this instance's now: its gauges may be set.
pub fn own(topic: &str, partition: i32) {
    gauges().owned.insert((topic.to_string(), partition));
}

/// The partition left this instance: its series are gone, and setting them again does nothing
/// until it is owned again (a statistics callback can come after the revocation).
pub fn release(topic: &str, partition: i32) {
    let mut gauges = gauges();
    let key = (topic.to_string(), partition);
    gauges.owned.remove(&key);
    gauges.values.retain(|(_, p, _), _| *p != key);
}

/// Every partition left this instance.
pub fn release_all() {
    let mut gauges = gauges();
    gauges.owned.clear();
    gauges.values.clear();
}

/// Sets gauge `name` of a partition this instance owns (per stage when `stage` is given).
pub fn set(name: &'static str, topic: &str, partition: i32, stage: Option<&str>, value: f64) {
    set_labeled(name, topic, partition, stage.map(|s| ("stage", s)), value);
}

/// Sets gauge `name` of a partition this instance owns, for sink `sink`.
pub fn set_for_sink(name: &'static str, topic: &str, partition: i32, sink: &str, value: f64) {
    set_labeled(name, topic, partition, Some(("sink", sink)), value);
}

fn set_labeled(
    name: &'static str,
    topic: &str,
    partition: i32,
    label: Option<(&'static str, &str)>,
    value: f64,
) {
    debug_assert!(
        NAMES.contains(&name) || name.starts_with("weir_test_"),
        "{name}"
    );
    let mut gauges = gauges();
    let key = (topic.to_string(), partition);
    if gauges.owned.contains(&key) {
        let label = label.map(|(label, value)| (label, value.to_string()));
        gauges.values.insert((name, key, label), value);
    }
}

/// Calls `each` with every series of gauge `name`: topic, partition, the stage or sink label
/// and value.
pub fn for_each(name: &str, mut each: impl FnMut(&str, i32, Option<(&str, &str)>, f64)) {
    let gauges = gauges();
    for ((series_name, (topic, partition), label), value) in &gauges.values {
        if *series_name == name {
            let label = label.as_ref().map(|(key, value)| (*key, value.as_str()));
            each(topic, *partition, label, *value);
        }
    }
}

/// The gauges in the Prometheus text format.
pub fn render() -> String {
    let gauges = gauges();
    let mut out = String::new();
    let mut last = "";
    for ((name, (topic, partition), label), value) in &gauges.values {
        if *name != last {
            let _ = writeln!(out, "# TYPE {name} gauge");
            last = name;
        }
        let _ = write!(
            out,
            "{name}{{topic=\"{}\",partition=\"{partition}\"",
            escape(topic)
        );
        if let Some((label, value)) = label {
            let _ = write!(out, ",{label}=\"{}\"", escape(value));
        }
        let _ = writeln!(out, "}} {value}");
    }
    out
}

/// A label value escaped as the text format wants.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series_of(topic: &str) -> Vec<String> {
        render()
            .lines()
            .filter(|l| l.contains(&format!("topic=\"{topic}\"")))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_released_partition_leaves_the_output_and_stays_out_until_owned_again() {
        let topic = "gauges-release-test";
        set("weir_test_lag_records", topic, 0, None, 5.0);
        assert!(series_of(topic).is_empty(), "not owned yet");
        own(topic, 0);
        own(topic, 1);
        set("weir_test_lag_records", topic, 0, None, 5.0);
        set("weir_test_lag_records", topic, 1, None, 7.0);
        set("weir_test_keys", topic, 1, Some("a \"b\""), 3.0);
        let rendered = render();
        assert!(rendered.contains("# TYPE weir_test_lag_records gauge\n"));
        assert_eq!(
            series_of(topic),
            [
                "weir_test_keys{topic=\"gauges-release-test\",partition=\"1\",stage=\"a \\\"b\\\"\"} 3",
                "weir_test_lag_records{topic=\"gauges-release-test\",partition=\"0\"} 5",
                "weir_test_lag_records{topic=\"gauges-release-test\",partition=\"1\"} 7",
            ]
        );
        release(topic, 1);
        set("weir_test_lag_records", topic, 1, None, 9.0);
        assert_eq!(
            series_of(topic),
            ["weir_test_lag_records{topic=\"gauges-release-test\",partition=\"0\"} 5"]
        );
        release(topic, 0);
        assert!(series_of(topic).is_empty());
    }
}
