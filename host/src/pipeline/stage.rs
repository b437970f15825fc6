//! One pipeline stage: the [`Stage`] trait and its Wasm implementation, which isolates
//! failures. When a batch call traps, times out or runs out of memory, its state changes are
//! rolled back, the instance is re-created, and the batch re-runs one record at a time; each
//! record that fails alone is dead-lettered with the reason, and its neighbours go on.

use std::sync::Arc;

use weir_sdk::abi::{Batch, BatchResult, OutputKind, segment};

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
    /// Replaces the stage's state, when restoring a snapshot.
    fn replace_state(&mut self, state: StageState);
}

/// A stage running a Wasm plugin.
pub struct WasmStage {
    engine: Arc<PluginEngine>,
    plugin: Plugin,
    labels: InstanceLabels,
    settings: InstanceSettings,
    geo: Option<Arc<GeoDb>>,
    config: Vec<(String, String)>,
    instance: Option<PluginInstance>,
    state: StageState,
}

impl WasmStage {
    /// Creates the stage and its first instance (running `init`, so a bad config fails here).
    pub fn new(
        engine: Arc<PluginEngine>,
        name: &str,
        plugin: Plugin,
        settings: InstanceSettings,
        geo: Option<Arc<GeoDb>>,
        config: Vec<(String, String)>,
    ) -> Result<Self, RuntimeError> {
        let labels = InstanceLabels {
            stage: name.into(),
            plugin: plugin.name().into(),
            version: plugin.version().into(),
        };
        let mut stage = WasmStage {
            engine,
            plugin,
            labels,
            settings,
            geo,
            config,
            instance: None,
            state: StageState::default(),
        };
        stage.instance()?;
        Ok(stage)
    }

    /// The live instance, created (and `init`ed) first if the last one failed.
    fn instance(&mut self) -> Result<&mut PluginInstance, RuntimeError> {
        match &mut self.instance {
            Some(instance) => Ok(instance),
            slot @ None => {
                let instance = PluginInstance::new(
                    &self.engine,
                    &self.plugin,
                    self.labels.clone(),
                    self.settings,
                    self.geo.clone(),
                    &self.config,
                )?;
                Ok(slot.insert(instance))
            }
        }
    }

    fn on_failure(&mut self, failure: &CallFailure) {
        self.state.rollback();
        self.instance = None;
        ::metrics::counter!("weir_stage_failures_total", "stage" => self.labels.stage.to_string(), "kind" => failure_kind(failure))
            .increment(1);
    }

    /// Re-runs `batch` one record at a time after a failed batch call.
    fn isolate(&mut self, batch: &WitBatch, watermark: i64) -> Result<BatchResult, RuntimeError> {
        let mut result = BatchResult::default();
        for i in 0..batch.times.len() {
            let single = single_record(batch, i);
            let mut state = std::mem::take(&mut self.state);
            let outcome = self.instance()?.process(&single, &mut state, watermark);
            self.state = state;
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            match outcome {
                Ok(out) => {
                    self.state.commit();
                    for (o, value) in from_wit(out).iter() {
                        result.push(index, o.kind.clone(), value);
                    }
                }
                Err(failure) => {
                    tracing::warn!(stage = %self.labels.stage, plugin = %self.labels.plugin, record = i, reason = %failure, "Record failed alone; dead-lettering it.");
                    self.on_failure(&failure);
                    result.push(
                        index,
                        OutputKind::DeadLetter(failure.to_string()),
                        segment(&batch.values, &batch.value_ends, i),
                    );
                }
            }
        }
        Ok(result)
    }
}

fn failure_kind(failure: &CallFailure) -> &'static str {
    match failure {
        CallFailure::Trap(_) => "trap",
        CallFailure::Timeout => "timeout",
        CallFailure::MemoryLimit => "memory_limit",
        CallFailure::InvalidResult(_) => "invalid_result",
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
        (self.plugin.name(), self.plugin.sha256())
    }

    fn process(&mut self, batch: &mut Batch, watermark: i64) -> Result<BatchResult, RuntimeError> {
        if batch.is_empty() {
            return Ok(BatchResult::default());
        }
        let wit = to_wit(batch);
        let mut state = std::mem::take(&mut self.state);
        let outcome = self
            .instance()
            .map(|instance| instance.process(&wit, &mut state, watermark));
        self.state = state;
        let result = match outcome {
            Ok(Ok(out)) => {
                self.state.commit();
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
        self.state.next_timer().map(|(at, _)| *at)
    }

    fn fire_due_timer(&mut self, watermark: i64) -> Result<Option<FiredTimer>, RuntimeError> {
        let Some((at, key)) = self.state.pop_due_timer(watermark) else {
            return Ok(None);
        };
        let mut state = std::mem::take(&mut self.state);
        let outcome = self
            .instance()
            .map(|instance| instance.on_timer(&key, at, &mut state, watermark));
        self.state = state;
        match outcome? {
            Ok(out) => {
                self.state.commit();
                Ok(Some(FiredTimer {
                    key,
                    at,
                    outcome: Ok(from_wit(out)),
                }))
            }
            Err(failure) => {
                self.on_failure(&failure);
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

    fn replace_state(&mut self, state: StageState) {
        self.state = state;
    }
}
