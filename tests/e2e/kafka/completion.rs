//! Completion markers on Kafka: an hour of the lake gets its `_SUCCESS` only once all four
//! source partitions have passed it, and then holds every row it will ever hold (the same
//! rows as a reference run over the whole input); a kill -9 changes nothing of that.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::{Broker, WeirProcess, clickstream, pipeline_config, produce, wait_for};

/// The example pipeline with completion markers on its events lake, two minutes of lateness
/// (more than sessionize's allowed lateness, so no row of the example comes late to it).
fn completion_config(bootstrap: &str, out: &Path, group: &str) -> std::path::PathBuf {
    let path = pipeline_config(bootstrap, out, group);
    let text = std::fs::read_to_string(&path).unwrap();
    let marked = text.replace(
        "[sinks.lake]\ntype = \"parquet\"\n",
        "[sinks.lake]\ntype = \"parquet\"\ncompletion = { lateness = \"2m\" }\n",
    );
    assert_ne!(marked, text, "the example's lake sink moved");
    std::fs::write(&path, marked).unwrap();
    path
}

/// The hours of `lake` (`dt=…/hour=…`) that have a completion marker, oldest first.
fn marked(lake: &Path) -> Vec<String> {
    let mut hours = Vec::new();
    for day in std::fs::read_dir(lake).into_iter().flatten().flatten() {
        for hour in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if hour.path().join("_SUCCESS").exists() {
                hours.push(format!(
                    "{}/{}",
                    day.file_name().to_string_lossy(),
                    hour.file_name().to_string_lossy()
                ));
            }
        }
    }
    hours.sort();
    hours
}

/// Rows per hour of the events lake, read by DuckDB.
fn rows_per_hour(lake: &Path) -> BTreeMap<String, u64> {
    let script = format!(
        "import duckdb, json\n\
         con = duckdb.connect()\n\
         q = \"select dt::varchar, hour, count(*) from read_parquet('{}/dt=*/hour=*/*.parquet', hive_partitioning = true) group by all\"\n\
         print(json.dumps({{f'dt={{d}}/hour={{int(h):02d}}': n for d, h, n in con.sql(q).fetchall()}}))\n",
        lake.display()
    );
    serde_json::from_str(&crate::harness::python(&script)).unwrap()
}

#[test]
fn an_hour_is_marked_complete_once_every_partition_passed_it_and_holds_all_its_rows() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let lines = clickstream(300);
    // Events up to 20:00 first: every partition's watermark passes 18:00 plus the lateness,
    // none passes 20:00.
    let (early, late): (Vec<String>, Vec<String>) = lines
        .iter()
        .cloned()
        .partition(|l| !l.contains("\"ts\":\"2026-11-26T2") && !l.contains("2026-11-27T"));
    produce(&bootstrap, "clicks", &early);
    let out = tempfile::tempdir().unwrap();
    let config = completion_config(&bootstrap, out.path(), "marks");
    let lake = out.path().join("lake/events");
    let running = WeirProcess::start(&config, "marks", false);
    wait_for("markers up to 17:00", Duration::from_secs(120), || {
        marked(&lake).contains(&"dt=2026-11-26/hour=17".to_string())
    });
    // Epochs go on (one a second) with no new input: no more hours become complete.
    std::thread::sleep(Duration::from_secs(4));
    let while_running = marked(&lake);
    let rows_when_marked = rows_per_hour(&lake);
    running.kill();
    let first = while_running.first().map(String::as_str);
    let newest = while_running.last().map(String::as_str);
    assert_eq!(first, Some("dt=2026-11-26/hour=08"), "{while_running:?}");
    assert!(
        newest < Some("dt=2026-11-26/hour=19"),
        "an hour no partition has passed is marked: {while_running:?}"
    );
    let hour = |folder: &str| -> usize { folder.rsplit_once("hour=").unwrap().1.parse().unwrap() };
    assert_eq!(
        while_running.len(),
        hour(newest.unwrap()) - 8 + 1,
        "marked hours are not contiguous: {while_running:?}"
    );

    // The rest of the input, and a bounded run to its end: every hour gets its marker, and
    // the hours marked before hold the rows they held then, which are a whole run's rows.
    produce(&bootstrap, "clicks", &late);
    WeirProcess::start(&config, "marks", true).wait_success(Duration::from_secs(300));
    let reference = tempfile::tempdir().unwrap();
    let reference_config = completion_config(&bootstrap, reference.path(), "reference");
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));
    let expected = rows_per_hour(&reference.path().join("lake/events"));
    let hours: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(
        marked(&lake),
        hours,
        "every hour with rows is marked at the end"
    );
    for hour in &while_running {
        assert_eq!(
            rows_when_marked.get(hour),
            expected.get(hour),
            "{hour} was marked complete before it held all its rows"
        );
    }
    assert_eq!(rows_per_hour(&lake), expected);
    let progress = std::fs::read_dir(lake.join("_completion")).unwrap().count();
    assert_eq!(progress, 4, "one progress file per source partition");
}
