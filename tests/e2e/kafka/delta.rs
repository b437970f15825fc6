//! The events lake as a Delta Lake table (`type = "delta"`) with exactly-once commits, in a
//! folder and in an S3 bucket (s3s-fs): runs killed between the Kafka commit and the table
//! commit, between a file's publication and its Delta commit, and right after the Delta
//! commit, then a run beside a compaction, then a bounded run to the end. The table, read by
//! delta-rs's Python package (`deltalake`, over S3 for the bucket), holds each event once: the
//! same events as a run into plain Parquet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use xtask::servers::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

use super::lakehouse::{die_at_each_commit_phase, s3_settings};
use super::{Broker, WeirProcess, clickstream, lake_tables, pipeline_config, produce};
use crate::harness::{python, weir_ok};

const FAILPOINTS: [&str; 3] = ["committed:2", "table-committing:2", "table-committed:2"];

/// Where a test's table lives.
#[derive(Clone, Copy)]
enum Lake<'a> {
    Folder,
    Bucket(&'a S3Server),
}

/// The example pipeline with its events lake as a Delta table (in `lake`), files rolling
/// every 2 s.
fn delta_config(bootstrap: &str, out: &Path, group: &str, lake: Lake) -> PathBuf {
    let path = pipeline_config(bootstrap, out, group);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut delta = text
        .replace(
            "[sinks.lake]\ntype = \"parquet\"\n",
            "[sinks.lake]\ntype = \"delta\"\n",
        )
        .replace("roll_interval = \"5m\"", "roll_interval = \"2s\"");
    assert_ne!(delta, text, "the example's lake sink moved");
    if let Lake::Bucket(s3) = lake {
        let folder = format!("path = \"{}/lake/events", out.display());
        assert!(delta.contains(&folder), "the example's lake path moved");
        delta = delta.replace(&folder, &format!("path = \"s3://weir/{group}/lake/events"));
        delta.push_str(&format!("\n[sinks.lake.s3]\n{}", s3_settings(s3)));
    }
    std::fs::write(&path, delta).unwrap();
    path
}

/// The table's event ids (every row, sorted), partition columns and version, as read by
/// the `deltalake` package (the files its log names, read by DuckDB: from the server's data
/// folder for a bucket).
fn read_delta(out: &Path, group: &str, lake: Lake) -> serde_json::Value {
    let (uri, options, files) = match lake {
        Lake::Folder => (
            out.join("lake/events").display().to_string(),
            "{}".to_string(),
            "t.file_uris()".to_string(),
        ),
        Lake::Bucket(s3) => (
            format!("s3://weir/{group}/lake/events"),
            format!(
                "{{'AWS_ENDPOINT_URL': {:?}, 'AWS_ACCESS_KEY_ID': {S3_ACCESS_KEY:?}, \
                 'AWS_SECRET_ACCESS_KEY': {S3_SECRET_KEY:?}, 'AWS_REGION': 'us-east-1', \
                 'AWS_ALLOW_HTTP': 'true'}}",
                s3.endpoint()
            ),
            format!(
                "[f.replace('s3://', {:?}) for f in t.file_uris()]",
                format!("{}/", s3.data_dir().display())
            ),
        ),
    };
    let script = format!(
        "import json, duckdb\nfrom deltalake import DeltaTable\n\
         t = DeltaTable({uri:?}, storage_options={options})\n\
         files = {files}\n\
         ids = sorted(r[0] for r in duckdb.sql(f'select event_id from read_parquet({{files}})').fetchall())\n\
         parts = sorted(set((p['dt'], p['hour']) for p in t.partitions()))\n\
         print(json.dumps({{'ids': ids, 'partition_columns': t.metadata().partition_columns, 'operations': [h['operation'] for h in t.history()], 'version': t.version(), 'txn': t.transaction_version('weir-lake-clicks-0'), 'partitions': [list(map(str, p)) for p in parts]}}))\n"
    );
    serde_json::from_str(&python(&script)).unwrap()
}

#[test]
fn a_delta_table_holds_each_event_once_through_kills_around_its_commits() {
    holds_each_event_once_through_kills_and_a_compaction(Lake::Folder);
}

#[test]
fn a_delta_table_on_s3_holds_each_event_once_through_kills_around_its_commits() {
    let servers = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    s3.create_bucket("weir").unwrap();
    holds_each_event_once_through_kills_and_a_compaction(Lake::Bucket(&s3));
}

fn holds_each_event_once_through_kills_and_a_compaction(lake: Lake) {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let lines = clickstream(300);
    let slices: Vec<&[String]> = lines.chunks(lines.len() / 4 + 1).collect();
    let out = tempfile::tempdir().unwrap();
    let config = delta_config(&bootstrap, out.path(), "delta", lake);
    die_at_each_commit_phase(&bootstrap, &config, "delta", &FAILPOINTS, &slices);

    // The rest comes while an instance runs, and the table is compacted meanwhile: the
    // compaction's commit and the pipeline's go in side by side.
    let running = WeirProcess::start(&config, "delta", false);
    for chunk in slices[3].chunks(slices[3].len() / 3 + 1) {
        produce(&bootstrap, "clicks", chunk);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let compacted = weir_ok(&[
        "table",
        "compact",
        "--config",
        config.to_str().unwrap(),
        "--sink",
        "lake",
        "--min-files",
        "2",
        "--retention",
        "0s",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    running.kill();
    WeirProcess::start(&config, "delta", true).wait_success(Duration::from_secs(300));
    println!("weir table compact: {compacted}");
    let counts: Vec<usize> = compacted
        .split_once(": ")
        .map_or("", |(_, report)| report)
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        counts.len() >= 2 && counts[1] < counts[0],
        "the compaction left as many files: {compacted}"
    );

    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));
    let expected: Vec<String> = lake_tables(reference.path())["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let table = read_delta(out.path(), "delta", lake);
    println!(
        "Delta table: version {}, {} rows, operations {}",
        table["version"],
        table["ids"].as_array().map_or(0, Vec::len),
        table["operations"]
    );
    let ids: Vec<String> = serde_json::from_value(table["ids"].clone()).unwrap();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), distinct.len(), "events repeated in the table");
    assert_eq!(
        ids, expected,
        "the table's events differ from a run into Parquet"
    );
    assert_eq!(
        table["partition_columns"],
        serde_json::json!(["dt", "hour"])
    );
    assert!(
        table["version"].as_i64().unwrap() >= 3,
        "one commit per epoch that rolled files: {table}"
    );
    assert!(
        table["txn"].as_i64().is_some(),
        "the epoch of partition 0's last commit is its transaction version: {table}"
    );
    let operations = table["operations"].as_array().unwrap();
    assert!(
        operations.contains(&serde_json::json!("OPTIMIZE")),
        "{operations:?}"
    );
    let partitions = table["partitions"].as_array().unwrap();
    assert!(
        partitions.contains(&serde_json::json!(["2026-11-26", "10"])),
        "{partitions:?}"
    );
}
