//! Sink throughput against bare baselines, measured in the same run:
//!
//! - rows/s of the Parquet sink (epochs of staged parts, files rolled at the end and joined)
//!   to a local folder and to s3s-fs, against the bare Arrow Parquet writer (arrow-json decode
//!   and `ArrowWriter` with the same settings, one local file per hour folder) on the same
//!   batches;
//! - the time an epoch's commit takes when every epoch publishes files (rolled each epoch), for
//!   a Delta table (the files published, then added to the Delta log) against the Parquet
//!   sink (the files published), to a local folder and to s3s-fs; then the files per hour
//!   of those Delta tables before and after `weir table compact`, and how long it took;
//! - feature writes/s of the Redis sink (per-entity merge, fenced Lua script, pipelined)
//!   against a plain pipelined `HSET` loop over the same entities and fields;
//! - feature rows/s of the PostgreSQL sink (upserts by user, each batch tried and rolled back,
//!   each epoch committed with its sequence number) against the same upsert statement run
//!   once per batch in autocommit, and against `COPY … FROM STDIN` into a plain table.
//!
//! `cargo bench -p weir --bench sinks -- --rows 200000 --entities 50000 --rounds 3`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_json::ReaderBuilder;
use fred::prelude::{ClientLike, Config, HashesInterface};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use weir::config::PipelineConfig;
use weir::flow::{Provenance, SinkRecord};
use weir::sinks::parquet::{
    CompactOptions, ParquetSink, ParquetSinkConfig, compact, partition_of, schema_of,
};
use weir::sinks::postgres::{PostgresSink, PostgresSinkConfig};
use weir::sinks::redis::{RedisSink, RedisSinkConfig};
use weir::sinks::resilience::{Breaker, RetryConfig};
use weir::sinks::staging::Scope;
use weir::sinks::{Sink, SinkBatch, SinkConfig};
use weir::storage::{S3Options, io_runtime};
use xtask::servers::{PostgresServer, RedisServer, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

use common::arg;

/// Records per write call, as the pipeline hands them to sinks.
const BATCH: usize = 1024;

/// Write calls per checkpoint epoch.
const BATCHES_PER_EPOCH: usize = 50;

/// Write calls per checkpoint epoch when every epoch rolls its files (the commit bench).
const BATCHES_PER_ROLLING_EPOCH: usize = 5;

/// The lake sink of the Kafka example, for its schema and writer settings.
fn lake_config() -> ParquetSinkConfig {
    let text =
        std::fs::read_to_string(xtask::workspace_root().join("examples/kafka/pipeline.toml"))
            .unwrap();
    let config: PipelineConfig = toml::from_str(&text).unwrap();
    match config.sinks.get("lake") {
        Some(SinkConfig::Parquet(lake)) => lake.clone(),
        _ => panic!("examples/kafka/pipeline.toml has no parquet sink `lake`"),
    }
}

/// Lake rows: the example's events after the three stages (geo fields and a session id).
fn lake_rows(rows: usize) -> Vec<Vec<SinkRecord>> {
    let events = weir::synth::clickstream::generate(&weir::synth::clickstream::ClickstreamSpec {
        users: (rows / 40).max(10),
        ..Default::default()
    });
    let mut records = Vec::with_capacity(rows);
    for (offset, line) in events.iter().cycle().take(rows * 2).enumerate() {
        if records.len() == rows {
            break;
        }
        let Ok(mut event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(ts) = event["ts"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        let time = ts.timestamp_millis();
        let Some(object) = event.as_object_mut() else {
            continue;
        };
        let Some(user) = object
            .get("user_id")
            .and_then(|u| u.as_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !object
            .get("event_id")
            .is_some_and(serde_json::Value::is_string)
        {
            continue;
        }
        object.insert("ts".into(), time.into());
        object.insert("geo_status".into(), "ok".into());
        object.insert("geo_country".into(), "NL".into());
        object.insert("geo_city".into(), "Amsterdam".into());
        object.insert("geo_latitude".into(), 52.37.into());
        object.insert("geo_longitude".into(), 4.89.into());
        object.insert("session_id".into(), format!("s-{}", offset % 997).into());
        records.push(SinkRecord {
            route: Arc::from("main"),
            key: user.into_bytes(),
            value: serde_json::to_vec(&event).unwrap(),
            time,
            provenance: Some(Provenance {
                source: Arc::from("clicks"),
                partition: 0,
                offset: offset as i64,
                trace: None,
            }),
        });
    }
    records.chunks(BATCH).map(<[SinkRecord]>::to_vec).collect()
}

/// The bare writer: arrow-json decode and one `ArrowWriter` per hour folder, to local files.
fn bare_writer(
    config: &ParquetSinkConfig,
    batches: &[Vec<SinkRecord>],
    dir: &std::path::Path,
) -> f64 {
    let schema = schema_of(&config.schema).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(config.zstd_level).unwrap(),
        ))
        .set_max_row_group_row_count(Some(config.row_group_rows))
        .build();
    let started = Instant::now();
    let mut writers: BTreeMap<String, ArrowWriter<std::fs::File>> = BTreeMap::new();
    let mut rows = 0;
    for batch in batches {
        let mut by_folder: BTreeMap<String, Vec<&SinkRecord>> = BTreeMap::new();
        for record in batch {
            by_folder
                .entry(partition_of(record.time))
                .or_default()
                .push(record);
        }
        for (folder, records) in by_folder {
            let mut decoder = ReaderBuilder::new(schema.clone())
                .with_batch_size(records.len())
                .build_decoder()
                .unwrap();
            for record in &records {
                decoder.decode(&record.value).unwrap();
                decoder.decode(b"\n").unwrap();
            }
            let decoded = decoder.flush().unwrap().unwrap();
            rows += decoded.num_rows();
            let writer = writers.entry(folder.clone()).or_insert_with(|| {
                let path = dir.join(folder.replace('/', "_") + ".parquet");
                ArrowWriter::try_new(
                    std::fs::File::create(path).unwrap(),
                    schema.clone(),
                    Some(props.clone()),
                )
                .unwrap()
            });
            writer.write(&decoded).unwrap();
        }
    }
    for (_, writer) in writers {
        writer.into_inner().unwrap().sync_all().unwrap();
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// The Parquet sink, scoped, with an epoch every [`BATCHES_PER_EPOCH`] batches; all files roll
/// at the end (joined from their parts) and are published.
fn parquet_sink(config: &ParquetSinkConfig, batches: &[Vec<SinkRecord>]) -> f64 {
    let breaker = Arc::new(Breaker::new("lake", &config.retry));
    let scope = Scope {
        topic: "clicks".into(),
        partition: 0,
    };
    // In the pipeline the records reach the sink already indexed (parsed once at decode).
    let batches: Vec<SinkBatch> = batches.iter().map(|b| SinkBatch::of(b)).collect();
    let started = Instant::now();
    let mut sink = ParquetSink::new("lake", config, Some(scope), breaker).unwrap();
    sink.recover(None).unwrap();
    let mut rows = 0;
    for (i, batch) in batches.iter().enumerate() {
        let refused = sink.write(batch).unwrap();
        assert!(refused.is_empty(), "{:?}", refused.first());
        rows += batch.len();
        let last = i + 1 == batches.len();
        if last || (i + 1) % BATCHES_PER_EPOCH == 0 {
            if last {
                sink.finish_files();
            }
            let record = sink.prepare_commit().unwrap().unwrap();
            sink.commit(&record).unwrap();
        }
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// The milliseconds each epoch's commit takes when every epoch rolls and publishes its files,
/// into a Delta table when `delta`, plain Parquet files otherwise.
fn epoch_commits(config: &ParquetSinkConfig, batches: &[Vec<SinkRecord>], delta: bool) -> Vec<f64> {
    let breaker = Arc::new(Breaker::new("lake", &config.retry));
    let scope = Scope {
        topic: "clicks".into(),
        partition: 0,
    };
    let batches: Vec<SinkBatch> = batches.iter().map(|b| SinkBatch::of(b)).collect();
    let mut sink = ParquetSink::new("lake", config, Some(scope), breaker).unwrap();
    if delta {
        sink = sink.logging_to_delta(config).unwrap();
    }
    sink.recover(None).unwrap();
    let mut commits = Vec::new();
    for epoch in batches.chunks(BATCHES_PER_ROLLING_EPOCH) {
        for batch in epoch {
            assert!(sink.write(batch).unwrap().is_empty());
        }
        sink.finish_files();
        let record = sink.prepare_commit().unwrap().unwrap();
        let started = Instant::now();
        sink.commit(&record).unwrap();
        commits.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    commits
}

/// Feature records: `entities` users, each with a handful of numeric and text fields.
fn feature_rows(entities: usize) -> Vec<Vec<SinkRecord>> {
    let records: Vec<SinkRecord> = (0..entities)
        .map(|i| SinkRecord {
            route: Arc::from("features"),
            key: format!("user-{i:07}").into_bytes(),
            value: serde_json::json!({
                "user_id": format!("user-{i:07}"),
                "session_count": i % 17,
                "last_session_duration_ms": i * 31 % 100_000,
                "last_session_events": i % 23,
                "total_events": i * 7 % 5_000,
                "updated_at": 1_764_000_000_000_i64 + i as i64,
            })
            .to_string()
            .into_bytes(),
            time: 0,
            provenance: None,
        })
        .collect();
    records.chunks(BATCH).map(<[SinkRecord]>::to_vec).collect()
}

/// The plain loop: a pipeline of `HSET key field value ...` per entity, 256 per round trip.
fn plain_hset(url: &str, batches: &[Vec<SinkRecord>]) -> f64 {
    io_runtime().block_on(async {
        let client = fred::prelude::Builder::from_config(Config::from_url(url).unwrap())
            .build()
            .unwrap();
        client.init().await.unwrap();
        let started = Instant::now();
        let mut writes = 0;
        for batch in batches {
            for chunk in batch.chunks(256) {
                let pipeline = client.pipeline();
                for record in chunk {
                    let value: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_slice(&record.value).unwrap();
                    let fields: Vec<(String, String)> = value
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                        .collect();
                    let key = format!("plain:{}", String::from_utf8_lossy(&record.key));
                    let _: () = pipeline.hset(key, fields).await.unwrap();
                }
                let _: Vec<i64> = pipeline.all().await.unwrap();
                writes += chunk.len();
            }
        }
        let rate = writes as f64 / started.elapsed().as_secs_f64();
        client.quit().await.unwrap();
        rate
    })
}

/// The Redis sink, scoped, one epoch per batch (its writes applied at the epoch's commit).
fn redis_sink(url: &str, batches: &[Vec<SinkRecord>]) -> f64 {
    let config = RedisSinkConfig {
        routes: vec!["features".into()],
        url: url.to_string(),
        prefix: "sink".into(),
        fields: BTreeMap::new(),
        ttl: None,
        pipeline: 256,
        timeout: weir::units::HumanDuration::from_secs(5),
        retry: RetryConfig::default(),
    };
    let breaker = Arc::new(Breaker::new("features", &config.retry));
    let scope = Scope {
        topic: "clicks".into(),
        partition: 0,
    };
    let mut sink = RedisSink::new("features", &config, Some(scope), breaker).unwrap();
    sink.recover(None).unwrap();
    let batches: Vec<SinkBatch> = batches.iter().map(|b| SinkBatch::of(b)).collect();
    let started = Instant::now();
    let mut writes = 0;
    for batch in &batches {
        assert!(sink.write(batch).unwrap().is_empty());
        let record = sink.prepare_commit().unwrap().unwrap();
        sink.commit(&record).unwrap();
        writes += batch.len();
    }
    writes as f64 / started.elapsed().as_secs_f64()
}

/// The features table of the PostgreSQL runs.
const FEATURES_TABLE: &str = "(user_id text PRIMARY KEY, session_count bigint, \
     last_session_duration_ms bigint, last_session_events bigint, total_events bigint, \
     updated_at timestamptz)";

/// A fresh table `name` with the features' columns (a primary key when `keyed`).
fn features_table(pg: &PostgresServer, name: &str, keyed: bool) {
    let columns = if keyed {
        FEATURES_TABLE.to_string()
    } else {
        FEATURES_TABLE.replace(" PRIMARY KEY", "")
    };
    pg.psql(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} {columns}"
    ))
    .unwrap();
}

fn pg_client(url: &str) -> tokio_postgres::Client {
    io_runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    })
}

/// `COPY … FROM STDIN (FORMAT csv)` of the features, one COPY per batch.
fn pg_copy(pg: &PostgresServer, batches: &[Vec<SinkRecord>]) -> f64 {
    use futures::SinkExt;
    features_table(pg, "copied", false);
    let client = pg_client(&pg.url());
    let started = Instant::now();
    let mut rows = 0;
    io_runtime().block_on(async {
        for batch in batches {
            let mut csv = String::new();
            for record in batch {
                let v: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
                let time =
                    chrono::DateTime::from_timestamp_millis(v["updated_at"].as_i64().unwrap())
                        .unwrap()
                        .to_rfc3339();
                csv.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    v["user_id"].as_str().unwrap(),
                    v["session_count"],
                    v["last_session_duration_ms"],
                    v["last_session_events"],
                    v["total_events"],
                    time
                ));
            }
            let sink = client
                .copy_in::<_, bytes::Bytes>("COPY copied FROM STDIN (FORMAT csv)")
                .await
                .unwrap();
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(csv)).await.unwrap();
            sink.finish().await.unwrap();
            rows += batch.len();
        }
    });
    rows as f64 / started.elapsed().as_secs_f64()
}

