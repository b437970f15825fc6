//! `type = "kafka"` sink settings: the routes it takes, the topic of each, and how values are
//! written (JSON, or Avro registered in the schema registry).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

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
    /// How values are written: `json` (the default), or `avro` or `protobuf` in the schema
    /// registry's wire format (needs `[schema_registry]`).
    #[serde(default)]
    pub format: OutputFormat,
    /// The schema of the values (an `.avsc` or a `.proto` file). Without one, the subject's
    /// latest version (needs `auto_register = false`).
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// The `.proto`'s top-level message the values are (default: its first).
    #[serde(default)]
    pub message: Option<String>,
    /// Registers `schema_file` under the subject at start (the registry keeps one version per
    /// schema); `false` looks it up and refuses to start if the subject lacks it.
    #[serde(default = "default_auto_register")]
    pub auto_register: bool,
    /// How the subject is named: `topic-name` (`<topic>-value`) or `record-name` (the
    /// schema's full name).
    #[serde(default)]
    pub subject_strategy: SubjectStrategy,
}

fn default_auto_register() -> bool {
    true
}

/// How a kafka sink writes values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// The JSON text.
    #[default]
    Json,
    /// Avro in the registry's wire format.
    Avro,
    /// Protobuf in the registry's wire format.
    Protobuf,
}

/// Which registry subject an output schema is under (Confluent's strategies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectStrategy {
    /// `<topic>-value`.
    #[default]
    TopicName,
    /// The record schema's full name (`namespace.Name`).
    RecordName,
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
        if self.format != OutputFormat::Json && self.schema_file.is_none() {
            if self.auto_register {
                return Err((
                    "schema_file".into(),
                    "avro or protobuf output registers a schema: give its .avsc or .proto \
                     file, or set `auto_register = false` to use the subject's latest version"
                        .into(),
                ));
            }
            if self.subject_strategy == SubjectStrategy::RecordName {
                return Err((
                    "subject_strategy".into(),
                    "record-name takes the subject from the schema: give `schema_file`".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_needs_a_topic() {
        let sink = KafkaSinkConfig {
            routes: vec!["sessions".into(), "features".into()],
            topic: None,
            topics: [("sessions".to_string(), "s".to_string())].into(),
            format: OutputFormat::Json,
            schema_file: None,
            message: None,
            auto_register: true,
            subject_strategy: SubjectStrategy::TopicName,
        };
        assert_eq!(sink.validate().unwrap_err().0, "topics.features");
        let sink = KafkaSinkConfig {
            topic: Some("all".into()),
            ..sink
        };
        sink.validate().unwrap();
        assert_eq!(sink.topic_of("features"), Some("all"));
        assert_eq!(sink.topic_of("sessions"), Some("s"));
        let avro = KafkaSinkConfig {
            format: OutputFormat::Avro,
            ..sink
        };
        assert_eq!(avro.validate().unwrap_err().0, "schema_file");
    }
}
