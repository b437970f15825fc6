//! The sink conformance suite. Every sink goes through the same story, driven through the
//! [`Sink`] trait exactly as the checkpoint protocol drives it:
//!
//! 1. write, flush (prepare), commit, over two epochs: the records are visible (Parquet: once
//!    the file rolls, as one file made of both epochs' parts);
//! 2. write, prepare, crash before the commit point: nothing of that epoch is visible after
//!    recovery from the last committed record;
//! 3. replay of that epoch after recovery, then commit: visible exactly once;
//! 4. write, prepare, commit point, crash before the sink's commit step: recovery from that
//!    record makes it visible, exactly once;
//! 5. redoing the last commit and an older one changes nothing (no duplicate, and a feature
//!    never moves back).
//!
//! What a reader sees differs by sink, and is stated per sink: Parquet (local and S3) shows
//! committed rows only; Redis shows the last committed value of each entity; Kafka (Apache
//! Kafka, read with `read_committed`) shows committed records once each; PostgreSQL shows
//! committed rows once each (inserts) or the last committed value of each key (upserts), as
//! `psql` reads them; NDJSON (file source only, which replays its whole input after a restart)
//! is rewritten from scratch by a new instance.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use weir::checkpoint::Delivery;
use weir::flow::{Provenance, SinkRecord};
use weir::sinks::kafka::{KafkaSink, KafkaSinkConfig, OutputProducer, ProducerSettings};
use weir::sinks::ndjson::{NdjsonSink, NdjsonSinkConfig};
use weir::sinks::parquet::{ColumnConfig, ParquetSink, ParquetSinkConfig};
use weir::sinks::postgres::{PostgresSink, PostgresSinkConfig};
use weir::sinks::redis::{RedisSink, RedisSinkConfig};
use weir::sinks::resilience::{Breaker, RetryConfig};
use weir::sinks::staging::Scope;
use weir::sinks::{Sink, SinkBatch};
use weir::storage::{S3Options, Storage};
use xtask::servers::{KafkaCluster, PostgresServer, RedisServer, S3Server};

use super::{redis_hashes, s3_options};

/// How a sink shows what it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    /// Committed records only, each once.
    Staged,
    /// The last committed value of each entity.
    Upsert,
    /// Committed records once each, visible from the commit point on.
    Transactional,
    /// Rewritten by every new instance; the input is replayed from its start.
    Rewrite,
}

/// A sink under test and how to read what it shows.
trait Target {
    fn model(&self) -> Model;
    /// A new instance, as after a process restart.
    fn build(&self) -> Box<dyn Sink>;
    /// The commit point (Kafka: the transaction commits) or its absence (it aborts).
    fn commit_point(&self, committed: bool) {
        let _ = committed;
    }
    /// What a reader sees: `id:n` per record (per entity for upserts), sorted.
    fn visible(&self) -> Vec<String>;
}

fn scope() -> Scope {
    Scope {
        topic: "conf".into(),
        partition: 0,
    }
}

fn breaker(name: &str) -> Arc<Breaker> {
    Arc::new(Breaker::new(name, &RetryConfig::default()))
}

/// Records `(id, n)` with consecutive source offsets from `first`.
fn records(items: &[(&str, i64)], first: i64) -> SinkBatch {
    let records: Vec<SinkRecord> = items
        .iter()
        .enumerate()
        .map(|(i, (id, n))| SinkRecord {
            route: Arc::from("main"),
            key: id.as_bytes().to_vec(),
            value: serde_json::json!({ "id": id, "n": n })
                .to_string()
                .into_bytes(),
            time: 1_700_000_000_000,
            provenance: Some(Provenance {
                source: Arc::from("conf"),
                partition: 0,
                offset: first + i as i64,
                trace: None,
            }),
        })
        .collect();
    SinkBatch::of(&records)
}

