//! One pipeline stage: the [`Stage`] trait and its Wasm implementation, which isolates
//! failures. When a batch call traps, times out or runs out of memory, its state changes are
//! rolled back, the instance is re-created, and the batch re-runs one record at a time; each
//! record that fails alone is dead-lettered with the reason, and its neighbours go on.

use std::sync::Arc;

use weir_sdk::abi::{Batch, BatchResult, OutputKind, segment};

use super::plugins::{StageSlot, StageVersion};
use super::stage_breaker::DEFAULT_OPEN;
use crate::runtime::{
    CallFailure, GeoDb, InstanceLabels, InstanceSettings, Plugin, PluginEngine, PluginInstance,
    RuntimeError, WitBatch, WitBatchResult,
};
use crate::state::StageState;

/// A timer that fired, with what the stage made of it.
#[derive(Debug)]
pub struct FiredTimer {
    /// The timer's key.
    pub key: Vec<u8>,
    /// The time it was set for.
    pub at: i64,
    /// The outputs, or why the call failed (the timer is then dropped).
    pub outcome: Result<BatchResult, CallFailure>,
}

impl FiredTimer {
    /// What a failed timer leaves as the dead letter's record: its key and time.
    pub fn failure_record(&self) -> Vec<u8> {
        serde_json::json!({ "timer_key": String::from_utf8_lossy(&self.key), "at": self.at })
            .to_string()
            .into_bytes()
    }
}

/// A dead letter raised at `stage` (by its plugin, or by the host isolating a failure). It
/// carries the original source record when there is one, so it can be replayed; otherwise
/// (timer outputs) the stage's own value.
pub(crate) fn stage_dead_letter(
    stage: &dyn Stage,
    reason: String,
    key: &[u8],
    time: i64,
    original: Option<&crate::source::SourceRecord>,
    stage_value: &[u8],
) -> crate::sinks::DeadLetter {
    let (name, sha) = stage.plugin();
    crate::sinks::DeadLetter {
        reason,
        stage: stage.name().to_string(),
        plugin: Some((name.to_string(), sha.to_string())),
        provenance: original.map(|r| r.provenance.clone()),
        key: original
            .and_then(|r| r.key.clone())
            .or_else(|| Some(key.to_vec())),
        value: original.map_or_else(|| stage_value.to_vec(), |r| r.value.clone()),
        headers: original.map(|r| r.headers.clone()).unwrap_or_default(),
        time: Some(time),
    }
}

/// A stage of the pipeline.
///
/// Contract: `process` returns one result per call whose outputs name inputs of `batch`; a
/// record whose processing failed alone appears as a dead-letter output with the failure as
/// reason. `Err` means the stage cannot run at all (its plugin no longer instantiates).
pub trait Stage: Send {
    /// Stage name.
    fn name(&self) -> &str;
    /// Plugin name and sha256.
    fn plugin(&self) -> (&str, &str);
    /// Runs a batch. The batch is lent mutably only so it can cross into Wasm without a copy;
    /// it is unchanged afterwards.
    fn process(&mut self, batch: &mut Batch, watermark: i64) -> Result<BatchResult, RuntimeError>;
    /// The time of the earliest pending timer.
    fn next_timer(&self) -> Option<i64>;
    /// Fires the earliest timer if due at `watermark`.
    fn fire_due_timer(&mut self, watermark: i64) -> Result<Option<FiredTimer>, RuntimeError>;
    /// The stage's state, for snapshots.
    fn state(&self) -> &StageState;
    /// The stage's state, to restore a checkpoint into and to mark checkpointed.
    fn state_mut(&mut self) -> &mut StageState;
}

/// A stage running a Wasm plugin. Before each batch or timer it checks its [`StageSlot`]; when
/// a new version was published there, it instantiates that version and swaps it in, keeping
/// the host-owned state and pending timers.
pub struct WasmStage {
    engine: Arc<PluginEngine>,
    slot: Arc<StageSlot>,
    generation: u64,
    version: Arc<StageVersion>,
    labels: InstanceLabels,
    geo: Option<Arc<GeoDb>>,
    instance: Option<PluginInstance>,
    state: StageState,
}

impl WasmStage {
    /// A stage of its own, outside any registry (tools and tests): it runs `plugin` with
    /// `config` and never reloads.
    pub fn new(
        engine: Arc<PluginEngine>,
        name: &str,
        plugin: Plugin,
        settings: InstanceSettings,
        geo: Option<Arc<GeoDb>>,
        config: Vec<(String, String)>,
    ) -> Result<Self, RuntimeError> {
        let slot = StageSlot::new(name, plugin, settings, config, DEFAULT_OPEN);
        WasmStage::in_slot(engine, Arc::new(slot), geo)
    }

