//! The headers weir adds to what it produces: where the record was read (so duplicates are
//! detectable downstream) and, on dead letters, why and where it failed.

use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::flow::{DeadLetter, Provenance};
use crate::trace_parent;

/// Source topic of the record an output derives from.
pub const SOURCE_TOPIC: &str = "weir.source.topic";
/// Source partition.
pub const SOURCE_PARTITION: &str = "weir.source.partition";
/// Source offset.
pub const SOURCE_OFFSET: &str = "weir.source.offset";
/// Dead letters: the reason, e.g. `invalid json: ...`.
pub const DLQ_REASON: &str = "weir.dlq.reason";
/// Dead letters: the reason's class (`decode`, `plugin`, `trap`, `timeout`, `limit`,
/// `invalid_result`, `breaker`, `unrouted`, `sink`).
pub const DLQ_CLASS: &str = "weir.dlq.class";
/// Dead letters: `decode`, a stage name, `router` or `sink:<name>`.
pub const DLQ_STAGE: &str = "weir.dlq.stage";
/// Dead letters: the plugin's name.
pub const DLQ_PLUGIN: &str = "weir.dlq.plugin";
/// Dead letters: the plugin's sha256.
pub const DLQ_PLUGIN_SHA256: &str = "weir.dlq.plugin-sha256";
/// Dead letters: when it failed (RFC 3339).
pub const DLQ_TIME: &str = "weir.dlq.time";
/// Dead letters: the record's event time in ms, when it was known.
pub const DLQ_EVENT_TIME: &str = "weir.dlq.event-time";
/// Prefix of every header weir adds (stripped again when a dead letter is replayed).
pub const WEIR_PREFIX: &str = "weir.";

fn add(headers: OwnedHeaders, key: &str, value: &[u8]) -> OwnedHeaders {
    headers.insert(Header {
        key,
        value: Some(value),
    })
}

/// The headers of an output: the source record's `traceparent` when it had one (so the
/// trace goes on downstream), then provenance.
pub fn output_headers(provenance: &Provenance) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(4);
    if let Some(trace) = &provenance.trace {
        headers = add(headers, trace_parent::HEADER, trace.to_header().as_bytes());
    }
    with_provenance(headers, provenance)
}

/// Adds the provenance headers.
fn with_provenance(mut headers: OwnedHeaders, provenance: &Provenance) -> OwnedHeaders {
    headers = add(headers, SOURCE_TOPIC, provenance.source.as_bytes());
    headers = add(
        headers,
        SOURCE_PARTITION,
        provenance.partition.to_string().as_bytes(),
    );
    add(
        headers,
        SOURCE_OFFSET,
        provenance.offset.to_string().as_bytes(),
    )
}

/// The headers of a dead letter: the original record's, then provenance and `weir.dlq.*`.
pub fn dead_letter_headers(letter: &DeadLetter, failed_at: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(letter.headers.len() + 10);
    for (key, value) in &letter.headers {
        headers = add(headers, key, value);
    }
    if let Some(provenance) = &letter.provenance {
        headers = with_provenance(headers, provenance);
    }
    headers = add(headers, DLQ_REASON, letter.reason.as_bytes());
    headers = add(headers, DLQ_CLASS, letter.class().as_str().as_bytes());
    headers = add(headers, DLQ_STAGE, letter.stage.as_bytes());
    if let Some((plugin, sha)) = &letter.plugin {
        headers = add(headers, DLQ_PLUGIN, plugin.as_bytes());
        headers = add(headers, DLQ_PLUGIN_SHA256, sha.as_bytes());
    }
    if let Some(time) = letter.time {
        headers = add(headers, DLQ_EVENT_TIME, time.to_string().as_bytes());
    }
    add(headers, DLQ_TIME, failed_at.as_bytes())
}

/// Headers as owned pairs (for tests, replay and the source).
pub fn to_pairs<H: Headers>(headers: &H) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| {
            (
                h.key.to_string(),
                h.value.map(<[u8]>::to_vec).unwrap_or_default(),
            )
        })
        .collect()
}
