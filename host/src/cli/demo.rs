//! `weir demo`: the whole clickstream pipeline on librdkafka's embedded mock cluster. It
//! generates a clickstream and a geo database, produces the events at a steady rate (as JSON,
//! or with `--format avro` as Avro in the registry's wire format, served by a registry of the
//! demo's own), runs `examples/kafka/pipeline.toml` against the cluster with a progress bar,
//! and ends with a summary of what went where.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::demo_registry::DemoRegistry;
use crate::config::{PipelineConfig, SourceConfig};
use crate::kafka::ValueFormat;
use crate::kafka::daemon::{self, DaemonOptions};
use crate::pipeline::PipelineStats;
use crate::sinks::SinkConfig;
use crate::synth::{clickstream, geodb};

/// The pipeline the demo runs (its brokers and paths are replaced).
const PIPELINE: &str = include_str!("../../../examples/kafka/pipeline.toml");

/// The mock cluster keeps at most this many messages per partition...
const MOCK_PARTITION_MESSAGES: u64 = 100_000;
/// ...and this many bytes.
const MOCK_PARTITION_BYTES: u64 = 5 << 20;

/// `weir demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to produce events.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Events per second.
    #[arg(long, default_value_t = 2500)]
    rate: u64,
    /// Human users in the generated clickstream.
    #[arg(long, default_value_t = 2000)]
    users: usize,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Output folder (lake, checkpoints, geo database, config).
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Folder with the `<plugin>.wasm` files.
    #[arg(long, env = "WEIR_PLUGIN_DIR", default_value = "target/plugins")]
    plugin_dir: PathBuf,
    /// How the events are written: `json`, or `avro` in a schema registry's wire format
    /// (the demo serves the schema from a registry of its own).
    #[arg(long, value_enum, default_value = "json")]
    format: DemoFormat,
}

/// The input topic's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DemoFormat {
    Json,
    Avro,
}

/// The id the demo's registry serves its Avro schema under.
const SCHEMA_ID: u32 = 1;

const INPUT_TOPIC: &str = "clicks";
const OUTPUT_TOPICS: &[&str] = &[
    "weir.sessions",
    "weir.features",
    "weir.bots",
    "weir.late",
    "weir.dlq",
];

/// The demo's config text: the example pipeline pointed at the cluster, reading Avro through
/// `registry` when there is one.
fn demo_text(brokers: &str, registry: Option<&str>) -> String {
    let text = PIPELINE.replace("127.0.0.1:9092", brokers);
    match registry {
        None => text,
        Some(url) => format!(
            "{}\n[schema_registry]\nurl = {url:?}\n",
            text.replace(
                "topics = [\"clicks\"]\n",
                "topics = [\"clicks\"]\nformat = \"avro\"\n"
            )
        ),
    }
}

/// The demo's config: [`demo_text`] with its paths under `out`.
fn demo_config(brokers: &str, registry: Option<&str>, out: &Path) -> Result<PipelineConfig> {
    let mut config: PipelineConfig = toml::from_str(&demo_text(brokers, registry))?;
    if let SourceConfig::Kafka(kafka) = &mut config.source {
        kafka.group = "weir-demo".into();
        if registry.is_some() && kafka.format != ValueFormat::Avro {
            bail!("the example pipeline's source moved: the demo cannot make it read Avro");
        }
    }
    if let Some(geo) = &mut config.geo {
        geo.database = out.join("geo.mmdb");
    }
    for (name, sink) in &mut config.sinks {
        if let SinkConfig::Parquet(parquet) | SinkConfig::Delta(parquet) = sink {
            parquet.path = out.join("lake").join(name).display().to_string();
        }
    }
    config.checkpoint.store = out.join("checkpoints").display().to_string();
    config.validate()?;
    Ok(config)
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    if args.out.exists() {
        std::fs::remove_dir_all(&args.out)
            .with_context(|| format!("clearing {}", args.out.display()))?;
    }
    std::fs::create_dir_all(&args.out)?;
    geodb::write(&args.out.join("geo.mmdb"))?;

    let wanted = args.rate.saturating_mul(args.duration.as_secs().max(1));
    let spec = clickstream::ClickstreamSpec {
        users: args.users,
        crawlers: 6.max(args.users / 150),
        ..Default::default()
    };
    let mut events = clickstream::generate(&spec);
    // Four fifths of what the mock cluster keeps per partition, in messages and in bytes
    // (keys spread users over partitions about evenly).
    let partitions = u64::try_from(args.partitions)?;
    let mean_len =
        events.iter().map(|e| e.len() as u64).sum::<u64>() / (events.len() as u64).max(1);
    let limit = (MOCK_PARTITION_MESSAGES * partitions * 4 / 5)
        .min(MOCK_PARTITION_BYTES * partitions * 4 / 5 / mean_len.max(1));
    let total = wanted.min(limit).min(events.len() as u64);
    events.truncate(usize::try_from(total)?);

    let cluster = MockCluster::new(3)?;
    cluster.create_topic(INPUT_TOPIC, args.partitions, 1)?;
    for topic in OUTPUT_TOPICS {
        cluster.create_topic(topic, 2, 1)?;
    }
    let brokers = cluster.bootstrap_servers();
    let registry = match args.format {
        DemoFormat::Json => None,
        DemoFormat::Avro => Some(DemoRegistry::start(SCHEMA_ID, clickstream::AVRO_SCHEMA)?),
    };
    let registry_url = registry.as_ref().map(DemoRegistry::url);
    let config = demo_config(&brokers, registry_url, &args.out)?;
    std::fs::write(
        args.out.join("pipeline.toml"),
        demo_text(&brokers, registry_url),
    )?;
    let records = match args.format {
        DemoFormat::Json => events
            .iter()
            .map(|e| (key_of(e), e.as_bytes().to_vec()))
            .collect(),
        DemoFormat::Avro => avro_records(&events)?,
    };

    println!(
        "weir demo: {} events from {} users at {}/s into a {}-partition topic on an embedded Kafka cluster ({brokers}){}",
        records.len(),
        args.users,
        args.rate,
        args.partitions,
        registry_url.map_or(String::new(), |url| format!(
            ", as Avro with the schema served by {url}"
        ))
    );
    let produced = Arc::new(AtomicU64::new(0));
    let producer_thread = {
        let produced = produced.clone();
        let brokers = brokers.clone();
        let rate = args.rate.max(1);
        std::thread::spawn(move || produce(&brokers, &records, rate, &produced))
    };

    let mut options = DaemonOptions::new("demo");
    let progress = Arc::new(Mutex::new(PipelineStats::default()));
    options.progress = Some(progress.clone());
    let daemon_thread = {
        let options = options.clone();
        let plugin_dir = args.plugin_dir.clone();
        std::thread::spawn(move || daemon::run(&config, &plugin_dir, &options))
    };

    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} processed  {msg}",
        )?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    while !daemon_thread.is_finished() {
        let stats = progress.lock().map(|s| s.clone()).unwrap_or_default();
        bar.set_position(stats.records_in.min(total));
        bar.set_message(format!(
            "produced {}  sessions {}",
            produced.load(Ordering::Relaxed),
            stats.routes.by_route.get("sessions").copied().unwrap_or(0)
        ));
        if producer_thread.is_finished() {
            options.bounded.store(true, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
    producer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    let summary = daemon_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))??;
    let lake = lake_summary(&args.out.join("lake").join("lake"))?;
    print_table(&summary.stats, &lake, started.elapsed(), &args.out);
    drop(cluster);
    drop(registry);
    Ok(())
}