    /// Creates the stage and its first instance of the slot's current version (running
    /// `init`, so a bad config fails here).
    pub fn in_slot(
        engine: Arc<PluginEngine>,
        slot: Arc<StageSlot>,
        geo: Option<Arc<GeoDb>>,
    ) -> Result<Self, RuntimeError> {
        let (generation, version) = slot.current();
        let mut stage = WasmStage {
            engine,
            labels: slot.labels(&version.plugin),
            slot,
            generation,
            version,
            geo,
            instance: None,
            state: StageState::default(),
        };
        stage.instance()?;
        Ok(stage)
    }

    fn new_instance(
        &self,
        version: &StageVersion,
        labels: InstanceLabels,
    ) -> Result<PluginInstance, RuntimeError> {
        PluginInstance::new(
            &self.engine,
            &version.plugin,
            labels,
            self.slot.settings(),
            self.geo.clone(),
            &version.config,
        )
    }

    /// The live instance, created (and `init`ed) first if the last one failed.
    fn instance(&mut self) -> Result<&mut PluginInstance, RuntimeError> {
        let instance = match self.instance.take() {
            Some(instance) => instance,
            None => self.new_instance(&self.version, self.labels.clone())?,
        };
        Ok(self.instance.insert(instance))
    }

    /// At a batch boundary: swaps in the slot's newer version, if one was published. The
    /// registry `init`ed it once already; should this `init` fail, the old version stays.
    fn refresh(&mut self) {
        if self.slot.generation() == self.generation {
            return;
        }
        let (generation, version) = self.slot.current();
        self.generation = generation;
        let labels = self.slot.labels(&version.plugin);
        match self.new_instance(&version, labels.clone()) {
            Ok(instance) => {
                tracing::info!(stage = %self.labels.stage, plugin = %labels.plugin, from = %self.labels.version, to = %labels.version, "Stage swapped to the new version.");
                self.instance = Some(instance);
                self.version = version;
                self.labels = labels;
            }
            Err(e) => {
                tracing::error!(stage = %self.labels.stage, error = %e, running = %self.labels.version, "New version failed to start here; the running version stays.");
            }
        }
    }

    /// Runs one call on the live instance, timing it into the version's statistics.
    fn timed_call<R>(
        &mut self,
        state: &mut StageState,
        call: impl FnOnce(&mut PluginInstance, &mut StageState) -> Result<R, CallFailure>,
    ) -> Result<Result<R, CallFailure>, RuntimeError> {
        let started = std::time::Instant::now();
        let outcome = call(self.instance()?, state);
        self.version
            .stats
            .record(started.elapsed(), outcome.as_ref().err());
        Ok(outcome)
    }

    fn on_failure(&mut self, failure: &CallFailure) {
        self.state.rollback();
        self.instance = None;
        ::metrics::counter!("weir_stage_failures_total", "stage" => self.labels.stage.to_string(), "kind" => failure_kind(failure), "version" => self.labels.version.to_string())
            .increment(1);
    }

    /// Re-runs `batch` one record at a time after a failed batch call. Each result feeds the
    /// stage's breaker; once it opens, the rest of the batch is dead-lettered uncalled.
    fn isolate(&mut self, batch: &WitBatch, watermark: i64) -> Result<BatchResult, RuntimeError> {
        let mut result = BatchResult::default();
        let mut failed = 0;
        let mut refused: Option<String> = None;
        for i in 0..batch.times.len() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let value = segment(&batch.values, &batch.value_ends, i);
            if let Some(reason) = &refused {
                result.push(index, OutputKind::DeadLetter(reason.clone()), value);
                continue;
            }
            let single = single_record(batch, i);
            let mut state = std::mem::take(&mut self.state);
            let outcome = self.timed_call(&mut state, |i, s| i.process(&single, s, watermark));
            self.state = state;
            match outcome? {
                Ok(out) => {
                    self.state.commit();
                    self.version.breaker.observe(None);
                    for (o, value) in from_wit(out).iter() {
                        result.push(index, o.kind.clone(), value);
                    }
                }
                Err(failure) => {
                    tracing::warn!(stage = %self.labels.stage, plugin = %self.labels.plugin, record = i, reason = %failure, "Record failed alone; dead-lettering it.");
                    self.on_failure(&failure);
                    failed += 1;
                    let reason = failure.to_string();
                    if self.version.breaker.observe(Some(&reason)) {
                        refused = self.version.breaker.refusing();
                    }
                    result.push(index, OutputKind::DeadLetter(reason), value);
                }
            }
        }
        if refused.is_none() && failed * 2 <= batch.times.len() {
            self.version.breaker.batch_passed();
        }
        Ok(result)
    }
}

/// Every record of `batch` dead-lettered with `reason`, uncalled.
fn refuse_all(batch: &Batch, reason: &str) -> BatchResult {
    let mut result = BatchResult::default();
    for i in 0..batch.len() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let value = segment(&batch.values, &batch.value_ends, i);
        result.push(index, OutputKind::DeadLetter(reason.to_string()), value);
    }
    result
}

