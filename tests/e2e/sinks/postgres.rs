//! The PostgreSQL sink against a real server, beyond the conformance suite: records the table
//! refuses are dead-lettered with the server's reason; a row refused only when its epoch is
//! applied lands in the rejected-rows table; column types (timestamps from epoch milliseconds
//! or text, JSON, numbers); the last record of a key wins within a batch; and an outage fails
//! the commit, whose redo after the server is back writes each row once.

use std::sync::Arc;

use weir::flow::SinkRecord;
use weir::sinks::postgres::{PostgresSink, PostgresSinkConfig};
use weir::sinks::resilience::Breaker;
use weir::sinks::staging::Scope;
use weir::sinks::{Sink, SinkBatch};
use xtask::servers::PostgresServer;

fn batch(route: &str, values: &[serde_json::Value]) -> SinkBatch {
    let records: Vec<SinkRecord> = values
        .iter()
        .map(|value| SinkRecord {
            route: Arc::from(route),
            key: Vec::new(),
            value: value.to_string().into_bytes(),
            time: 1_700_000_000_000,
            provenance: None,
        })
        .collect();
    SinkBatch::of(&records)
}

fn sink(server: &PostgresServer, settings: &str) -> PostgresSink {
    let text = format!(
        "routes = [\"sessions\", \"features\"]\nurl = \"{}\"\ntimeout = \"2s\"\n\
         [tables.features]\nupsert_key = [\"user_id\"]\n[retry]\n{settings}\n",
        server.url()
    );
    let config: PostgresSinkConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    let scope = Scope {
        topic: "clicks".into(),
        partition: 3,
    };
    let breaker = Arc::new(Breaker::new("warehouse", &config.retry));
    PostgresSink::new("warehouse", &config, Some(scope), breaker).unwrap()
}

const TABLES: &str = "CREATE TABLE sessions (session_id text PRIMARY KEY, user_id text NOT NULL, \
     start timestamptz NOT NULL, events bigint NOT NULL CHECK (events > 0), extra jsonb, \
     inserted_at timestamptz NOT NULL DEFAULT now()); \
     CREATE TABLE features (user_id text PRIMARY KEY, total bigint, seen timestamp)";

#[test]
fn refused_records_are_dead_lettered_and_committed_rows_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    server.psql(TABLES).unwrap();
    // Times without a zone hold UTC whatever the server's zone.
    server
        .psql("ALTER DATABASE postgres SET timezone TO 'America/New_York'")
        .unwrap();
    let mut sink = sink(&server, "attempts = 2");
    sink.recover(None).unwrap();

    let sessions = batch(
        "sessions",
        &[
            serde_json::json!({"session_id": "s1", "user_id": "u1", "start": 1_700_000_000_000_i64, "events": 3, "extra": {"a": [1, 2]}}),
            serde_json::json!({"session_id": "s2", "user_id": "u1", "start": "2026-12-06T10:00:00Z", "events": 0}),
            serde_json::json!({"session_id": "s3", "start": 1_700_000_000_000_i64, "events": 1}),
            serde_json::json!({"session_id": "s4", "user_id": "u2", "start": 1_700_000_000_000_i64, "events": "many"}),
            serde_json::json!({"session_id": "s5", "user_id": "u2", "start": "2026-12-06T10:00:00Z", "events": 2}),
        ],
    );
    let rejections = sink.write(&sessions).unwrap();
    let refused: Vec<(usize, &str)> = rejections
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(refused[0].0, 1);
    assert!(refused[0].1.starts_with("postgres: sessions: new row for relation \"sessions\" violates check constraint \"sessions_events_check\""), "{refused:?}");
    assert_eq!(refused[1].0, 2);
    assert!(
        refused[1].1.contains("null value in column \"user_id\""),
        "{refused:?}"
    );
    assert_eq!(refused[2].0, 3);
    assert!(
        refused[2]
            .1
            .contains("invalid input syntax for type bigint: \"many\""),
        "{refused:?}"
    );

    // The last record of a key wins, within a batch and across batches of the epoch.
    let features = |total: i64| serde_json::json!({"user_id": "u1", "total": total, "seen": 1_700_000_000_000_i64});
    assert!(
        sink.write(&batch("features", &[features(1), features(2)]))
            .unwrap()
            .is_empty()
    );
    assert!(
        sink.write(&batch("features", &[features(3)]))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        server.psql("SELECT count(*) FROM sessions").unwrap().trim(),
        "0",
        "nothing before the commit"
    );

    // A row another writer inserts meanwhile makes s5 fail at the commit: it lands in the
    // rejected-rows table with the reason, and the rest commits.
    server
        .psql("INSERT INTO sessions (session_id, user_id, start, events) VALUES ('s5', 'other', now(), 9)")
        .unwrap();
    let record = sink.prepare_commit().unwrap().unwrap();
    sink.commit(&record).unwrap();
    assert_eq!(
        server
            .psql("SELECT session_id, user_id, events, extra FROM sessions ORDER BY session_id")
            .unwrap(),
        "s1\tu1\t3\t{\"a\": [1, 2]}\ns5\tother\t9\t\n"
    );
    assert_eq!(
        server
            .psql("SELECT extract(epoch from start)::bigint, inserted_at IS NOT NULL FROM sessions WHERE session_id = 's1'")
            .unwrap(),
        "1700000000\tt\n",
        "epoch milliseconds make a timestamp; a column with a default fills itself"
    );
    assert_eq!(
        server
            .psql("SELECT source, target, reason, row->>'user_id' FROM weir_rejected_rows")
            .unwrap(),
        "clicks-3\tsessions\tduplicate key value violates unique constraint \"sessions_pkey\" (Key (session_id)=(s5) already exists.)\tu2\n"
    );
    assert_eq!(
        server
            .psql("SELECT user_id, total, seen FROM features")
            .unwrap(),
        "u1\t3\t2023-11-14 22:13:20\n"
    );

    // A redo of the commit (recovery) changes nothing.
    let mut again = sink_after_restart(&server);
    again.recover(Some(&record)).unwrap();
    assert_eq!(
        server.psql("SELECT count(*) FROM sessions").unwrap().trim(),
        "2"
    );
    assert_eq!(
        server
            .psql("SELECT count(*) FROM weir_rejected_rows")
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(
        server.psql("SELECT sink, source FROM weir_epochs").unwrap(),
        "warehouse\tclicks-3\n"
    );
}

