//! The records that flow through a pipeline: [`SourceRecord`] as read, [`Provenance`] (where
//! it was read), [`SinkRecord`] as routed to a sink, and [`DeadLetter`] for a record that failed,
//! with its [`DeadLetterClass`].

use std::sync::Arc;

/// One record as read, before decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// The record key, if the source has one.
    pub key: Option<Vec<u8>>,
    /// The raw value (expected to be a JSON object).
    pub value: Vec<u8>,
    /// The record timestamp in ms, if the source has one.
    pub timestamp: Option<i64>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Where it was read.
    pub provenance: Provenance,
}

/// Where a record was read from: enough to find it again and to detect duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Topic name, or file path for the file source.
    pub source: Arc<str>,
    /// Partition (0 for files).
    pub partition: i32,
    /// Offset in the partition (line number for files).
    pub offset: i64,
    /// The record's W3C `traceparent`, carried to the Kafka outputs derived from it.
    pub trace: Option<crate::trace_parent::TraceParent>,
}

/// One record, owned (what tests and the in-memory sink keep; sinks get a [`SinkBatch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// The route it was sent on.
    pub route: Arc<str>,
    /// Entity key.
    pub key: Vec<u8>,
    /// The JSON value.
    pub value: Vec<u8>,
    /// Event time, ms.
    pub time: i64,
    /// The source record it derives from; `None` for records made by timers.
    pub provenance: Option<Provenance>,
}

/// A record that could not be processed, with why and where.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Why, e.g. `invalid json: ...`, `trap: ...`, `timeout`, `memory limit`.
    pub reason: String,
    /// Where it failed: `decode`, a stage name, or `sink:<name>`.
    pub stage: String,
    /// The plugin and its sha256, when a plugin was involved.
    pub plugin: Option<(String, String)>,
    /// Where the original record came from.
    pub provenance: Option<Provenance>,
    /// The original record key, if any.
    pub key: Option<Vec<u8>>,
    /// The original record value (for replay), or the stage's value for timer outputs.
    pub value: Vec<u8>,
    /// The original record headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Event time if it was known.
    pub time: Option<i64>,
}

/// What kind of failure made a dead letter: a fixed set, so that the metric label built from it
/// (`weir_dead_letters_total{reason}`) cannot grow with what plugins write. The full reason
/// stays in the dead letter, its headers and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeadLetterClass {
    /// The record could not be decoded (not JSON, no key, a bad time...).
    Decode,
    /// The plugin dead-lettered the record itself, with a reason of its own.
    Plugin,
    /// The plugin trapped on the record.
    Trap,
    /// The plugin's call ran past its deadline.
    Timeout,
    /// The call passed a limit: memory, output, state or timers.
    Limit,
    /// The plugin returned a result the host refuses.
    InvalidResult,
    /// The stage's breaker was open: the plugin was not called.
    Breaker,
    /// No sink takes the route the record was sent on.
    Unrouted,
    /// A sink refused the record.
    Sink,
    /// The record came for a table partition already declared complete.
    Late,
}

/// Reason prefixes of the failures the host isolates in a stage (the messages of
/// `runtime::CallFailure` and of the stage breaker), with their classes.
const STAGE_FAILURES: &[(&str, DeadLetterClass)] = &[
    ("trap:", DeadLetterClass::Trap),
    ("timeout", DeadLetterClass::Timeout),
    ("memory limit", DeadLetterClass::Limit),
    ("output limit:", DeadLetterClass::Limit),
    ("state limit:", DeadLetterClass::Limit),
    ("timer limit:", DeadLetterClass::Limit),
    ("invalid result:", DeadLetterClass::InvalidResult),
    ("stage breaker open:", DeadLetterClass::Breaker),
];

impl DeadLetterClass {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterClass::Decode => "decode",
            DeadLetterClass::Plugin => "plugin",
            DeadLetterClass::Trap => "trap",
            DeadLetterClass::Timeout => "timeout",
            DeadLetterClass::Limit => "limit",
            DeadLetterClass::InvalidResult => "invalid_result",
            DeadLetterClass::Breaker => "breaker",
            DeadLetterClass::Unrouted => "unrouted",
            DeadLetterClass::Sink => "sink",
            DeadLetterClass::Late => "late",
        }
    }
}

