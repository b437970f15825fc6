//! Settings of the Kafka source and sink, and the librdkafka client settings built from them:
//! `properties` pass through to librdkafka, and a value written `${NAME}` is read from the
//! environment, so secrets stay out of config files (and out of logs: nothing here logs them).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::config::Duration;

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
    pub batch_timeout: Duration,
    /// A partition with more records than this waiting is paused until they are processed.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: usize,
    /// Static group membership (KIP-345): the instance id is the consumer's
    /// `group.instance.id`, so a restarted instance takes its partitions back without a
    /// rebalance. Its partitions then wait for it until `session.timeout.ms` passes, also
    /// after a clean stop.
    #[serde(default = "default_static_membership")]
    pub static_membership: bool,
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
        self.consumer_client_properties()?;
        self.producer_client_properties().map(|_| ())
    }

    /// The consumer's librdkafka properties, resolved: `properties` with
    /// `consumer_properties` over them. Errors name the property relative to `source.kafka`.
    pub fn consumer_client_properties(&self) -> Result<BTreeMap<String, String>, (String, String)> {
        merged(
            &self.properties,
            &self.consumer_properties,
            "consumer_properties",
        )
    }

    /// The output producer's librdkafka properties, resolved: `properties` with
    /// `producer_properties` over them.
    pub fn producer_client_properties(&self) -> Result<BTreeMap<String, String>, (String, String)> {
        merged(
            &self.properties,
            &self.producer_properties,
            "producer_properties",
        )
    }
}

/// `shared` resolved, with `own` (the table `table`) resolved over it.
fn merged(
    shared: &BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
    table: &str,
) -> Result<BTreeMap<String, String>, (String, String)> {
    let mut all = resolve_properties(shared, "properties")?;
    all.extend(resolve_properties(own, table)?);
    Ok(all)
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

fn default_batch_timeout() -> Duration {
    Duration::from_millis(50)
}

fn default_static_membership() -> bool {
    true
}

fn default_max_buffered() -> usize {
    4096
}

/// A `kafka` sink: each route it takes goes to a topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The routes this sink takes.
    pub routes: Vec<String>,
    /// Topic for every route not listed in `topics`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Topic per route.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    /// The topic a route goes to.
    pub fn topic_of(&self, route: &str) -> Option<&str> {
        self.topics
            .get(route)
            .or(self.topic.as_ref())
            .map(String::as_str)
    }

    /// Every route needs a topic; errors are `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for route in &self.routes {
            match self.topic_of(route) {
                Some(topic) if !topic.is_empty() => {}
                _ => {
                    return Err((
                        format!("topics.{route}"),
                        "route has no topic (set `topic` or `topics.<route>`)".into(),
                    ));
                }
            }
        }
        if let Some(route) = self.topics.keys().find(|r| !self.routes.contains(r)) {
            return Err((
                format!("topics.{route}"),
                "names a route the sink does not take".into(),
            ));
        }
        Ok(())
    }
}

/// Resolves `${NAME}` values from the environment; the error names the property as
/// `<table>.<key>`.
pub fn resolve_properties(
    properties: &BTreeMap<String, String>,
    table: &str,
) -> Result<BTreeMap<String, String>, (String, String)> {
    properties
        .iter()
        .map(|(key, value)| {
            let resolved = match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                Some(var) => std::env::var(var).map_err(|_| {
                    (
                        format!("{table}.{key}"),
                        format!("environment variable {var} is not set"),
                    )
                })?,
                None => value.clone(),
            };
            Ok((key.clone(), resolved))
        })
        .collect()
}

/// Client settings: the brokers, then the user's (resolved) properties, which may override.
pub fn client_config(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config.set("client.id", "weir");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_read_secrets_from_the_environment() {
        let mut props = BTreeMap::new();
        props.insert("sasl.username".to_string(), "weir".to_string());
        props.insert(
            "sasl.password".to_string(),
            "${WEIR_TEST_SECRET_UNSET_42}".to_string(),
        );
        let err = resolve_properties(&props, "properties").unwrap_err();
        assert_eq!(err.0, "properties.sasl.password");
        assert!(err.1.contains("WEIR_TEST_SECRET_UNSET_42"));
        props.insert("sasl.password".to_string(), "${HOME}".to_string());
        let resolved = resolve_properties(&props, "properties").unwrap();
        assert_eq!(resolved["sasl.password"], std::env::var("HOME").unwrap());
    }

    #[test]
    fn every_route_needs_a_topic() {
        let sink = KafkaSinkConfig {
            routes: vec!["sessions".into(), "features".into()],
            topic: None,
            topics: [("sessions".to_string(), "s".to_string())].into(),
        };
        assert_eq!(sink.validate().unwrap_err().0, "topics.features");
        let sink = KafkaSinkConfig {
            topic: Some("all".into()),
            ..sink
        };
        sink.validate().unwrap();
        assert_eq!(sink.topic_of("features"), Some("all"));
        assert_eq!(sink.topic_of("sessions"), Some("s"));
    }
}
