//! [`PartitionPipeline`]: the stages, router, watermark and state of one partition, and the
//! per-batch data path through them.

use std::time::Instant;

use weir_sdk::abi::{Batch, BatchResult, OutputKind, push_header};

use super::decode::RecordDecoder;
use super::router::{RouteCounts, Router};
use super::stage::{FiredTimer, Stage, stage_dead_letter};
use crate::config::MAIN_ROUTE;
use crate::error::Result;
use crate::sinks::{DeadLetter, Provenance};
use crate::source::SourceRecord;
use crate::state::{PartitionChanges, PartitionSnapshot, WatermarkTracker};

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
}

/// Where each record of an in-flight batch came from: an index into the source batch, or
/// nothing for records made by timers.
type Origins = Vec<Option<usize>>;

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
        }
    }

    /// Runs one source batch through every stage, routes the outputs, advances the watermark,
    /// fires due timers and writes to the sinks.
    pub fn process(&mut self, records: &[SourceRecord]) -> Result<()> {
        self.stats.records_in += records.len() as u64;
        metrics::counter!("weir_source_records_total").increment(records.len() as u64);
        let mut batch = Batch::default();
        let mut origins = Origins::with_capacity(records.len());
        let mut max_time: Option<i64> = None;
        let mut headers = Vec::new();
        self.watermark_raises.clear();
        for (i, record) in records.iter().enumerate() {
            match self.decoder.decode(record) {
                Ok(decoded) => {
                    headers.clear();
                    for (name, value) in &record.headers {
                        push_header(&mut headers, name, value);
                    }
                    batch.push(&decoded.key, &record.value, decoded.time, &headers);
                    origins.push(Some(i));
                    if max_time < Some(decoded.time) {
                        let candidate = self.watermark.candidate(decoded.time);
                        self.watermark_raises
                            .push((candidate, record.provenance.clone()));
                    }
                    max_time = max_time.max(Some(decoded.time));
                }
                Err(reason) => self.router.dead_letter(DeadLetter {
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
        self.stats.decoded += batch.len() as u64;
        if let Some(last) = records.last() {
            self.last_provenance = Some(last.provenance.clone());
        }
        self.run_stages(0, batch, origins, records, None)?;
        self.watermark.observe(max_time, Instant::now());
        self.fire_due_timers()?;
        self.router.write_out()?;
        Ok(())
    }

    /// Advances an idle partition's watermark by processing time and fires due timers.
    /// Returns whether the watermark moved (and state may have changed).
    pub fn on_idle(&mut self) -> Result<bool> {
        if !self.watermark.on_idle(Instant::now()) {
            return Ok(false);
        }
        self.fire_due_timers()?;
        self.router.write_out()?;
        Ok(true)
    }

    /// The end of a bounded input: the watermark goes to the end of time and every timer
    /// fires, closing every window.
    pub fn drain_windows(&mut self) -> Result<()> {
        self.watermark.finish();
        self.fire_due_timers()?;
        self.router.write_out()?;
        Ok(())
    }

    /// Ends a bounded input: every window closes and the sinks are closed.
    pub fn finish(&mut self) -> Result<()> {
        self.drain_windows()?;
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
        let labels = [
            ("topic", topic.to_string()),
            ("partition", partition.to_string()),
        ];
        let watermark = self.watermark.current();
        if watermark > i64::MIN / 2 && watermark < i64::MAX / 2 {
            let lag = (chrono::Utc::now().timestamp_millis() - watermark) as f64 / 1000.0;
            metrics::gauge!("weir_source_watermark_lag_seconds", &labels).set(lag);
        }
        for stage in &self.stages {
            let mut labels = labels.to_vec();
            labels.push(("stage", stage.name().to_string()));
            metrics::gauge!("weir_state_keys", &labels).set(stage.state().entry_count() as f64);
            metrics::gauge!("weir_state_timers", &labels).set(stage.state().timer_count() as f64);
            metrics::gauge!("weir_state_bytes", &labels).set(stage.state().bytes() as f64);
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
        let bytes = PartitionSnapshot::encode(self.watermark.current(), &self.states())?;
        self.clear_changes();
        Ok(bytes)
    }

    /// Encodes the watermark and what changed in every stage's state and timers since the
    /// last [`Self::snapshot`] or [`Self::changes`], which a checkpoint now holds.
    pub fn changes(&mut self) -> Result<Vec<u8>> {
        let bytes = PartitionChanges::encode(self.watermark.current(), &self.states())?;
        self.clear_changes();
        Ok(bytes)
    }

    fn states(&self) -> Vec<(&str, &crate::state::StageState)> {
        self.stages.iter().map(|s| (s.name(), s.state())).collect()
    }

    fn clear_changes(&mut self) {
        for stage in &mut self.stages {
            stage.state_mut().clear_changes();
        }
    }

    /// Bytes of every stage's keys and values: about the size of a full snapshot.
    pub fn state_bytes(&self) -> usize {
        self.stages.iter().map(|s| s.state().bytes()).sum()
    }

    /// Restores a snapshot taken by [`Self::snapshot`]. Stages are matched by name; a stage
    /// absent from the snapshot starts empty.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let snapshot = PartitionSnapshot::decode(bytes)?;
        self.watermark.restore(snapshot.watermark);
        for (name, state) in snapshot.stages {
            if let Some(stage) = self.stages.iter_mut().find(|s| s.name() == name) {
                *stage.state_mut() = state;
            }
        }
        Ok(())
    }

    /// Applies changes taken by [`Self::changes`] on top of the state restored so far.
    /// Stages are matched by name; changes of a stage the pipeline no longer has are dropped.
    pub fn apply_changes(&mut self, bytes: &[u8]) -> Result<()> {
        let changes = PartitionChanges::decode(bytes)?;
        self.watermark.restore(changes.watermark);
        for (name, delta) in changes.stages {
            if let Some(stage) = self.stages.iter_mut().find(|s| s.name() == name) {
                stage.state_mut().apply(delta);
            }
        }
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

    /// Runs `batch` through the stages from `from` on; the last stage's emits go to `main`.
    /// Records without an origin in `records` (timer outputs) carry `fallback` provenance.
    fn run_stages(
        &mut self,
        from: usize,
        mut batch: Batch,
        mut origins: Origins,
        records: &[SourceRecord],
        fallback: Option<Provenance>,
    ) -> Result<()> {
        let provenance = |origin: Option<usize>| {
            origin
                .and_then(|i| records.get(i))
                .map(|r| r.provenance.clone())
                .or_else(|| fallback.clone())
        };
        for idx in from..self.stages.len() {
            if batch.is_empty() {
                return Ok(());
            }
            let started = Instant::now();
            let result = self.stages[idx].process(&mut batch, self.watermark.current())?;
            metrics::histogram!("weir_stage_batch_duration_seconds", "stage" => self.stages[idx].name().to_string())
                .record(started.elapsed());
            let mut next = Batch::default();
            let mut next_origins = Origins::with_capacity(result.outputs.len());
            for (output, value) in result.iter() {
                let i = output.input as usize;
                if i >= batch.len() {
                    tracing::warn!(
                        stage = self.stages[idx].name(),
                        input = i,
                        "Plugin output names an input outside the batch; dropped."
                    );
                    continue;
                }
                match &output.kind {
                    OutputKind::Emit => {
                        next.push(batch.key(i), value, batch.times[i], batch.headers(i));
                        next_origins.push(origins[i]);
                    }
                    OutputKind::Route(route) => {
                        self.router.send(
                            route,
                            batch.key(i),
                            value,
                            batch.times[i],
                            provenance(origins[i]),
                        );
                    }
                    OutputKind::DeadLetter(reason) => {
                        // The original record, not the stage's copy, so it can be replayed.
                        let original = origins[i].and_then(|o| records.get(o));
                        self.router.dead_letter(stage_dead_letter(
                            self.stages[idx].as_ref(),
                            reason.clone(),
                            batch.key(i),
                            batch.times[i],
                            original,
                            value,
                        ));
                    }
                }
            }
            batch = next;
            origins = next_origins;
        }
        for (i, origin) in origins.iter().enumerate() {
            self.router.send(
                MAIN_ROUTE,
                batch.key(i),
                batch.value(i),
                batch.times[i],
                provenance(*origin),
            );
        }
        Ok(())
    }

    /// Fires every due timer, earliest first across stages, feeding what a timer emits to the
    /// stages after its own.
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
            let Some(fired) = self.stages[idx].fire_due_timer(watermark)? else {
                continue;
            };
            self.stats.timers_fired += 1;
            self.route_timer_outputs(idx, fired)?;
        }
    }

    fn route_timer_outputs(&mut self, idx: usize, fired: FiredTimer) -> Result<()> {
        let (key, at) = (&fired.key, fired.at);
        let result: &BatchResult = match &fired.outcome {
            Ok(result) => result,
            Err(failure) => {
                let letter = stage_dead_letter(
                    self.stages[idx].as_ref(),
                    format!("timer {failure}"),
                    key,
                    at,
                    None,
                    &fired.failure_record(),
                );
                self.router.dead_letter(letter);
                return Ok(());
            }
        };
        let mut emitted = Batch::default();
        for (output, value) in result.iter() {
            match &output.kind {
                OutputKind::Emit => emitted.push(key, value, at, &[]),
                OutputKind::Route(route) => {
                    let provenance = self.timer_provenance(at);
                    self.router.send(route, key, value, at, provenance);
                }
                OutputKind::DeadLetter(reason) => {
                    let letter = stage_dead_letter(
                        self.stages[idx].as_ref(),
                        reason.clone(),
                        key,
                        at,
                        None,
                        value,
                    );
                    self.router.dead_letter(letter);
                }
            }
        }
        let origins = vec![None; emitted.len()];
        let provenance = self.timer_provenance(at);
        self.run_stages(idx + 1, emitted, origins, &[], provenance)
    }
}
