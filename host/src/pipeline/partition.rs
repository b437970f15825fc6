//! [`PartitionPipeline`]: the stages, router, watermark and state of one partition, and the
//! per-batch data path through them.

use std::time::Instant;

use weir_sdk::abi::{Batch, BatchResult, OutputKind};

use super::decode::RecordDecoder;
use super::router::{RouteCounts, Router};
use super::stage::{FiredTimers, Stage, stage_dead_letter};
use super::stage_io::{output_event, stage_batch, timer_events};
use crate::config::MAIN_ROUTE;
use crate::error::{Error, Result};
use crate::event::{EventArena, EventRef};
use crate::flow::{DeadLetter, Provenance, SourceRecord};
use crate::source::SourceError;
use crate::source::schemas::Undecodable;
use crate::state::{
    PartitionChanges, PartitionSnapshot, Slice, SliceCover, SnapshotError, WatermarkTracker,
};
use crate::telemetry::spans;

/// What went through a pipeline.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PipelineStats {
    /// Records read from the source.
    pub records_in: u64,
    /// Records that decoded and entered the first stage.
    pub decoded: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// Deliveries by route and dead letters by reason.
    pub routes: RouteCounts,
}

impl PipelineStats {
    /// Adds another pipeline's counts (partitions of one instance).
    pub fn add(&mut self, other: &PipelineStats) {
        self.records_in += other.records_in;
        self.decoded += other.decoded;
        self.timers_fired += other.timers_fired;
        self.routes.add(&other.routes);
    }
}

/// The pipeline of one partition.
pub struct PartitionPipeline {
    decoder: RecordDecoder,
    stages: Vec<Box<dyn Stage>>,
    router: Router,
    watermark: WatermarkTracker,
    stats: PipelineStats,
    /// Where the last source record came from: the provenance of records made by timers
    /// that no record of the current batch fired (idle time, end of input).
    last_provenance: Option<Provenance>,
    /// The records of the current batch that raised the watermark candidate, with the
    /// candidate, increasing: a timer's outputs take the provenance of the first record that
    /// moved the watermark past it, which does not depend on how records were batched.
    watermark_raises: Vec<(i64, Provenance)>,
    /// The events in flight: parsed once, edited by the stages, written out at the sinks.
    arena: EventArena,
    /// The batch handed to a stage, rebuilt for each (its buffers reused).
    scratch: Batch,
    /// The lengths of the last full snapshot and changes encoded.
    encoded: EncodedLengths,
}

/// The lengths of the last full snapshot and changes encoded: the next one's buffer reserves
/// as much and an eighth more, so that megabytes of state are not copied as the buffer grows.
#[derive(Debug, Default)]
struct EncodedLengths {
    snapshot: usize,
    changes: usize,
}

fn with_headroom(last: usize) -> usize {
    last + last / 8
}

/// Timers fired per call: enough to spread a call's cost, few enough that a failing timer
/// batch isolates quickly.
const TIMERS_PER_CALL: usize = 512;

/// Where a record of an in-flight batch came from.
#[derive(Debug, Clone)]
enum Origin {
    /// This record of the source batch.
    Record(usize),
    /// A timer; its outputs carry this provenance.
    Timer(Option<Provenance>),
}

impl PartitionPipeline {
    /// Assembles a pipeline.
    pub fn new(
        decoder: RecordDecoder,
        stages: Vec<Box<dyn Stage>>,
        router: Router,
        watermark: WatermarkTracker,
    ) -> Self {
        PartitionPipeline {
            decoder,
            stages,
            router,
            watermark,
            stats: PipelineStats::default(),
            last_provenance: None,
            watermark_raises: Vec::new(),
            arena: EventArena::default(),
            scratch: Batch::default(),
            encoded: EncodedLengths::default(),
        }
    }

    /// Runs one source batch through every stage, routes the outputs, advances the watermark,
    /// fires due timers and writes to the sinks.
    pub fn process(&mut self, records: &[SourceRecord]) -> Result<()> {
        let span = spans::batch(records);
        self.process_batch(records).inspect_err(|e| span.fail(e))
    }

