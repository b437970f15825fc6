//! Sends each output to the sinks that take its route, and dead letters to the dead-letter
//! output. Records are written as JSON once, into a [`SinkBatch`] per sink, during a batch
//! and handed over at the batch's end; a record a sink refuses becomes a dead letter naming
//! the sink.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::event::{EventArena, EventRef};
use crate::flow::{DeadLetter, Provenance};
use crate::sinks::{DeadLetterSink, Sink, SinkBatch, SinkError};
use crate::telemetry::spans;

/// Per-route and per-reason counts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RouteCounts {
    /// Records delivered to sinks, by route.
    pub by_route: BTreeMap<String, u64>,
    /// Dead letters by reason class (the reason up to its first `:`).
    pub dead_letters: BTreeMap<String, u64>,
}

impl RouteCounts {
    /// Adds another pipeline's counts.
    pub fn add(&mut self, other: &RouteCounts) {
        for (route, n) in &other.by_route {
            *self.by_route.entry(route.clone()).or_default() += n;
        }
        for (reason, n) in &other.dead_letters {
            *self.dead_letters.entry(reason.clone()).or_default() += n;
        }
    }
}

/// The router.
pub struct Router {
    routes: HashMap<String, (Arc<str>, Vec<usize>)>,
    sinks: Vec<Box<dyn Sink>>,
    buffers: Vec<SinkBatch>,
    dead: Vec<DeadLetter>,
    dead_letters: Box<dyn DeadLetterSink>,
    counts: RouteCounts,
    /// A sink's write or epoch end failed since the last recovery: what it was handed may be
    /// gone (records taken from their buffer, a part whose upload failed), so nothing more is
    /// written or committed until [`Router::recover`].
    failed: Option<String>,
}

/// The class of a dead-letter reason: the text before the first `:`.
pub fn reason_class(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason).trim()
}

impl Router {
    /// A router over `sinks`, each with the routes it takes.
    pub fn new(
        sinks: Vec<(Box<dyn Sink>, Vec<String>)>,
        dead_letters: Box<dyn DeadLetterSink>,
    ) -> Self {
        let mut routes: HashMap<String, (Arc<str>, Vec<usize>)> = HashMap::new();
        let mut boxed = Vec::new();
        for (i, (sink, sink_routes)) in sinks.into_iter().enumerate() {
            for route in sink_routes {
                routes
                    .entry(route.clone())
                    .or_insert_with(|| (route.as_str().into(), Vec::new()))
                    .1
                    .push(i);
            }
            boxed.push(sink);
        }
        let buffers = boxed.iter().map(|_| SinkBatch::default()).collect();
        Router {
            routes,
            sinks: boxed,
            buffers,
            dead: Vec::new(),
            dead_letters,
            counts: RouteCounts::default(),
            failed: None,
        }
    }

    /// Queues `event` (in `arena`) on `route`. A route no sink takes is a dead letter.
    pub fn send(
        &mut self,
        route: &str,
        arena: &EventArena,
        event: &EventRef,
        provenance: Option<Provenance>,
    ) {
        let Some((name, targets)) = self.routes.get(route) else {
            self.dead_letter(DeadLetter {
                reason: format!("unrouted: no sink takes route `{route}`"),
                stage: "router".into(),
                plugin: None,
                provenance,
                key: Some(arena.key(event).to_vec()),
                value: arena.to_json(event),
                headers: Vec::new(),
                time: Some(event.time),
            });
            return;
        };
        for &i in targets {
            self.buffers[i].push_event(name, arena, event, provenance.clone());
        }
        // Counted without allocating the route name for every record.
        match self.counts.by_route.get_mut(route) {
            Some(count) => *count += 1,
            None => {
                self.counts.by_route.insert(route.to_string(), 1);
            }
        }
    }

    /// Queues a dead letter.
    pub fn dead_letter(&mut self, letter: DeadLetter) {
        let class = reason_class(&letter.reason).to_string();
        let version = letter
            .plugin
            .as_ref()
            .map(|(_, sha)| sha.get(..12).unwrap_or(sha).to_string())
            .unwrap_or_default();
        metrics::counter!("weir_dead_letters_total", "stage" => letter.stage.clone(), "reason" => letter.class().as_str(), "plugin_version" => version)
            .increment(1);
        *self.counts.dead_letters.entry(class).or_default() += 1;
        self.dead.push(letter);
    }

    /// Writes everything queued to the sinks and the dead-letter output.
    pub fn write_out(&mut self) -> Result<(), SinkError> {
        self.refuse_after_failure()?;
        self.write_to_each()
            .inspect_err(|e| self.failed = Some(e.to_string()))
    }

    /// A sink failed since the last recovery: the epoch must be rewound first.
    fn refuse_after_failure(&self) -> Result<(), SinkError> {
        match &self.failed {
            Some(reason) => Err(SinkError::Io {
                sink: "router".into(),
                reason: format!("a sink failed earlier in this epoch ({reason}); rewind first"),
            }),
            None => Ok(()),
        }
    }

