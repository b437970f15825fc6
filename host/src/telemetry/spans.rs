//! The spans weir records: one per batch (linked to the traces of the records' producers),
//! per stage call, per sink write and per epoch commit; never one per event. Each is current
//! on its thread while its [`Scope`] lives, so the spans opened inside it are its children.
//! Without an OTLP endpoint no tracer is set and every scope is empty, at the cost of one
//! check.

use std::collections::HashSet;
use std::sync::OnceLock;

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer,
};
use opentelemetry::{Context, ContextGuard, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

use crate::flow::SourceRecord;

/// The links a batch span carries at most (the SDK's default limit per span).
const MAX_LINKS: usize = 128;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Turns tracing on for the rest of the process.
pub(super) fn set_tracer(tracer: SdkTracer) {
    let _ = TRACER.set(tracer);
}

/// A span current on this thread until the scope drops, when it ends; empty when tracing is
/// off.
#[must_use = "the span ends when its scope drops"]
pub struct Scope(Option<ContextGuard>);

impl Scope {
    /// Adds an attribute to the span.
    pub fn set(&self, key: &'static str, value: i64) {
        if self.0.is_some() {
            Context::map_current(|cx| cx.span().set_attribute(KeyValue::new(key, value)));
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&self, reason: &dyn std::fmt::Display) {
        if self.0.is_some() {
            let status = Status::error(reason.to_string());
            Context::map_current(|cx| cx.span().set_status(status));
        }
    }
}

fn open(
    tracer: &SdkTracer,
    builder: opentelemetry::trace::SpanBuilder,
    parent: Option<&Context>,
) -> Scope {
    let span = match parent {
        Some(parent) => builder.start_with_context(tracer, parent),
        None => builder.start(tracer),
    };
    let parent = parent.cloned().unwrap_or_else(Context::current);
    Scope(Some(parent.with_span(span).attach()))
}

/// The span of one source batch: a new trace (a batch mixes records of many traces), linked
/// to each distinct producer span named by the records' `traceparent` headers.
pub fn batch(records: &[SourceRecord]) -> Scope {
    let (Some(tracer), Some(first)) = (TRACER.get(), records.first()) else {
        return Scope(None);
    };
    let mut seen = HashSet::new();
    let links: Vec<Link> = records
        .iter()
        .filter_map(|r| r.provenance.trace)
        .filter(|parent| seen.insert((parent.trace_id, parent.span_id)))
        .take(MAX_LINKS)
        .map(|parent| {
            Link::with_context(SpanContext::new(
                TraceId::from_bytes(parent.trace_id),
                SpanId::from_bytes(parent.span_id),
                TraceFlags::new(parent.flags),
                true,
                TraceState::NONE,
            ))
        })
        .collect();
    let provenance = &first.provenance;
    let builder = tracer
        .span_builder("batch")
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("messaging.destination.name", provenance.source.to_string()),
            KeyValue::new(
                "messaging.destination.partition.id",
                provenance.partition.to_string(),
            ),
            KeyValue::new("messaging.batch.message_count", records.len() as i64),
            KeyValue::new("weir.first_offset", provenance.offset),
        ])
        .with_links(links);
    // A root: the batch is not part of any one record's trace.
    open(tracer, builder, Some(&Context::new()))
}

/// The span of one call of a stage on `records` records, inside the current span.
pub fn stage_call(stage: &str, records: usize) -> Scope {
    child(
        "stage",
        [
            KeyValue::new("weir.stage", stage.to_string()),
            KeyValue::new("weir.records.in", records as i64),
        ],
    )
}

/// The span of one write of `records` records to a sink, inside the current span.
pub fn sink_write(sink: &str, records: usize) -> Scope {
    child(
        "sink write",
        [
            KeyValue::new("weir.sink", sink.to_string()),
            KeyValue::new("weir.records", records as i64),
        ],
    )
}

/// The span of an epoch's commit (a root: it spans many batches' output).
pub fn epoch_commit(epoch: &str) -> Scope {
    let Some(tracer) = TRACER.get() else {
        return Scope(None);
    };
    let builder = tracer
        .span_builder("epoch commit")
        .with_kind(SpanKind::Internal)
        .with_attributes([KeyValue::new("weir.epoch", epoch.to_string())]);
    open(tracer, builder, Some(&Context::new()))
}

fn child<const N: usize>(name: &'static str, attributes: [KeyValue; N]) -> Scope {
    let Some(tracer) = TRACER.get() else {
        return Scope(None);
    };
    let builder = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_attributes(attributes);
    open(tracer, builder, None)
}