    fn process_batch(&mut self, records: &[SourceRecord]) -> Result<()> {
        self.stats.records_in += records.len() as u64;
        metrics::counter!("weir_source_records_total").increment(records.len() as u64);
        self.arena.clear();
        let mut events = Vec::with_capacity(records.len());
        let mut origins = Vec::with_capacity(records.len());
        let mut max_time: Option<i64> = None;
        self.watermark_raises.clear();
        for (i, record) in records.iter().enumerate() {
            match self.decoder.decode_into(record, &mut self.arena) {
                Ok(event) => {
                    let time = event.time;
                    events.push(event);
                    origins.push(Origin::Record(i));
                    if max_time < Some(time) {
                        let candidate = self.watermark.candidate(time);
                        self.watermark_raises
                            .push((candidate, record.provenance.clone()));
                    }
                    max_time = max_time.max(Some(time));
                }
                Err(Undecodable::SchemaUnavailable(reason)) => {
                    // Nobody's record is at fault: the epoch fails and the partition rewinds
                    // to its checkpoint, to try again once the registry's breaker lets it.
                    return Err(SourceError::Io {
                        source_name: record.provenance.source.to_string(),
                        reason: format!("schema registry unavailable: {reason}"),
                    }
                    .into());
                }
                Err(Undecodable::Record(reason)) => self.router.dead_letter(DeadLetter {
                    reason,
                    stage: "decode".into(),
                    plugin: None,
                    provenance: Some(record.provenance.clone()),
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers: record.headers.clone(),
                    time: record.timestamp,
                }),
            }
        }
        self.stats.decoded += events.len() as u64;
        if let Some(last) = records.last() {
            self.last_provenance = Some(last.provenance.clone());
        }
        self.run_stages(0, events, origins, records)?;
        self.watermark.observe(max_time, Instant::now());
        self.fire_due_timers()?;
        self.write_out()
    }

    /// Advances an idle partition's watermark by processing time and fires due timers.
    /// Returns whether the watermark moved (and state may have changed).
    pub fn on_idle(&mut self) -> Result<bool> {
        if !self.watermark.on_idle(Instant::now()) {
            return Ok(false);
        }
        self.arena.clear();
        self.fire_due_timers()?;
        self.write_out()?;
        Ok(true)
    }

    /// The end of a bounded input: the watermark goes to the end of time and every timer
    /// fires, closing every window.
    pub fn drain_windows(&mut self) -> Result<()> {
        self.watermark.finish();
        self.arena.clear();
        self.fire_due_timers()?;
        self.write_out()
    }

    /// Writes what the batch routed to the sinks, which then see the watermark it reached.
    fn write_out(&mut self) -> Result<()> {
        self.router.write_out()?;
        self.router.observe_watermark(self.watermark.current());
        Ok(())
    }

    /// Ends a bounded input: every window closes and the sinks are closed.
    pub fn finish(&mut self) -> Result<()> {
        self.drain_windows()?;
        self.router.close()?;
        Ok(())
    }

    /// Ends an input stopped before its end (a signal): the windows stay open (their timers
    /// do not fire, as the input did not end), and the sinks close, publishing what they took.
    pub fn stop(&mut self) -> Result<()> {
        self.router.write_out()?;
        self.router.close()?;
        Ok(())
    }

