//! The dead-letter topic: the original key, value and headers of every record that failed,
//! plus `weir.dlq.*` and provenance headers, produced in the epoch's transaction.

use std::sync::Arc;

use super::DeadLetterSink;
use crate::flow::DeadLetter;
use crate::sinks::kafka::OutputProducer;
use crate::sinks::kafka::headers::dead_letter_headers;
use crate::sinks::{SinkError, io_error};

/// Dead letters to a topic.
pub struct DeadLetterTopic {
    topic: String,
    producer: Arc<OutputProducer>,
}

impl DeadLetterTopic {
    /// Dead letters go to `topic` on the instance's producer.
    pub fn new(topic: &str, producer: Arc<OutputProducer>) -> Self {
        DeadLetterTopic {
            topic: topic.to_string(),
            producer,
        }
    }
}

impl DeadLetterSink for DeadLetterTopic {
    fn write(&mut self, letters: &[DeadLetter]) -> Result<(), SinkError> {
        let now = chrono::Utc::now();
        let failed_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for letter in letters {
            let key = letter.key.as_deref().unwrap_or_default();
            self.producer
                .send(
                    &self.topic,
                    key,
                    &letter.value,
                    dead_letter_headers(letter, &failed_at),
                    now.timestamp_millis(),
                )
                .map_err(|e| {
                    io_error("dead_letter", format!("producing to {}: {e}", self.topic))
                })?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