    fn write_to_each(&mut self) -> Result<(), SinkError> {
        for i in 0..self.sinks.len() {
            if self.buffers[i].is_empty() {
                continue;
            }
            let records = std::mem::take(&mut self.buffers[i]);
            let span = spans::sink_write(self.sinks[i].name(), records.len());
            let rejections = self.sinks[i]
                .write(&records)
                .inspect_err(|e| span.fail(e))?;
            span.set("weir.records.rejected", rejections.len() as i64);
            drop(span);
            let sink = self.sinks[i].name().to_string();
            count_written(&sink, &records, rejections.len());
            for rejection in rejections {
                let Some(record) = records.get(rejection.index) else {
                    continue;
                };
                *self
                    .counts
                    .by_route
                    .entry(record.route.to_string())
                    .or_default() -= 1;
                self.dead_letter(DeadLetter {
                    reason: rejection.reason,
                    stage: format!("sink:{sink}"),
                    plugin: None,
                    provenance: record.provenance.cloned(),
                    key: Some(record.key.to_vec()),
                    value: record.value.to_vec(),
                    headers: Vec::new(),
                    time: Some(record.time),
                });
            }
            self.buffers[i] = records;
            self.buffers[i].clear();
        }
        if !self.dead.is_empty() {
            let span = spans::sink_write("dead_letter", self.dead.len());
            self.dead_letters
                .write(&self.dead)
                .inspect_err(|e| span.fail(e))?;
            self.dead.clear();
        }
        Ok(())
    }

    /// Writes out and ends the epoch in every sink; returns each sink's commit record.
    pub fn prepare_commit(&mut self) -> Result<Vec<(String, Vec<u8>)>, SinkError> {
        self.write_out()?;
        self.end_epoch_in_each()
            .inspect_err(|e| self.failed = Some(e.to_string()))
    }

    fn end_epoch_in_each(&mut self) -> Result<Vec<(String, Vec<u8>)>, SinkError> {
        let mut records = Vec::new();
        for sink in &mut self.sinks {
            if let Some(record) = sink.prepare_commit()? {
                records.push((sink.name().to_string(), record));
            }
        }
        self.dead_letters.flush()?;
        Ok(records)
    }

    /// The epoch committed: each sink publishes what its record names.
    pub fn commit(&mut self, records: &[(String, Vec<u8>)]) -> Result<(), SinkError> {
        for (name, record) in records {
            if let Some(sink) = self.sinks.iter_mut().find(|s| s.name() == name) {
                sink.commit(record)?;
            }
        }
        Ok(())
    }

    /// Starts every sink from the committed checkpoint's records (none without one),
    /// dropping what uncommitted epochs left staged.
    pub fn recover(&mut self, records: Option<&[(String, Vec<u8>)]>) -> Result<(), SinkError> {
        for buffer in &mut self.buffers {
            buffer.clear();
        }
        self.dead.clear();
        self.failed = None;
        for sink in &mut self.sinks {
            let record = records
                .and_then(|r| r.iter().find(|(name, _)| name == sink.name()))
                .map(|(_, record)| record.as_slice());
            sink.recover(record)?;
        }
        Ok(())
    }

    /// Whether a sink needs the epoch to end without new input.
    pub fn wants_commit(&self) -> bool {
        self.sinks.iter().any(|s| s.wants_commit())
    }

    /// The partition's watermark moved: sinks that mark complete hours follow it.
    pub fn observe_watermark(&mut self, watermark: i64) {
        for sink in &mut self.sinks {
            sink.observe_watermark(watermark);
        }
    }

    /// The input has ended: the next epoch finishes every open file.
    pub fn finish_files(&mut self) {
        for sink in &mut self.sinks {
            sink.finish_files();
        }
    }

    /// Writes out and closes every sink.
    pub fn close(&mut self) -> Result<(), SinkError> {
        self.write_out()?;
        for sink in &mut self.sinks {
            sink.close()?;
        }
        self.dead_letters.close()
    }

    /// Counts so far.
    pub fn counts(&self) -> &RouteCounts {
        &self.counts
    }
}

/// `weir_sink_records_total{sink, route}`: records a sink took (refused ones are subtracted
/// from the route they came on, which for almost every sink is its only route); and
/// `weir_sink_event_latency_seconds{sink}`: from each record's event time to the sink taking it.
fn count_written(sink: &str, records: &SinkBatch, refused: usize) {
    let latency =
        metrics::histogram!("weir_sink_event_latency_seconds", "sink" => sink.to_string());
    let now = crate::sinks::now_ms();
    let mut by_route: Vec<(&str, u64)> = Vec::new();
    for record in records.iter() {
        latency.record((now - record.time).max(0) as f64 / 1000.0);
        match by_route
            .iter_mut()
            .find(|(route, _)| *route == record.route)
        {
            Some((_, n)) => *n += 1,
            None => by_route.push((record.route, 1)),
        }
    }
    if let Some((_, n)) = by_route.first_mut() {
        *n = n.saturating_sub(refused as u64);
    }
    for (route, n) in by_route {
        metrics::counter!("weir_sink_records_total", "sink" => sink.to_string(), "route" => route.to_string())
            .increment(n);
    }
}
