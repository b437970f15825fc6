//! The Kafka pipeline with sessions and features also written to PostgreSQL (sessions
//! inserted, features upserted by user). One input goes through runs that each die by abort
//! (as kill -9) at a different phase of the commit, then a run during which the database is
//! stopped and started again, then a run to the end: the tables, read with `psql`, must equal
//! those of an uninterrupted run, with nothing rejected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use xtask::servers::PostgresServer;

use super::lakehouse::{die_at_each_commit_phase, slices_for_failpoints};
use super::{Broker, WeirProcess, clickstream, lake_tables, pipeline_config, produce};

/// The tables the sink writes, as a data team would declare them.
const TABLES: &str = "CREATE TABLE sessions (session_id text PRIMARY KEY, user_id text NOT NULL, \
     start timestamptz NOT NULL, \"end\" timestamptz NOT NULL, duration_ms bigint, \
     event_count bigint, page_views bigint, first_url text, last_url text); \
     CREATE TABLE features (user_id text PRIMARY KEY, session_count bigint, \
     last_session_duration_ms bigint, last_session_events bigint, total_events bigint, \
     updated_at timestamptz)";

/// A failure point in every phase of an epoch's commit that touches the database.
const FAILPOINTS: [&str; 4] = [
    "checkpoint-written:2",
    "committed:2",
    "rows-written:1",
    "rows-written:3",
];

/// `examples/kafka/pipeline.toml` with a PostgreSQL sink writing to database `run`.
fn warehouse_config(bootstrap: &str, out: &Path, run: &str, pg: &PostgresServer) -> PathBuf {
    pg.psql(&format!("CREATE DATABASE {run}")).unwrap();
    pg.psql_in(run, TABLES).unwrap();
    let path = pipeline_config(bootstrap, out, run);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[sinks.warehouse]\ntype = \"postgres\"\nroutes = [\"sessions\", \"features\"]\n\
         url = {:?}\ntimeout = \"2s\"\n[sinks.warehouse.tables.features]\nupsert_key = [\"user_id\"]\n",
        pg.url_of(run)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// The rows of a run's tables, sorted.
fn tables(pg: &PostgresServer, run: &str) -> (String, String, String) {
    let query = |sql: &str| pg.psql_in(run, sql).unwrap();
    (
        query(
            "SELECT session_id, user_id, (extract(epoch from start) * 1000)::bigint, \
             (extract(epoch from \"end\") * 1000)::bigint, duration_ms, event_count, page_views, \
             first_url, last_url FROM sessions ORDER BY session_id",
        ),
        query("SELECT * FROM features ORDER BY user_id"),
        query("SELECT count(*) FROM weir_rejected_rows"),
    )
}

#[test]
fn sessions_and_features_reach_postgres_exactly_once_through_crashes_and_a_restart() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let servers = tempfile::tempdir().unwrap();
    let mut pg = PostgresServer::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let lines = clickstream(300);
    let slices = slices_for_failpoints(&lines);
    let out = tempfile::tempdir().unwrap();
    let config = warehouse_config(&bootstrap, out.path(), "faulty", &pg);
    die_at_each_commit_phase(&bootstrap, &config, "faulty", &FAILPOINTS, &slices);

    // The database goes down and comes back while the input keeps arriving.
    let process = WeirProcess::start(&config, "faulty", false);
    process.wait_log(
        "partitions to be assigned",
        Duration::from_secs(90),
        |log| log.contains("Partitions assigned"),
    );
    pg.stop();
    produce(&bootstrap, "clicks", slices[FAILPOINTS.len()]);
    std::thread::sleep(Duration::from_secs(5));
    pg.resume().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let log = process.terminate(Duration::from_secs(120));
    assert!(
        log.contains("sink warehouse"),
        "the outage did not fail an epoch:\n{log}"
    );
    for slice in &slices[FAILPOINTS.len() + 1..] {
        produce(&bootstrap, "clicks", slice);
    }
    WeirProcess::start(&config, "faulty", true).wait_success(Duration::from_secs(300));

    let reference = tempfile::tempdir().unwrap();
    let reference_config = warehouse_config(&bootstrap, reference.path(), "reference", &pg);
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));

    let expected = tables(&pg, "reference");
    let actual = tables(&pg, "faulty");
    let lake = lake_tables(reference.path());
    assert_eq!(
        expected.0.lines().count(),
        lake["sessions"].as_array().unwrap().len(),
        "every session of the lake is in the table"
    );
    assert!(expected.1.lines().count() > 10, "{}", expected.1);
    assert_eq!(expected.2.trim(), "0");
    assert_eq!(actual.0, expected.0, "sessions differ");
    assert_eq!(actual.1, expected.1, "features differ");
    assert_eq!(actual.2.trim(), "0", "rows were rejected");
}
