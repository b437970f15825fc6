//! `[source.kafka]` settings: the brokers, topics and group, the librdkafka properties of the
//! consumer and of the output producer, batching and static membership.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::units::HumanDuration;

/// `[source.kafka]`: a consumer group over one or more topics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`, e.g. `"broker1:9092,broker2:9092"`.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group id; instances with the same group split the partitions.
    pub group: String,
    /// Where a group with no committed offset starts.
    #[serde(default)]
    pub start: StartPosition,
    /// librdkafka properties of every client (the consumer and the output producer): the
    /// connection and its security (SASL, SSL). A value `${NAME}` is read from the
    /// environment variable `NAME`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties of the consumer only (`session.timeout.ms`,
    /// `fetch.wait.max.ms`, ...), over `properties`.
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties of the output producer only (`linger.ms`,
    /// `compression.type`, ...), over `properties`.
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
    /// Records per batch handed to the stages.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long to wait for a batch to fill before processing what arrived.
    #[serde(default = "default_batch_timeout")]
    pub batch_timeout: HumanDuration,
    /// A partition with more records than this waiting is paused until they are processed.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: usize,
    /// Static group membership (KIP-345): the instance id is the consumer's
    /// `group.instance.id`, so a restarted instance takes its partitions back without a
    /// rebalance. Its partitions then wait for it until `session.timeout.ms` passes, also
    /// after a clean stop.
    #[serde(default = "default_static_membership")]
    pub static_membership: bool,
    /// How record values are written: `json` (the default), or `avro`, `protobuf` or
    /// `json-schema` in a schema registry's wire format (needs `[schema_registry]`).
    #[serde(default)]
    pub format: ValueFormat,
}

/// How a topic's record values are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ValueFormat {
    /// A JSON object per record.
    #[default]
    Json,
    /// Avro framed by a Confluent-compatible schema registry: magic byte 0, the writer
    /// schema's id, the Avro datum.
    Avro,
    /// Protobuf framed by the registry: magic byte 0, the schema's id, the message indexes,
    /// the message.
    Protobuf,
    /// JSON framed by the registry (Confluent's JSON Schema serializer): magic byte 0, the
    /// schema's id, the JSON text.
    JsonSchema,
}

impl ValueFormat {
    /// The format as the config names it.
    pub fn name(self) -> &'static str {
        match self {
            ValueFormat::Json => "json",
            ValueFormat::Avro => "avro",
            ValueFormat::Protobuf => "protobuf",
            ValueFormat::JsonSchema => "json-schema",
        }
    }
}

impl KafkaSourceConfig {
    /// Checks the values; errors are `(field, reason)` relative to `source.kafka`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.brokers.trim().is_empty() {
            return Err(("brokers".into(), "must list at least one broker".into()));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(("topics".into(), "must list topics, none empty".into()));
        }
        if self.group.trim().is_empty() {
            return Err(("group".into(), "must not be empty".into()));
        }
        if self.max_buffered < self.batch_size {
            return Err((
                "max_buffered".into(),
                format!("must be at least batch_size ({})", self.batch_size),
            ));
        }
        Ok(())
    }

    /// The consumer's librdkafka properties: `properties` with `consumer_properties` over
    /// them.
    pub fn consumer_client_properties(&self) -> BTreeMap<String, String> {
        merged(&self.properties, &self.consumer_properties)
    }

    /// The output producer's librdkafka properties: `properties` with `producer_properties`
    /// over them.
    pub fn producer_client_properties(&self) -> BTreeMap<String, String> {
        merged(&self.properties, &self.producer_properties)
    }
}

/// `shared` with `own` over it.
fn merged(
    shared: &BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = shared.clone();
    all.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartPosition {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records produced after the group starts.
    Latest,
}

impl StartPosition {
    /// The librdkafka `auto.offset.reset` value.
    pub fn as_reset(self) -> &'static str {
        match self {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
        }
    }
}

fn default_batch_size() -> usize {
    512
}

fn default_batch_timeout() -> HumanDuration {
    HumanDuration::from_millis(50)
}

fn default_static_membership() -> bool {
    true
}

fn default_max_buffered() -> usize {
    4096
}