impl DeadLetter {
    /// Its class: host stages (decode, router, sinks) by where it failed; a plugin's stage by
    /// the failure the host isolated (a timer's reason starts with `timer `), anything else
    /// being the plugin's own reason.
    pub fn class(&self) -> DeadLetterClass {
        if self.plugin.is_none() {
            return match self.stage.as_str() {
                "decode" => DeadLetterClass::Decode,
                stage if stage.starts_with("sink:") && self.reason.starts_with("late:") => {
                    DeadLetterClass::Late
                }
                stage if stage.starts_with("sink:") => DeadLetterClass::Sink,
                _ => DeadLetterClass::Unrouted,
            };
        }
        let isolated = |reason: &str| {
            STAGE_FAILURES
                .iter()
                .find(|(prefix, _)| reason.starts_with(prefix))
                .map(|(_, class)| *class)
        };
        isolated(&self.reason)
            .or_else(|| isolated(self.reason.strip_prefix("timer ")?))
            .unwrap_or(DeadLetterClass::Plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::stage_breaker::StageBreaker;
    use crate::runtime::CallFailure;

    fn letter(stage: &str, plugin: bool, reason: &str) -> DeadLetter {
        DeadLetter {
            reason: reason.to_string(),
            stage: stage.to_string(),
            plugin: plugin.then(|| ("p".to_string(), "0".repeat(64))),
            provenance: None,
            key: None,
            value: Vec::new(),
            headers: Vec::new(),
            time: None,
        }
    }

    #[test]
    fn every_failure_the_host_isolates_has_its_class_and_a_plugins_own_reason_is_plugin() {
        let breaker = StageBreaker::new("s", std::time::Duration::from_secs(60));
        for _ in 0..3 {
            breaker.observe(Some("trap: x"));
        }
        let open = breaker.refusing().expect("three failures in a row open it");
        let cases = [
            (
                CallFailure::Trap("unreachable".into()).to_string(),
                DeadLetterClass::Trap,
            ),
            (CallFailure::Timeout.to_string(), DeadLetterClass::Timeout),
            (CallFailure::MemoryLimit.to_string(), DeadLetterClass::Limit),
            (
                CallFailure::OutputLimit {
                    bytes: 9,
                    inputs: 1,
                    limit: 1,
                }
                .to_string(),
                DeadLetterClass::Limit,
            ),
            (
                CallFailure::StateLimit(1).to_string(),
                DeadLetterClass::Limit,
            ),
            (
                CallFailure::TimerLimit(1).to_string(),
                DeadLetterClass::Limit,
            ),
            (
                CallFailure::InvalidResult("x".into()).to_string(),
                DeadLetterClass::InvalidResult,
            ),
            (open, DeadLetterClass::Breaker),
            (
                format!("timer {}", CallFailure::Timeout),
                DeadLetterClass::Timeout,
            ),
            ("bot: crawler user agent".into(), DeadLetterClass::Plugin),
            (
                "anything at all a plugin writes".into(),
                DeadLetterClass::Plugin,
            ),
        ];
        for (reason, class) in cases {
            assert_eq!(letter("stage", true, &reason).class(), class, "{reason}");
        }
        assert_eq!(
            letter("decode", false, "invalid json: x").class(),
            DeadLetterClass::Decode
        );
        assert_eq!(
            letter("sink:lake", false, "too big").class(),
            DeadLetterClass::Sink
        );
        assert_eq!(
            letter(
                "sink:lake",
                false,
                "late: dt=2026-12-06/hour=10 is complete"
            )
            .class(),
            DeadLetterClass::Late
        );
        assert_eq!(
            letter("router", false, "unrouted: x").class(),
            DeadLetterClass::Unrouted
        );
        // A stage a user named like a host stage is still a plugin's.
        assert_eq!(
            letter("decode", true, "mine").class(),
            DeadLetterClass::Plugin
        );
    }
}
