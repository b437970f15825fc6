//! The `kafka` sink: each route goes to its topic, produced on the instance's producer (so
//! inside the epoch's transaction under exactly-once), with provenance headers.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::message::OwnedHeaders;

use super::KafkaSinkConfig;
use super::headers::output_headers;
use super::producer::OutputProducer;
use crate::sinks::{Rejection, Sink, SinkBatch, SinkError, io_error};

/// Routes to topics.
pub struct KafkaSink {
    name: String,
    topics: HashMap<String, String>,
    producer: Arc<OutputProducer>,
}

impl KafkaSink {
    /// A sink over a validated config.
    pub fn new(name: &str, config: &KafkaSinkConfig, producer: Arc<OutputProducer>) -> Self {
        let topics = config
            .routes
            .iter()
            .filter_map(|r| config.topic_of(r).map(|t| (r.clone(), t.to_string())))
            .collect();
        KafkaSink {
            name: name.to_string(),
            topics,
            producer,
        }
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &SinkBatch) -> Result<Vec<Rejection>, SinkError> {
        for record in records.iter() {
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
            self.producer
                .send(topic, record.key, record.value, headers, record.time)
                .map_err(|e| io_error(&self.name, format!("producing to {topic}: {e}")))?;
        }
        Ok(Vec::new())
    }

    /// Records are acknowledged when the checkpoint commits (or flushes) the producer.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