/// The sink's own upsert statement, run once per batch in autocommit (no try, no epochs).
fn pg_plain_upsert(pg: &PostgresServer, batches: &[Vec<SinkRecord>]) -> f64 {
    features_table(pg, "plain", true);
    let client = pg_client(&pg.url());
    let statement = "INSERT INTO plain SELECT DISTINCT ON (doc->>'user_id') doc->>'user_id', \
         (doc->>'session_count')::bigint, (doc->>'last_session_duration_ms')::bigint, \
         (doc->>'last_session_events')::bigint, (doc->>'total_events')::bigint, \
         to_timestamp((doc->>'updated_at')::float8 / 1000) \
         FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS r(doc, n) \
         ORDER BY doc->>'user_id', n DESC ON CONFLICT (user_id) DO UPDATE SET \
         session_count = EXCLUDED.session_count, \
         last_session_duration_ms = EXCLUDED.last_session_duration_ms, \
         last_session_events = EXCLUDED.last_session_events, \
         total_events = EXCLUDED.total_events, updated_at = EXCLUDED.updated_at";
    let started = Instant::now();
    let mut rows = 0;
    io_runtime().block_on(async {
        for batch in batches {
            let values: Vec<&str> = batch
                .iter()
                .map(|r| std::str::from_utf8(&r.value).unwrap())
                .collect();
            let array = format!("[{}]", values.join(","));
            client.execute(statement, &[&array]).await.unwrap();
            rows += batch.len();
        }
    });
    rows as f64 / started.elapsed().as_secs_f64()
}

