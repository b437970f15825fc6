//! `weir dlq replay`: re-publishes dead letters' original records (default: to their source
//! topic), filtered by reason, stage and time. A ledger in the checkpoint store records the
//! DLQ offsets already replayed, so the same range is never replayed twice by accident.

use std::collections::BTreeMap;

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, Message, OwnedHeaders};
use serde::{Deserialize, Serialize};

use super::topic_reader::read_to_end;
use crate::checkpoint::{CheckpointStore, Delivery, safe_name};
use crate::config::{ConfigError, PipelineConfig, SourceConfig};
use crate::error::{Error, Result};
use crate::kafka::config::KafkaSourceConfig;
use crate::kafka_client::client_config;
use crate::sinks::dead_letter::Selection;
use crate::sinks::kafka::headers::{
    DLQ_CLASS, DLQ_REASON, DLQ_STAGE, SOURCE_TOPIC, WEIR_PREFIX, to_pairs,
};
use crate::sinks::kafka::{OutputProducer, ProducerSettings};

/// Which dead letters to replay, and where.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Which dead letters.
    pub select: Selection,
    /// Publish here instead of each record's source topic.
    pub to: Option<String>,
    /// Count, do not publish or record.
    pub dry_run: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Dead letters read.
    pub scanned: u64,
    /// Skipped because an earlier replay already published them.
    pub already_replayed: u64,
    /// Matching the filter.
    pub matched: u64,
    /// Published (0 on a dry run).
    pub replayed: u64,
    /// Matching but without a source topic header and no `--to`.
    pub no_target: u64,
}

/// Replayed offsets per DLQ partition, as sorted, merged `[start, end)` ranges.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    partitions: BTreeMap<i32, Vec<(i64, i64)>>,
}

impl Ledger {
    fn contains(&self, partition: i32, offset: i64) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|r| r.iter().any(|(s, e)| (*s..*e).contains(&offset)))
    }

    fn add(&mut self, partition: i32, offset: i64) {
        let ranges = self.partitions.entry(partition).or_default();
        ranges.push((offset, offset + 1));
        ranges.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *ranges = merged;
    }
}

/// A consumer that reads the dead-letter topic's committed records for `purpose` (`replay`,
/// `view`), in a group of its own beside the pipeline's, committing nothing.
pub fn dlq_reader(
    source: &KafkaSourceConfig,
    purpose: &str,
) -> rdkafka::error::KafkaResult<BaseConsumer> {
    client_config(&source.brokers, &source.consumer_client_properties())
        .set("group.id", format!("{}-dlq-{purpose}", source.group))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
}

/// A header's value as text.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// What earlier replays of this group and topic published. A ledger that does not parse is an
/// error: read as empty, it would replay every dead letter again.
fn read_ledger(store: &CheckpointStore, key: &str) -> Result<Ledger> {
    let Some(bytes) = store.get(key)? else {
        return Ok(Ledger::default());
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Replay(format!(
            "the replay ledger {key} in the checkpoint store is corrupt ({e}); it records which \
             dead letters were already replayed, so nothing is replayed until it is repaired \
             (deleting it replays them all again)"
        ))
    })
}