/// What a reader should see once `committed` (in order) are visible.
fn expected(model: Model, committed: &[&[(&str, i64)]]) -> Vec<String> {
    let all = committed.iter().flat_map(|batch| batch.iter());
    let mut shown: Vec<String> = if model == Model::Upsert {
        let last: BTreeMap<&str, i64> = all.map(|(id, n)| (*id, *n)).collect();
        last.into_iter()
            .map(|(id, n)| format!("{id}:{n}"))
            .collect()
    } else {
        all.map(|(id, n)| format!("{id}:{n}")).collect()
    };
    shown.sort();
    shown
}

fn assert_visible(target: &dyn Target, want: &[String], step: &str) {
    let seen = target.visible();
    assert_eq!(seen, want, "{:?} sink, {step}", target.model());
}

/// Ends an epoch: prepares (the last epoch of a bounded run), passes or misses the commit
/// point, and returns the sink's commit record.
fn end_epoch(target: &dyn Target, sink: &mut dyn Sink, committed: bool) -> Option<Vec<u8>> {
    sink.finish_files();
    let record = sink.prepare_commit().unwrap();
    target.commit_point(committed);
    record
}

fn run_suite(target: &dyn Target) {
    let model = target.model();
    let a: &[(&str, i64)] = &[("a1", 1), ("a2", 1), ("u", 1)];
    let b: &[(&str, i64)] = &[("b1", 2), ("u", 2)];
    let c: &[(&str, i64)] = &[("c1", 3), ("u", 3)];

    // 1. Write, flush, commit: over two epochs, the first of which does not end the input.
    let mut sink = target.build();
    sink.recover(None).unwrap();
    assert!(sink.write(&records(&a[..1], 0)).unwrap().is_empty());
    let early = sink.prepare_commit().unwrap();
    target.commit_point(true);
    if let Some(record) = &early {
        sink.commit(record).unwrap();
    }
    // Parquet files roll on size or age, not at every checkpoint.
    let shown = if model == Model::Staged {
        &[][..]
    } else {
        &a[..1]
    };
    assert_visible(
        target,
        &expected(model, &[shown]),
        "after a commit before a roll",
    );
    assert!(sink.write(&records(&a[1..], 1)).unwrap().is_empty());
    let first = end_epoch(target, sink.as_mut(), true);
    if let Some(record) = &first {
        sink.commit(record).unwrap();
    }
    assert_visible(target, &expected(model, &[a]), "after the first commit");

    // 2. Crash before the commit point.
    sink.write(&records(b, 3)).unwrap();
    end_epoch(target, sink.as_mut(), false);
    drop(sink);
    let mut sink = target.build();
    sink.recover(first.as_deref()).unwrap();
    match model {
        Model::Staged | Model::Upsert | Model::Transactional => {
            assert_visible(
                target,
                &expected(model, &[a]),
                "after a crash before commit",
            );
        }
        Model::Rewrite => assert_visible(target, &[], "after a restart"),
    }

    // 3. Replay after recovery.
    if model == Model::Rewrite {
        sink.write(&records(a, 0)).unwrap();
    }
    sink.write(&records(b, 3)).unwrap();
    let second = end_epoch(target, sink.as_mut(), true);
    if let Some(record) = &second {
        sink.commit(record).unwrap();
    }
    assert_visible(target, &expected(model, &[a, b]), "after the replay");

    // 4. Crash after the commit point, before the sink's commit step.
    sink.write(&records(c, 5)).unwrap();
    let third = end_epoch(target, sink.as_mut(), true);
    drop(sink);
    let mut sink = target.build();
    sink.recover(third.as_deref()).unwrap();
    if model == Model::Rewrite {
        for (batch, first) in [(a, 0), (b, 3), (c, 5)] {
            sink.write(&records(batch, first)).unwrap();
        }
        sink.close().unwrap();
    }
    let all = expected(model, &[a, b, c]);
    assert_visible(target, &all, "after recovery from a committed epoch");

    // 5. Redo the last commit, then an older one.
    sink.recover(third.as_deref()).unwrap();
    if let Some(record) = &first {
        sink.commit(record).unwrap();
    }
    assert_visible(target, &all, "after redoing commits");
}