/// The PostgreSQL sink, scoped, upserting features, an epoch every `BATCHES_PER_EPOCH`
/// batches, each batch tried at write time or not.
fn pg_sink(pg: &PostgresServer, batches: &[Vec<SinkRecord>], check_writes: bool) -> f64 {
    features_table(pg, "features", true);
    pg.psql("DROP TABLE IF EXISTS weir_epochs").unwrap();
    let text = format!(
        "routes = [\"features\"]\nurl = \"{}\"\ncheck_writes = {check_writes}\n\
         [tables.features]\nupsert_key = [\"user_id\"]\n",
        pg.url()
    );
    let config: PostgresSinkConfig = toml::from_str(&text).unwrap();
    let breaker = Arc::new(Breaker::new("warehouse", &config.retry));
    let scope = Scope {
        topic: "clicks".into(),
        partition: 0,
    };
    let mut sink = PostgresSink::new("warehouse", &config, Some(scope), breaker).unwrap();
    sink.recover(None).unwrap();
    let batches: Vec<SinkBatch> = batches.iter().map(|b| SinkBatch::of(b)).collect();
    let started = Instant::now();
    let mut rows = 0;
    for epoch in batches.chunks(BATCHES_PER_EPOCH) {
        for batch in epoch {
            assert!(sink.write(batch).unwrap().is_empty());
            rows += batch.len();
        }
        let record = sink.prepare_commit().unwrap().unwrap();
        sink.commit(&record).unwrap();
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rows: usize = arg("--rows", 200_000);
    let entities: usize = arg("--entities", 50_000);
    let rounds: usize = arg("--rounds", 3);
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    s3.create_bucket("bench").unwrap();
    let redis = RedisServer::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let pg = PostgresServer::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));

    let lake = lake_config();
    let batches = lake_rows(rows);
    let features = feature_rows(entities);
    let (mut bare, mut local, mut remote, mut plain, mut sink) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut copied, mut upserted) = (Vec::new(), Vec::new());
    let (mut checked, mut unchecked) = (Vec::new(), Vec::new());
    let mut commit_times: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut compactions = Vec::new();
    for round in 0..rounds {
        let bare_dir = dir.path().join(format!("bare-{round}"));
        std::fs::create_dir_all(&bare_dir).unwrap();
        bare.push(bare_writer(&lake, &batches, &bare_dir));
        local.push(parquet_sink(
            &ParquetSinkConfig {
                path: dir
                    .path()
                    .join(format!("local-{round}"))
                    .display()
                    .to_string(),
                ..lake.clone()
            },
            &batches,
        ));
        let on_s3 = |path: String| ParquetSinkConfig {
            path,
            s3: S3Options {
                endpoint: Some(s3.endpoint()),
                region: Some("us-east-1".into()),
                allow_http: true,
                path_style: true,
                access_key_id: Some(S3_ACCESS_KEY.into()),
                secret_access_key: Some(S3_SECRET_KEY.into()),
            },
            ..lake.clone()
        };
        remote.push(parquet_sink(
            &on_s3(format!("s3://bench/round-{round}")),
            &batches,
        ));
        for (delta, kind) in [(false, "parquet"), (true, "delta")] {
            let local_path = dir.path().join(format!("commits-{kind}-{round}"));
            let local_config = ParquetSinkConfig {
                path: local_path.display().to_string(),
                ..lake.clone()
            };
            let remote_config = on_s3(format!("s3://bench/commits-{kind}-{round}"));
            commit_times
                .entry(("local folder", kind))
                .or_default()
                .extend(epoch_commits(&local_config, &batches, delta));
            commit_times
                .entry(("s3s-fs", kind))
                .or_default()
                .extend(epoch_commits(&remote_config, &batches, delta));
            if delta && round == 0 {
                for (store, config) in [("local folder", &local_config), ("s3s-fs", &remote_config)]
                {
                    let started = Instant::now();
                    let options = CompactOptions {
                        min_files: 2,
                        target_size: 128 << 20,
                        retention: None,
                    };
                    let report = compact(config, options).unwrap();
                    compactions.push((store, report, started.elapsed()));
                }
            }
        }
        plain.push(plain_hset(&redis.url(), &features));
        sink.push(redis_sink(&redis.url(), &features));
        copied.push(pg_copy(&pg, &features));
        upserted.push(pg_plain_upsert(&pg, &features));
        checked.push(pg_sink(&pg, &features, true));
        unchecked.push(pg_sink(&pg, &features, false));
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let (bare, local, remote, plain, sink) = (
        median(bare),
        median(local),
        median(remote),
        median(plain),
        median(sink),
    );
    println!(
        "{rows} lake rows in batches of {BATCH}, an epoch every {BATCHES_PER_EPOCH} batches; \
         {entities} feature writes; medians of {rounds} rounds\n"
    );
    println!("| run | rate | vs baseline |");
    println!("| --- | ---: | ---: |");
    println!("| bare Arrow Parquet writer, local files | {bare:.0} rows/s | |");
    println!(
        "| Parquet sink, local folder | {local:.0} rows/s | {:.2}x |",
        local / bare
    );
    println!(
        "| Parquet sink, s3s-fs | {remote:.0} rows/s | {:.2}x |",
        remote / bare
    );
    for store in ["local folder", "s3s-fs"] {
        let parquet = median(commit_times[&(store, "parquet")].clone());
        let delta = median(commit_times[&(store, "delta")].clone());
        println!("| epoch commit publishing files, Parquet sink, {store} | {parquet:.1} ms | |");
        println!(
            "| epoch commit publishing files, Delta table, {store} | {delta:.1} ms | {:.2}x |",
            delta / parquet
        );
    }
    for (store, report, took) in &compactions {
        let hours = report.partitions.max(1) as f64;
        println!(
            "| Delta table, {store}: files per compacted hour before / after `weir table compact` | {:.1} / {:.1} | {:.0} ms |",
            report.files_before as f64 / hours,
            report.files_after as f64 / hours,
            took.as_secs_f64() * 1000.0
        );
    }
    println!("| plain pipelined HSET loop | {plain:.0} writes/s | |");
    println!(
        "| Redis feature sink | {sink:.0} writes/s | {:.2}x |",
        sink / plain
    );
    let (copied, upserted) = (median(copied), median(upserted));
    let (checked, unchecked) = (median(checked), median(unchecked));
    println!("| PostgreSQL COPY, plain table | {copied:.0} rows/s | |");
    println!(
        "| PostgreSQL upsert statement per batch, autocommit | {upserted:.0} rows/s | {:.2}x of COPY |",
        upserted / copied
    );
    println!(
        "| PostgreSQL sink, upserts, exactly once | {checked:.0} rows/s | {:.2}x of the plain upsert |",
        checked / upserted
    );
    println!(
        "| the same, check_writes = false | {unchecked:.0} rows/s | {:.2}x of the plain upsert |",
        unchecked / upserted
    );
}