/// Replays the dead-letter topic of `config`'s pipeline.
pub fn replay(config: &PipelineConfig, filter: &ReplayFilter) -> Result<ReplayReport> {
    let invalid = |field: &str, reason: &str| -> Error {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
        .into()
    };
    let SourceConfig::Kafka(source) = &config.source else {
        return Err(invalid("source", "dlq replay needs a kafka source"));
    };
    let Some(dlq) = &config.dead_letter.topic else {
        return Err(invalid(
            "dead_letter.topic",
            "dlq replay needs a dead-letter topic",
        ));
    };
    let producer_properties = source.producer_client_properties();
    let timeout = config.checkpoint.timeout.0;
    let store = CheckpointStore::open(&config.checkpoint)?;
    let ledger_key = format!(
        "dlq-replay/{}/{}.json",
        safe_name(&source.group),
        safe_name(dlq)
    );
    let mut ledger = read_ledger(&store, &ledger_key)?;

    let consumer = dlq_reader(source, "replay")?;
    let producer = if filter.dry_run {
        None
    } else {
        Some(OutputProducer::new(&ProducerSettings {
            brokers: &source.brokers,
            properties: &producer_properties,
            delivery: Delivery::AtLeastOnce,
            transactional_id: "",
            timeout,
        })?)
    };
    let mut report = ReplayReport::default();
    let mut published = Vec::new();
    read_to_end(&consumer, dlq, timeout, |message| {
        let (partition, offset) = (message.partition(), message.offset());
        report.scanned += 1;
        if ledger.contains(partition, offset) {
            report.already_replayed += 1;
            return Ok(());
        }
        let headers = message.headers().map(to_pairs).unwrap_or_default();
        let matches = filter.select.takes(
            header(&headers, DLQ_REASON).unwrap_or_default(),
            header(&headers, DLQ_STAGE).unwrap_or_default(),
            header(&headers, DLQ_CLASS).unwrap_or_default(),
            message.timestamp().to_millis().unwrap_or(0),
        );
        if !matches {
            return Ok(());
        }
        report.matched += 1;
        let Some(target) = filter
            .to
            .clone()
            .or_else(|| header(&headers, SOURCE_TOPIC).map(str::to_string))
        else {
            report.no_target += 1;
            return Ok(());
        };
        let Some(producer) = &producer else {
            return Ok(());
        };
        let mut original = OwnedHeaders::new();
        for (key, value) in headers.iter().filter(|(k, _)| !k.starts_with(WEIR_PREFIX)) {
            original = original.insert(Header {
                key,
                value: Some(value),
            });
        }
        let from = format!("{dlq}/{partition}/{offset}");
        original = original.insert(Header {
            key: "weir.replayed-from",
            value: Some(&from),
        });
        let time = message.timestamp().to_millis().unwrap_or_default();
        producer.send(
            &target,
            message.key().unwrap_or_default(),
            message.payload().unwrap_or_default(),
            original,
            time,
        )?;
        published.push((partition, offset));
        Ok(())
    })?;
    if let Some(producer) = &producer {
        producer.flush()?;
        if producer.failures() > 0 {
            return Err(Error::Commit(
                "some replayed records were not delivered; nothing was recorded".into(),
            ));
        }
        report.replayed = published.len() as u64;
        for (partition, offset) in published {
            ledger.add(partition, offset);
        }
        let bytes = serde_json::to_vec(&ledger).unwrap_or_default();
        store.put(&ledger_key, bytes)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_ledger_stops_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let config: crate::checkpoint::CheckpointConfig =
            toml::from_str(&format!("store = {:?}", dir.path().to_str().unwrap())).unwrap();
        let store = CheckpointStore::open(&config).unwrap();
        assert!(
            read_ledger(&store, "dlq-replay/g/dlq.json")
                .unwrap()
                .partitions
                .is_empty()
        );
        store
            .put(
                "dlq-replay/g/dlq.json",
                b"{\"partitions\": {\"0\": [[3".to_vec(),
            )
            .unwrap();
        let error = read_ledger(&store, "dlq-replay/g/dlq.json")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("replay ledger dlq-replay/g/dlq.json"),
            "{error}"
        );
        assert!(error.contains("corrupt"), "{error}");
    }

    #[test]
    fn the_ledger_merges_ranges() {
        let mut ledger = Ledger::default();
        for offset in [5, 3, 4, 9] {
            ledger.add(0, offset);
        }
        assert_eq!(ledger.partitions[&0], vec![(3, 6), (9, 10)]);
        assert!(ledger.contains(0, 4) && !ledger.contains(0, 6) && !ledger.contains(1, 4));
    }
}