/// A generated line's key: its user id, or empty.
fn key_of(line: &str) -> String {
    clickstream::user_key(line).unwrap_or_default()
}

/// The events keyed, as Avro datums of [`clickstream::AVRO_SCHEMA`] framed with the registry
/// header. The malformed lines stay as they are, as a JSON producer's records on an Avro
/// topic would be: weir dead-letters them (`not avro: …`).
fn avro_records(events: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    use apache_avro::types::Value;
    let schema = apache_avro::Schema::parse_str(clickstream::AVRO_SCHEMA)?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build()?;
    Ok(events
        .iter()
        .map(|line| {
            let datum = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|json| Value::try_from(json).ok())
                .and_then(|value| value.resolve(&schema).ok())
                .and_then(|value| writer.write_value_to_vec(value).ok());
            let value = match datum {
                Some(datum) => [&[0][..], &SCHEMA_ID.to_be_bytes(), &datum].concat(),
                None => line.as_bytes().to_vec(),
            };
            (key_of(line), value)
        })
        .collect())
}

/// Produces `records` (key, value) at `rate` per second.
fn produce(
    brokers: &str,
    records: &[(String, Vec<u8>)],
    rate: u64,
    produced: &AtomicU64,
) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()?;
    let started = Instant::now();
    for (i, (key, value)) in records.iter().enumerate() {
        let mut record = BaseRecord::to(INPUT_TOPIC).payload(value).key(key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        produced.fetch_add(1, Ordering::Relaxed);
        let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// Rows, files and geo-resolved rows of the events table.
struct LakeSummary {
    files: usize,
    rows: usize,
    enriched: usize,
}

fn lake_summary(root: &Path) -> Result<LakeSummary> {
    let mut summary = LakeSummary {
        files: 0,
        rows: 0,
        enriched: 0,
    };
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() && !name.starts_with('_') {
                dirs.push(path);
            } else if name.ends_with(".parquet") {
                summary.files += 1;
                let file = std::fs::File::open(&path)?;
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
                        .build()?;
                for batch in reader {
                    let batch = batch?;
                    summary.rows += batch.num_rows();
                    if let Some(status) = batch
                        .column_by_name("geo_status")
                        .and_then(|c| c.as_any().downcast_ref::<arrow_array::StringArray>())
                    {
                        summary.enriched += status.iter().filter(|s| *s == Some("ok")).count();
                    }
                }
            }
        }
    }
    Ok(summary)
}

fn print_table(stats: &PipelineStats, lake: &LakeSummary, elapsed: Duration, out: &Path) {
    let route = |name: &str| stats.routes.by_route.get(name).copied().unwrap_or(0);
    let dead: u64 = stats.routes.dead_letters.values().sum();
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!("\n  {:<34}{:>12}", "events in", stats.records_in);
    println!(
        "  {:<34}{:>12}",
        "bots removed (topic weir.bots)",
        route("bots")
    );
    println!("  {:<34}{:>12}", "events in the lake", lake.rows);
    println!("  {:<34}{:>12}", "  of which geo-enriched", lake.enriched);
    println!(
        "  {:<34}{:>12}",
        "late events (topic weir.late)",
        route("late")
    );
    println!("  {:<34}{:>12}", "sessions closed", route("sessions"));
    println!("  {:<34}{:>12}", "feature updates", route("features"));
    println!("  {:<34}{:>12}", "dead-lettered (topic weir.dlq)", dead);
    for (reason, n) in &stats.routes.dead_letters {
        println!("  {:<34}{:>12}", format!("  {reason}"), n);
    }
    println!(
        "  {:<34}{:>12.0}",
        "events/s (whole run)",
        stats.records_in as f64 / secs
    );
    println!(
        "\n  lake: {} ({} Parquet files; sessions and features beside it)",
        out.join("lake").display(),
        lake.files
    );
    println!("  checkpoints: {}", out.join("checkpoints").display());
    println!("  config: {}", out.join("pipeline.toml").display());
}
