//! `weir validate`: the config's fields, then what a run would need from the machine (every
//! plugin file loads and its `init` takes the stage's config, the geo database opens) and, with
//! `--check-connections`, from the network (the brokers and their topics, the object stores,
//! Redis). Each failure names the field it comes from.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::checkpoint::CheckpointStore;
use crate::config::{PipelineConfig, SourceConfig};
use crate::pipeline::build::PipelineFactory;
use crate::sinks::SinkConfig;
use crate::storage::Storage;

/// How long one connection check may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `weir validate` checks.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The pipeline config (TOML).
    pub config: PathBuf,
    /// Where the plugins are (default: the config's `plugin_dir`).
    #[arg(long, env = "WEIR_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Also connect to the brokers, the object stores and Redis the config names.
    #[arg(long)]
    pub check_connections: bool,
}

/// Validates the config, its plugins and geo database, and with `check_connections` its
/// servers; prints what it checked.
pub fn validate(args: &ValidateArgs) -> Result<()> {
    let config = PipelineConfig::load(&args.config)?;
    let plugin_dir = args
        .plugin_dir
        .clone()
        .unwrap_or_else(|| config.plugin_dir.clone());
    let factory = PipelineFactory::new(&config, &plugin_dir, 1)?;
    factory.stages().context("initializing the stages")?;
    println!(
        "{}: valid ({} stages, {} sinks); every plugin loads and takes its config{}",
        args.config.display(),
        config.stages.len(),
        config.sinks.len(),
        if config.geo.is_some() {
            ", the geo database opens"
        } else {
            ""
        }
    );
    if args.check_connections {
        for checked in check_connections(&config)? {
            println!("reachable: {checked}");
        }
    }
    Ok(())
}

/// Connects to every server the config names; returns what answered.
fn check_connections(config: &PipelineConfig) -> Result<Vec<String>> {
    let mut reached = Vec::new();
    if let SourceConfig::Kafka(kafka) = &config.source {
        let mut outputs: Vec<(String, &str)> = Vec::new();
        for (name, sink) in &config.sinks {
            if let SinkConfig::Kafka(sink) = sink {
                for route in &sink.routes {
                    if let Some(topic) = sink.topic_of(route) {
                        outputs.push((format!("sinks.{name}"), topic));
                    }
                }
            }
        }
        if let Some(topic) = &config.dead_letter.topic {
            outputs.push(("dead_letter.topic".into(), topic));
        }
        let existing = kafka_topics(&kafka.brokers, &kafka.consumer_client_properties())?;
        for topic in &kafka.topics {
            if !existing.contains(topic) {
                bail!(
                    "source.kafka.topics: topic {topic:?} does not exist on {}",
                    kafka.brokers
                );
            }
        }
        for (field, topic) in outputs {
            if !existing.contains(topic) {
                println!(
                    "warning: {field}: topic {topic:?} does not exist on {} (it is made on \
                     the first write only if the brokers create topics automatically)",
                    kafka.brokers
                );
            }
        }
        reached.push(format!("Kafka at {} with its topics", kafka.brokers));
        CheckpointStore::open(&config.checkpoint)
            .and_then(|store| store.list("").map(|_| ()))
            .with_context(|| format!("checkpoint.store {:?}", config.checkpoint.store))?;
        reached.push(format!("checkpoint store {}", config.checkpoint.store));
    }
    for (name, sink) in &config.sinks {
        match sink {
            SinkConfig::Parquet(parquet) | SinkConfig::Delta(parquet) => {
                Storage::open(&parquet.path, &parquet.s3)
                    .and_then(|storage| storage.list("").map(|_| ()))
                    .with_context(|| format!("sinks.{name}.path {:?}", parquet.path))?;
                reached.push(format!("sinks.{name}: {}", parquet.path));
            }
            SinkConfig::Redis(redis) => {
                crate::sinks::redis::ping(redis)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("sinks.{name}.url"))?;
                reached.push(format!("sinks.{name}: Redis"));
            }
            SinkConfig::Postgres(postgres) => {
                crate::sinks::postgres::ping(postgres)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("sinks.{name}.url"))?;
                reached.push(format!("sinks.{name}: PostgreSQL"));
            }
            SinkConfig::Ndjson(_) | SinkConfig::Kafka(_) => {}
        }
    }
    Ok(reached)
}

/// The topics the brokers have.
fn kafka_topics(
    brokers: &str,
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeSet<String>> {
    let consumer: BaseConsumer = crate::kafka_client::client_config(brokers, properties)
        .create()
        .context("source.kafka: creating a client")?;
    let metadata = consumer
        .fetch_metadata(None, CONNECT_TIMEOUT)
        .with_context(|| format!("source.kafka.brokers {brokers:?}: no answer"))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_string())
        .collect())
}