fn sink_after_restart(server: &PostgresServer) -> PostgresSink {
    sink(server, "attempts = 2")
}

#[test]
fn unchecked_writes_keep_what_the_table_refuses_in_the_rejected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    server.psql(TABLES).unwrap();
    let text = format!(
        "routes = [\"sessions\"]\nurl = \"{}\"\ncheck_writes = false\n",
        server.url()
    );
    let config: PostgresSinkConfig = toml::from_str(&text).unwrap();
    let breaker = Arc::new(Breaker::new("warehouse", &config.retry));
    let scope = Scope {
        topic: "clicks".into(),
        partition: 0,
    };
    let mut sink = PostgresSink::new("warehouse", &config, Some(scope), breaker).unwrap();
    sink.recover(None).unwrap();
    let sessions = batch(
        "sessions",
        &[
            serde_json::json!({"session_id": "s1", "user_id": "u1", "start": 1_700_000_000_000_i64, "events": 3}),
            serde_json::json!({"session_id": "s2", "user_id": "u1", "start": 1_700_000_000_000_i64, "events": 0}),
        ],
    );
    assert!(
        sink.write(&sessions).unwrap().is_empty(),
        "nothing is tried at write time"
    );
    let record = sink.prepare_commit().unwrap().unwrap();
    sink.commit(&record).unwrap();
    assert_eq!(
        server.psql("SELECT session_id FROM sessions").unwrap(),
        "s1\n"
    );
    let rejected = server
        .psql("SELECT row->>'session_id', reason FROM weir_rejected_rows")
        .unwrap();
    assert!(
        rejected.starts_with("s2\tnew row for relation \"sessions\" violates check constraint"),
        "{rejected}"
    );
}

#[test]
fn an_outage_fails_the_commit_and_the_redo_writes_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = PostgresServer::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    server.psql(TABLES).unwrap();
    let mut sink = sink(&server, "attempts = 2\ninitial_backoff = \"50ms\"");
    sink.recover(None).unwrap();
    let sessions = batch(
        "sessions",
        &[
            serde_json::json!({"session_id": "s1", "user_id": "u1", "start": 1_700_000_000_000_i64, "events": 3}),
        ],
    );
    assert!(sink.write(&sessions).unwrap().is_empty());
    let record = sink.prepare_commit().unwrap().unwrap();
    server.stop();
    let error = sink.commit(&record).unwrap_err().to_string();
    assert!(error.contains("sink warehouse"), "{error}");
    server.resume().unwrap();
    // The epoch's redo, as recovery does it, by a new instance and by this one.
    let mut restarted = sink_after_restart(&server);
    restarted.recover(Some(&record)).unwrap();
    sink.recover(Some(&record)).unwrap();
    assert_eq!(
        server.psql("SELECT session_id FROM sessions").unwrap(),
        "s1\n"
    );
}

#[test]
fn tls_connections_verify_the_servers_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    server.psql(TABLES).unwrap();
    let ca = server.enable_tls().unwrap();
    let build = |url: String, ca_file: Option<&std::path::Path>| {
        let mut text = format!("routes = [\"sessions\"]\nurl = {url:?}\ntimeout = \"2s\"\n");
        if let Some(ca) = ca_file {
            text.push_str(&format!("ca_file = {:?}\n", ca.display().to_string()));
        }
        let config: PostgresSinkConfig = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        let breaker = Arc::new(Breaker::new("warehouse", &config.retry));
        PostgresSink::new("warehouse", &config, None, breaker)
    };
    let url = |mode: &str| format!("{}?sslmode={mode}&application_name=weir-tls", server.url());

    // With the authority that signed the server's certificate: encrypted.
    let mut sink = build(url("require"), Some(&ca)).unwrap();
    let row = serde_json::json!({"session_id": "s1", "user_id": "u1", "start": 1_700_000_000_000_i64, "events": 1});
    assert!(sink.write(&batch("sessions", &[row])).unwrap().is_empty());
    assert_eq!(
        server
            .psql("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'weir-tls'")
            .unwrap(),
        "t\n"
    );
    assert_eq!(
        server.psql("SELECT session_id FROM sessions").unwrap(),
        "s1\n"
    );

    // Without it (the system's roots), the certificate is refused; without TLS, the server
    // refuses the connection.
    let unknown = build(url("require"), None)
        .err()
        .expect("an unknown authority");
    assert!(unknown.to_string().contains("certificate"), "{unknown}");
    let plain = build(url("disable"), Some(&ca))
        .err()
        .expect("a connection without TLS");
    assert!(plain.to_string().contains("no encryption"), "{plain}");
}