    /// Ends a checkpoint epoch in the sinks; returns each sink's commit record.
    pub fn prepare_commit(&mut self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self.router.prepare_commit()?)
    }

    /// The epoch committed: the sinks publish its output.
    pub fn commit(&mut self, records: &[(String, Vec<u8>)]) -> Result<()> {
        Ok(self.router.commit(records)?)
    }

    /// Starts the sinks from the committed checkpoint's records (on assignment and recovery).
    pub fn recover_sinks(&mut self, records: Option<&[(String, Vec<u8>)]>) -> Result<()> {
        Ok(self.router.recover(records)?)
    }

    /// Whether a sink needs an epoch to end even without new input.
    pub fn wants_commit(&self) -> bool {
        self.router.wants_commit()
    }

    /// The input has ended: the next epoch finishes every open file.
    pub fn finish_files(&mut self) {
        self.router.finish_files();
    }

    /// Sets where the last source record came from, for a pipeline restored at an offset
    /// (what timers fired at the end of input carry, as in an uninterrupted run).
    pub fn resume_after(&mut self, last: Provenance) {
        self.last_provenance = Some(last);
    }

    /// Sets this partition's gauges: watermark lag behind the wall clock, and state keys and
    /// pending timers per stage.
    pub fn publish_gauges(&self, topic: &str, partition: i32) {
        use crate::partition_gauges::set;
        let watermark = self.watermark.current();
        if watermark > i64::MIN / 2 && watermark < i64::MAX / 2 {
            let lag = (chrono::Utc::now().timestamp_millis() - watermark) as f64 / 1000.0;
            set(
                "weir_source_watermark_lag_seconds",
                topic,
                partition,
                None,
                lag,
            );
        }
        for stage in &self.stages {
            let (name, state) = (Some(stage.name()), stage.state());
            set(
                "weir_state_keys",
                topic,
                partition,
                name,
                state.entry_count() as f64,
            );
            set(
                "weir_state_timers",
                topic,
                partition,
                name,
                state.timer_count() as f64,
            );
            set(
                "weir_state_bytes",
                topic,
                partition,
                name,
                state.bytes() as f64,
            );
        }
    }

    /// The sha256 of the plugin each stage runs now, in order (they change at hot reloads).
    pub fn plugin_versions(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.plugin().1).collect()
    }

    /// The current watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark.current()
    }

    /// Counts so far.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            routes: self.router.counts().clone(),
            ..self.stats.clone()
        }
    }

    /// Encodes the watermark and every stage's state and timers (a full snapshot), which a
    /// checkpoint now holds.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        let reserve = with_headroom(self.encoded.snapshot).max(self.state_bytes());
        let bytes = PartitionSnapshot::encode(self.watermark.current(), &self.states(), reserve)?;
        self.encoded.snapshot = bytes.len();
        self.clear_changes();
        Ok(bytes)
    }

    /// Encodes the watermark and what changed in every stage's state and timers since the
    /// last [`Self::snapshot`] or [`Self::changes`], with the entries and timers in `slice` of
    /// a rolling snapshot, which a checkpoint now holds. Returns the bytes and how many of
    /// them are changes.
    pub fn changes(&mut self, slice: Option<Slice>) -> Result<(Vec<u8>, usize)> {
        let reserve = with_headroom(self.encoded.changes);
        let (bytes, slice_bytes) =
            PartitionChanges::encode(self.watermark.current(), &self.states(), slice, reserve)?;
        self.encoded.changes = bytes.len();
        self.clear_changes();
        let changes = bytes.len() - slice_bytes;
        Ok((bytes, changes))
    }

    fn states(&self) -> Vec<(&str, &crate::state::StageState)> {
        self.stages.iter().map(|s| (s.name(), s.state())).collect()
    }

    fn clear_changes(&mut self) {
        for stage in &mut self.stages {
            stage.state_mut().clear_changes();
        }
    }

    /// Each stage's name, state entries and state bytes (keys and values).
    pub fn state_report(&self) -> Vec<(&str, usize, usize)> {
        self.stages
            .iter()
            .map(|s| (s.name(), s.state().entry_count(), s.state().bytes()))
            .collect()
    }

    /// Bytes of every stage's keys and values: about the size of a full snapshot.
    pub fn state_bytes(&self) -> usize {
        self.stages.iter().map(|s| s.state().bytes()).sum()
    }

    /// Restores the state of a checkpoint chain: a full snapshot taken by [`Self::snapshot`]
    /// (none: the state starts empty), then the changes taken by [`Self::changes`] after it,
    /// oldest first. Without a snapshot, the changes' slices must make up a whole rolling
    /// snapshot. Stages are matched by name; a stage absent from the checkpoints starts empty,
    /// and the state of a stage the pipeline no longer has is dropped.
    pub fn restore(&mut self, snapshot: Option<&[u8]>, changes: &[impl AsRef<[u8]>]) -> Result<()> {
        if let Some(bytes) = snapshot {
            let snapshot = PartitionSnapshot::decode(bytes)?;
            self.watermark.restore(snapshot.watermark);
            for (name, state) in snapshot.stages {
                if let Some(stage) = self.stages.iter_mut().find(|s| s.name() == name) {
                    *stage.state_mut() = state;
                }
            }
        }
        let mut slices = SliceCover::default();
        for bytes in changes {
            let changes = PartitionChanges::decode(bytes.as_ref())?;
            self.watermark.restore(changes.watermark);
            slices.add(changes.slice);
            for (name, delta, slice) in changes.stages {
                if let Some(stage) = self.stages.iter_mut().find(|s| s.name() == name) {
                    stage.state_mut().apply(delta);
                    stage.state_mut().absorb(slice);
                }
            }
        }
        if snapshot.is_none() && !slices.whole() {
            return Err(SnapshotError::Incomplete(slices.describe()).into());
        }
        // The restored state is the checkpoint's: what changes from here on is logged.
        self.clear_changes();
        Ok(())
    }

    /// The provenance of what a timer at `at` outputs.
    fn timer_provenance(&self, at: i64) -> Option<Provenance> {
        let first = self
            .watermark_raises
            .partition_point(|(candidate, _)| *candidate < at);
        self.watermark_raises
            .get(first)
            .map(|(_, provenance)| provenance.clone())
            .or_else(|| self.last_provenance.clone())
    }

    /// The provenance of what a record of origin `origin` outputs.
    fn provenance(origin: &Origin, records: &[SourceRecord]) -> Option<Provenance> {
        match origin {
            Origin::Record(i) => records.get(*i).map(|r| r.provenance.clone()),
            Origin::Timer(provenance) => provenance.clone(),
        }
    }

    /// Runs `events` through the stages from `from` on; the last stage's emits go to `main`.
    fn run_stages(
        &mut self,
        from: usize,
        mut events: Vec<EventRef>,
        mut origins: Vec<Origin>,
        records: &[SourceRecord],
    ) -> Result<()> {
        for idx in from..self.stages.len() {
            if events.is_empty() {
                return Ok(());
            }
            let needs = self.stages[idx].begin().clone();
            stage_batch(
                &mut self.scratch,
                &self.arena,
                &needs,
                &events,
                |i| match origins.get(i) {
                    Some(Origin::Record(r)) => records.get(*r).map(|r| r.headers.as_slice()),
                    _ => None,
                },
            );
            let started = Instant::now();
            let span = spans::stage_call(self.stages[idx].name(), events.len());
            let mut batch = std::mem::take(&mut self.scratch);
            let outcome = self.stages[idx].process(&mut batch, self.watermark.current());
            self.scratch = batch;
            let result = outcome.inspect_err(|e| span.fail(e))?;
            span.set("weir.records.out", result.outputs.len() as i64);
            drop(span);
            metrics::histogram!("weir_stage_batch_duration_seconds", "stage" => self.stages[idx].name().to_string())
                .record(started.elapsed());
            let (next, next_origins) =
                self.route_outputs(idx, &result, &events, &origins, records)?;
            events = next;
            origins = next_origins;
        }
        for (event, origin) in events.iter().zip(&origins) {
            let provenance = Self::provenance(origin, records);
            self.router.send(MAIN_ROUTE, &self.arena, event, provenance);
        }
        Ok(())
    }

    /// Sends stage `idx`'s routed and dead-lettered outputs on, and returns the emitted ones
    /// (for the next stage) with their origins.
    fn route_outputs(
        &mut self,
        idx: usize,
        result: &BatchResult,
        inputs: &[EventRef],
        origins: &[Origin],
        records: &[SourceRecord],
    ) -> Result<(Vec<EventRef>, Vec<Origin>)> {
        let mut next = Vec::with_capacity(result.outputs.len());
        let mut next_origins = Vec::with_capacity(result.outputs.len());
        for (i, output) in result.outputs.iter().enumerate() {
            let input = output.input as usize;
            let (Some(event), Some(origin)) = (inputs.get(input), origins.get(input)) else {
                continue;
            };
            let event = output_event(&mut self.arena, result, i, event).map_err(Error::Output)?;
            match output.kind {
                OutputKind::Emit => {
                    next.push(event);
                    next_origins.push(origin.clone());
                }
                OutputKind::Route => {
                    let route = result.parts(i).map(|p| p.text).unwrap_or_default();
                    let provenance = Self::provenance(origin, records);
                    self.router.send(route, &self.arena, &event, provenance);
                }
                OutputKind::DeadLetter => {
                    let reason = result.parts(i).map(|p| p.text).unwrap_or_default();
                    // The original record, not the stage's copy, so it can be replayed.
                    let original = match origin {
                        Origin::Record(r) => records.get(*r),
                        Origin::Timer(_) => None,
                    };
                    let letter = stage_dead_letter(
                        self.stages[idx].as_ref(),
                        reason.to_string(),
                        self.arena.key(&event),
                        event.time,
                        original,
                        &self.arena.to_json(&event),
                    );
                    self.router.dead_letter(letter);
                }
            }
        }
        Ok((next, next_origins))
    }

    /// Fires every due timer, stage by stage (the stage with the earliest due timer first),
    /// in batches, feeding what the timers emit to the stages after their own.
    fn fire_due_timers(&mut self) -> Result<()> {
        loop {
            let watermark = self.watermark.current();
            let due = self
                .stages
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    s.next_timer()
                        .filter(|at| *at <= watermark)
                        .map(|at| (at, i))
                })
                .min();
            let Some((_, idx)) = due else { return Ok(()) };
            let span = spans::stage_call(self.stages[idx].name(), 0);
            let fired = self.stages[idx]
                .fire_due_timers(watermark, TIMERS_PER_CALL)
                .inspect_err(|e| span.fail(e))?;
            let Some(fired) = fired else { continue };
            span.set("weir.timers.fired", fired.batch.len() as i64);
            drop(span);
            self.stats.timers_fired += fired.batch.len() as u64;
            self.route_timer_outputs(idx, fired)?;
        }
    }

    /// What timers output goes on like what records output, from an empty object per timer.
    fn route_timer_outputs(&mut self, idx: usize, fired: FiredTimers) -> Result<()> {
        let inputs = timer_events(&mut self.arena, &fired.batch).map_err(Error::Output)?;
        let origins: Vec<Origin> = fired
            .batch
            .times
            .iter()
            .map(|at| Origin::Timer(self.timer_provenance(*at)))
            .collect();
        let (emitted, emitted_origins) =
            self.route_outputs(idx, &fired.result, &inputs, &origins, &[])?;
        self.run_stages(idx + 1, emitted, emitted_origins, &[])
    }
}