fn failure_kind(failure: &CallFailure) -> &'static str {
    match failure {
        CallFailure::Trap(_) => "trap",
        CallFailure::Timeout => "timeout",
        CallFailure::MemoryLimit => "memory_limit",
        CallFailure::InvalidResult(_) => "invalid_result",
        CallFailure::OutputLimit { .. } => "output_limit",
        CallFailure::StateLimit(_) => "state_limit",
        CallFailure::TimerLimit(_) => "timer_limit",
    }
}

fn single_record(batch: &WitBatch, i: usize) -> WitBatch {
    let value = segment(&batch.values, &batch.value_ends, i).to_vec();
    let key = segment(&batch.keys, &batch.key_ends, i).to_vec();
    let headers = segment(&batch.headers, &batch.header_ends, i).to_vec();
    WitBatch {
        value_ends: vec![value.len() as u32],
        key_ends: vec![key.len() as u32],
        header_ends: vec![headers.len() as u32],
        values: value,
        keys: key,
        headers,
        times: vec![batch.times[i]],
    }
}

fn to_wit(batch: &mut Batch) -> WitBatch {
    WitBatch {
        values: std::mem::take(&mut batch.values),
        value_ends: std::mem::take(&mut batch.value_ends),
        keys: std::mem::take(&mut batch.keys),
        key_ends: std::mem::take(&mut batch.key_ends),
        times: std::mem::take(&mut batch.times),
        headers: std::mem::take(&mut batch.headers),
        header_ends: std::mem::take(&mut batch.header_ends),
    }
}

fn restore(batch: &mut Batch, wit: WitBatch) {
    batch.values = wit.values;
    batch.value_ends = wit.value_ends;
    batch.keys = wit.keys;
    batch.key_ends = wit.key_ends;
    batch.times = wit.times;
    batch.headers = wit.headers;
    batch.header_ends = wit.header_ends;
}

fn from_wit(result: WitBatchResult) -> BatchResult {
    use crate::runtime::WitOutputKind;
    BatchResult {
        outputs: result
            .outputs
            .into_iter()
            .map(|o| weir_sdk::abi::Output {
                input: o.input,
                kind: match o.kind {
                    WitOutputKind::Emit => OutputKind::Emit,
                    WitOutputKind::Route(r) => OutputKind::Route(r),
                    WitOutputKind::DeadLetter(r) => OutputKind::DeadLetter(r),
                },
            })
            .collect(),
        values: result.values,
        value_ends: result.value_ends,
    }
}

impl Stage for WasmStage {
    fn name(&self) -> &str {
        &self.labels.stage
    }

    fn plugin(&self) -> (&str, &str) {
        (self.version.plugin.name(), self.version.plugin.sha256())
    }

    fn process(&mut self, batch: &mut Batch, watermark: i64) -> Result<BatchResult, RuntimeError> {
        if batch.is_empty() {
            return Ok(BatchResult::default());
        }
        self.refresh();
        if let Some(reason) = self.version.breaker.refusing() {
            return Ok(refuse_all(batch, &reason));
        }
        let wit = to_wit(batch);
        let mut state = std::mem::take(&mut self.state);
        let outcome = self.timed_call(&mut state, |i, s| i.process(&wit, s, watermark));
        self.state = state;
        let result = match outcome {
            Ok(Ok(out)) => {
                self.state.commit();
                self.version.breaker.batch_passed();
                Ok(from_wit(out))
            }
            Ok(Err(failure)) => {
                tracing::warn!(stage = %self.labels.stage, plugin = %self.labels.plugin, records = wit.times.len(), reason = %failure, "Batch failed; re-running it record by record.");
                self.on_failure(&failure);
                self.isolate(&wit, watermark)
            }
            Err(e) => Err(e),
        };
        restore(batch, wit);
        result
    }

    fn next_timer(&self) -> Option<i64> {
        // While the breaker is open, timers wait.
        if self.version.breaker.refuses() {
            return None;
        }
        self.state.next_timer().map(|(at, _)| *at)
    }

    fn fire_due_timer(&mut self, watermark: i64) -> Result<Option<FiredTimer>, RuntimeError> {
        self.refresh();
        if self.version.breaker.refuses() {
            return Ok(None);
        }
        let Some((at, key)) = self.state.pop_due_timer(watermark) else {
            return Ok(None);
        };
        let mut state = std::mem::take(&mut self.state);
        let outcome = self.timed_call(&mut state, |i, s| i.on_timer(&key, at, s, watermark));
        self.state = state;
        match outcome? {
            Ok(out) => {
                self.state.commit();
                self.version.breaker.observe(None);
                Ok(Some(FiredTimer {
                    key,
                    at,
                    outcome: Ok(from_wit(out)),
                }))
            }
            Err(failure) => {
                self.on_failure(&failure);
                self.version.breaker.observe(Some(&failure.to_string()));
                // The rollback put the timer back; drop it so a failing timer cannot loop.
                self.state.cancel_timer(&key, at);
                self.state.commit();
                Ok(Some(FiredTimer {
                    key,
                    at,
                    outcome: Err(failure),
                }))
            }
        }
    }

    fn state(&self) -> &StageState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut StageState {
        &mut self.state
    }
}
