//! The `kafka` sink: each route goes to its topic, produced on the instance's producer (so
//! inside the epoch's transaction under exactly-once), with provenance headers; values as
//! the stages wrote them (JSON) or in a registered format (Avro, Protobuf).

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::message::OwnedHeaders;

use super::headers::output_headers;
use super::producer::OutputProducer;
use super::registered_output::{OutputError, RegisteredOutput};
use super::{KafkaSinkConfig, OutputFormat};
use crate::sinks::{Rejection, Sink, SinkBatch, SinkError, io_error};
use crate::source::registry::SchemaRegistry;

/// Routes to topics.
pub struct KafkaSink {
    name: String,
    topics: HashMap<String, String>,
    producer: Arc<OutputProducer>,
    /// Writes the values in a registered format (`avro`, `protobuf`).
    registered: Option<RegisteredOutput>,
}

impl KafkaSink {
    /// A sink over a validated config. An Avro or Protobuf sink has its schema's id for each
    /// of its topics from `registry` before it starts.
    pub fn new(
        name: &str,
        config: &KafkaSinkConfig,
        producer: Arc<OutputProducer>,
        registry: Option<SchemaRegistry>,
    ) -> Result<Self, SinkError> {
        let topics: HashMap<String, String> = config
            .routes
            .iter()
            .filter_map(|r| config.topic_of(r).map(|t| (r.clone(), t.to_string())))
            .collect();
        let setup = |reason: String| SinkError::Setup {
            sink: name.to_string(),
            reason,
        };
        let registered = match (config.format, registry) {
            (OutputFormat::Json, _) => None,
            (_, None) => {
                return Err(setup(
                    "a registered format needs a [schema_registry]".into(),
                ));
            }
            (_, Some(registry)) => {
                let topics = topics.values().map(String::as_str);
                Some(RegisteredOutput::new(config, registry, topics).map_err(setup)?)
            }
        };
        Ok(KafkaSink {
            name: name.to_string(),
            topics,
            producer,
            registered,
        })
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &SinkBatch) -> Result<Vec<Rejection>, SinkError> {
        let mut rejected = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let Some(topic) = self.topics.get(record.route) else {
                return Err(io_error(
                    &self.name,
                    format!("no topic for route {}", record.route),
                ));
            };
            let headers = match record.provenance {
                Some(p) => output_headers(p),
                None => OwnedHeaders::new(),
            };
            let encoded;
            let value = match &self.registered {
                None => record.value,
                Some(registered) => match registered.encode(topic, record.value) {
                    Ok(framed) => {
                        encoded = framed;
                        &encoded
                    }
                    Err(OutputError::Record(reason)) => {
                        rejected.push(Rejection { index, reason });
                        continue;
                    }
                    Err(OutputError::Schema(reason)) => {
                        return Err(io_error(&self.name, reason));
                    }
                },
            };
            self.producer
                .send(topic, record.key, value, headers, record.time)
                .map_err(|e| io_error(&self.name, format!("producing to {topic}: {e}")))?;
        }
        Ok(rejected)
    }

    /// Records are acknowledged when the checkpoint commits (or flushes) the producer.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