fn parquet_config(path: String, s3: S3Options) -> ParquetSinkConfig {
    let column = |name: &str, ty: &str| ColumnConfig {
        name: name.into(),
        data_type: ty.into(),
        nullable: false,
        dictionary: true,
    };
    ParquetSinkConfig {
        routes: vec!["main".into()],
        path,
        s3,
        schema: vec![column("id", "string"), column("n", "int64")],
        schema_subject: None,
        extra_fields: Default::default(),
        roll_size: weir::units::ByteSize(128 << 20),
        roll_interval: weir::units::HumanDuration::from_secs(300),
        row_group_rows: 1024,
        zstd_level: 3,
        retry: RetryConfig::default(),
        completion: None,
    }
}

struct ParquetTarget {
    config: ParquetSinkConfig,
}

impl Target for ParquetTarget {
    fn model(&self) -> Model {
        Model::Staged
    }

    fn build(&self) -> Box<dyn Sink> {
        Box::new(ParquetSink::new("lake", &self.config, Some(scope()), breaker("lake")).unwrap())
    }

    fn visible(&self) -> Vec<String> {
        let storage = Storage::open(&self.config.path, &self.config.s3).unwrap();
        let mut shown = Vec::new();
        for key in storage.list_all("").unwrap() {
            if key.starts_with('_') || key.contains("/_") || !key.ends_with(".parquet") {
                continue;
            }
            let bytes: Bytes = storage.get(&key).unwrap().unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                let ids = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .unwrap();
                let ns = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .unwrap();
                for i in 0..batch.num_rows() {
                    shown.push(format!("{}:{}", ids.value(i), ns.value(i)));
                }
            }
        }
        shown.sort();
        shown
    }
}

#[test]
fn parquet_on_a_local_folder_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lake").display().to_string();
    run_suite(&ParquetTarget {
        config: parquet_config(path, S3Options::default()),
    });
}

#[test]
fn parquet_on_s3_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    server.create_bucket("conformance").unwrap();
    run_suite(&ParquetTarget {
        config: parquet_config("s3://conformance/lake".into(), s3_options(&server)),
    });
}

struct RedisTarget {
    config: RedisSinkConfig,
}

impl Target for RedisTarget {
    fn model(&self) -> Model {
        Model::Upsert
    }

    fn build(&self) -> Box<dyn Sink> {
        Box::new(
            RedisSink::new("features", &self.config, Some(scope()), breaker("features")).unwrap(),
        )
    }

    fn visible(&self) -> Vec<String> {
        let hashes = redis_hashes(&self.config.url, &format!("{}:*", self.config.prefix));
        let mut shown: Vec<String> = hashes
            .into_iter()
            .map(|(key, fields)| {
                let id = key.rsplit(':').next().unwrap().to_string();
                format!("{id}:{}", fields["n"])
            })
            .collect();
        shown.sort();
        shown
    }
}

#[test]
fn redis_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    run_suite(&RedisTarget {
        config: RedisSinkConfig {
            routes: vec!["main".into()],
            url: server.url(),
            prefix: "conf".into(),
            fields: BTreeMap::new(),
            ttl: Some(weir::units::HumanDuration::from_secs(3600)),
            pipeline: 2,
            timeout: weir::units::HumanDuration::from_secs(5),
            retry: RetryConfig::default(),
        },
    });
}

struct NdjsonTarget {
    path: std::path::PathBuf,
}

impl Target for NdjsonTarget {
    fn model(&self) -> Model {
        Model::Rewrite
    }

    fn build(&self) -> Box<dyn Sink> {
        let config = NdjsonSinkConfig {
            routes: vec!["main".into()],
            path: self.path.clone(),
        };
        Box::new(
            NdjsonSink::new("out", &config, &weir::sinks::files::OutputFiles::default()).unwrap(),
        )
    }

    fn visible(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut shown: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{}:{}", v["id"].as_str().unwrap(), v["n"])
            })
            .collect();
        shown.sort();
        shown
    }
}

struct PostgresTarget {
    server: PostgresServer,
    config: PostgresSinkConfig,
    upsert: bool,
}

impl PostgresTarget {
    fn new(upsert: bool) -> (tempfile::TempDir, PostgresTarget) {
        let dir = tempfile::tempdir().unwrap();
        let server = PostgresServer::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
        let key = if upsert { " PRIMARY KEY" } else { "" };
        server
            .psql(&format!(
                "CREATE TABLE conf (id text NOT NULL{key}, n bigint NOT NULL)"
            ))
            .unwrap();
        let mut text = format!("routes = [\"main\"]\nurl = \"{}\"\n", server.url());
        text.push_str("[tables.main]\ntable = \"conf\"\n");
        if upsert {
            text.push_str("upsert_key = [\"id\"]\n");
        }
        let config = toml::from_str(&text).unwrap();
        (
            dir,
            PostgresTarget {
                server,
                config,
                upsert,
            },
        )
    }
}

impl Target for PostgresTarget {
    fn model(&self) -> Model {
        if self.upsert {
            Model::Upsert
        } else {
            Model::Transactional
        }
    }

    fn build(&self) -> Box<dyn Sink> {
        Box::new(PostgresSink::new("conf", &self.config, Some(scope()), breaker("conf")).unwrap())
    }

    fn visible(&self) -> Vec<String> {
        let rows = self.server.psql("SELECT id || ':' || n FROM conf").unwrap();
        let mut shown: Vec<String> = rows.lines().map(str::to_string).collect();
        shown.sort();
        shown
    }
}

#[test]
fn postgres_inserts_conform() {
    let (_dir, target) = PostgresTarget::new(false);
    run_suite(&target);
}

#[test]
fn postgres_upserts_conform() {
    let (_dir, target) = PostgresTarget::new(true);
    run_suite(&target);
}

#[test]
fn ndjson_conforms() {
    let dir = tempfile::tempdir().unwrap();
    run_suite(&NdjsonTarget {
        path: dir.path().join("out.ndjson"),
    });
}

struct KafkaTarget {
    bootstrap: String,
    producer: Arc<OutputProducer>,
    consumer: BaseConsumer,
    committed: std::cell::Cell<i64>,
}

impl Target for KafkaTarget {
    fn model(&self) -> Model {
        Model::Transactional
    }

    fn build(&self) -> Box<dyn Sink> {
        let config: KafkaSinkConfig =
            toml::from_str("routes = [\"main\"]\ntopic = \"conf.out\"").unwrap();
        Box::new(KafkaSink::new("topics", &config, self.producer.clone(), None).unwrap())
    }

    fn commit_point(&self, committed: bool) {
        if committed {
            self.committed.set(self.committed.get() + 1);
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset("conf", 0, Offset::Offset(self.committed.get()))
                .unwrap();
            let group = self.consumer.group_metadata().unwrap();
            self.producer.commit(&offsets, &group).unwrap();
        } else {
            self.producer.abort().unwrap();
        }
        self.producer.begin().unwrap();
    }

    /// Every record a `read_committed` consumer sees, repeats included.
    fn visible(&self) -> Vec<String> {
        let mut shown: Vec<String> = crate::kafka::read_all(&self.bootstrap, "conf.out")
            .iter()
            .map(|record| {
                format!(
                    "{}:{}",
                    record.value["id"].as_str().unwrap(),
                    record.value["n"]
                )
            })
            .collect();
        shown.sort();
        shown
    }
}

#[test]
fn kafka_conforms() {
    let kafka = KafkaCluster::start(1).unwrap_or_else(|e| panic!("{e:#}"));
    kafka.create_topic("conf", 1).unwrap();
    kafka.create_topic("conf.out", 1).unwrap();
    let bootstrap = kafka.bootstrap();
    let properties = BTreeMap::new();
    let producer = OutputProducer::new(&ProducerSettings {
        brokers: &bootstrap,
        properties: &properties,
        delivery: Delivery::ExactlyOnce,
        transactional_id: "weir-conformance",
        timeout: std::time::Duration::from_secs(30),
    })
    .unwrap();
    producer.begin().unwrap();
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "conformance")
        .create()
        .unwrap();
    run_suite(&KafkaTarget {
        bootstrap,
        producer: Arc::new(producer),
        consumer,
        committed: std::cell::Cell::new(0),
    });
}
