//! [`WasmStage`]: a stage running a Wasm plugin, which isolates failures. When a batch call
//! traps, times out, runs out of memory or returns a result the host refuses, its state
//! changes are rolled back, the instance is re-created, and the batch re-runs one record at a
//! time; each record that fails alone is dead-lettered with the reason, and its neighbours go
//! on. Timers fire in batches the same way.

use std::sync::Arc;

use weir_sdk::abi::{Batch, BatchResult, Needs, OutputHead, OutputKind, ValueKind};

use super::plugins::{StageSlot, StageVersion};
use super::stage::{FiredTimers, Stage, timer_failure_record};
use super::stage_breaker::DEFAULT_OPEN;
use super::stage_call::{apply_changes, check, due_timers, prefetch, single};
use crate::runtime::{
    CallFailure, GeoDb, InstanceLabels, InstanceSettings, Plugin, PluginEngine, PluginInstance,
    RuntimeError,
};
use crate::state::{StageState, TtlPolicy};

/// Which export a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Export {
    Process,
    OnTimers,
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
    needs: Needs,
    /// The lifetimes of the state names, from `needs` and the stage's `state_ttl`.
    ttl: Arc<TtlPolicy>,
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
            needs: Needs::default(),
            ttl: Arc::default(),
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
            None => {
                let instance = self.new_instance(&self.version, self.labels.clone())?;
                self.set_needs(instance.needs());
                instance
            }
        };
        Ok(self.instance.insert(instance))
    }

    /// What the running instance reads, and the state lifetimes that follow from it and the
    /// stage's settings (a config reload may change `state_ttl`).
    fn set_needs(&mut self, needs: &Needs) {
        self.needs = needs.clone();
        let ttl = TtlPolicy::new(&needs.ttls, self.slot.settings().state_ttl);
        if *self.ttl != ttl {
            self.ttl = Arc::new(ttl);
        }
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
                if labels.version == self.labels.version {
                    tracing::info!(stage = %self.labels.stage, plugin = %labels.plugin, version = %labels.version, "Stage switched to its new config.");
                } else {
                    tracing::info!(stage = %self.labels.stage, plugin = %labels.plugin, from = %self.labels.version, to = %labels.version, "Stage swapped to the new version.");
                }
                self.slot.swapped_to(&version);
                self.set_needs(instance.needs());
                self.instance = Some(instance);
                self.version = version;
                self.labels = labels;
            }
            Err(e) => {
                tracing::error!(stage = %self.labels.stage, error = %e, running = %self.labels.version, "New version failed to start here; the running version stays.");
            }
        }
    }

    /// One call: fills in the batch's state, calls the export, checks the result and applies
    /// its changes. On failure the state is rolled back and the instance dropped.
    fn call(
        &mut self,
        export: Export,
        batch: &mut Batch,
        watermark: i64,
    ) -> Result<Result<BatchResult, CallFailure>, RuntimeError> {
        self.instance()?;
        prefetch(
            batch,
            &mut self.state,
            &self.needs,
            &self.ttl,
            watermark,
            &self.labels.stage,
        );
        let settings = self.slot.settings();
        let started = std::time::Instant::now();
        let mut state = std::mem::take(&mut self.state);
        let Some(instance) = self.instance.as_mut() else {
            self.state = state;
            return Err(RuntimeError::Engine("the stage has no instance".into()));
        };
        let outcome = match export {
            Export::Process => instance.process(batch, &mut state),
            Export::OnTimers => instance.on_timers(batch, &mut state),
        }
        .and_then(|result| {
            check(&result, batch.len(), settings.output_limit)?;
            apply_changes(&result.changes, &mut state, settings.state_limits())?;
            Ok(result)
        });
        self.state = state;
        self.version
            .stats
            .record(started.elapsed(), outcome.as_ref().err());
        match &outcome {
            Ok(_) => self.state.commit(),
            Err(failure) => self.on_failure(failure),
        }
        Ok(outcome)
    }

    fn on_failure(&mut self, failure: &CallFailure) {
        self.state.rollback();
        self.instance = None;
        ::metrics::counter!("weir_stage_failures_total", "stage" => self.labels.stage.to_string(), "kind" => failure_kind(failure), "plugin_version" => self.labels.version.to_string())
            .increment(1);
    }

    /// Re-runs `batch` one record (or timer) at a time after a failed call. Each result feeds
    /// the stage's breaker; once it opens, the rest of the records are dead-lettered uncalled
    /// (timers wait). A record that fails alone becomes a dead-letter output naming the
    /// failure; a timer that fails alone is dropped (so it cannot loop) and becomes a dead
    /// letter whose value names it.
    fn isolate(
        &mut self,
        export: Export,
        batch: &Batch,
        watermark: i64,
    ) -> Result<BatchResult, RuntimeError> {
        let mut result = BatchResult::default();
        let mut failed = 0;
        let mut refused: Option<String> = None;
        for i in 0..batch.len() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let timer = (export == Export::OnTimers).then(|| (batch.key(i), batch.times[i]));
            if let Some(reason) = &refused {
                if timer.is_none() {
                    dead_letter(&mut result, export, batch, index, reason);
                }
                continue;
            }
            // The failed call's rollback put its timers back: this call fires this one.
            if let Some((key, at)) = timer {
                self.state.cancel_timer(key, at);
            }
            let mut one = single(batch, i, &self.needs);
            match self.call(export, &mut one, watermark)? {
                Ok(out) => {
                    self.version.breaker.observe(None);
                    append_outputs(&mut result, &out, index);
                }
                Err(failure) => {
                    tracing::warn!(stage = %self.labels.stage, plugin = %self.labels.plugin, record = i, reason = %failure, "Record failed alone; dead-lettering it.");
                    failed += 1;
                    let reason = failure.to_string();
                    if let Some((key, at)) = timer {
                        self.state.cancel_timer(key, at);
                        self.state.commit();
                    }
                    if self.version.breaker.observe(Some(&reason)) {
                        refused = self.version.breaker.refusing();
                    }
                    dead_letter(&mut result, export, batch, index, &reason);
                }
            }
        }
        if refused.is_none() && failed * 2 <= batch.len() {
            self.version.breaker.batch_passed();
        }
        Ok(result)
    }

    /// A whole call, isolating its records if it fails.
    fn run(
        &mut self,
        export: Export,
        batch: &mut Batch,
        watermark: i64,
    ) -> Result<BatchResult, RuntimeError> {
        if let Some(reason) = self.version.breaker.refusing() {
            let mut result = BatchResult::default();
            for i in 0..batch.len() {
                dead_letter(&mut result, export, batch, i as u32, &reason);
            }
            return Ok(result);
        }
        match self.call(export, batch, watermark)? {
            Ok(result) => {
                self.version.breaker.batch_passed();
                Ok(result)
            }
            Err(failure) => {
                tracing::warn!(stage = %self.labels.stage, plugin = %self.labels.plugin, records = batch.len(), reason = %failure, "Batch failed; re-running it record by record.");
                self.isolate(export, batch, watermark)
            }
        }
    }
}

/// Appends `out`'s outputs (of a one-record call) to `result` as outputs of `input`.
fn append_outputs(result: &mut BatchResult, out: &BatchResult, input: u32) {
    for (i, output) in out.outputs.iter().enumerate() {
        let Ok(parts) = out.parts(i) else { continue };
        result.push(
            OutputHead {
                input,
                kind: output.kind,
                text: parts.text,
                key: parts.key,
                time: output.time,
                value: output.value,
            },
            |data| data.extend_from_slice(parts.value),
        );
    }
}

/// A dead-letter output for input `index` (a record, or a timer whose key and time become its
/// value).
fn dead_letter(result: &mut BatchResult, export: Export, batch: &Batch, index: u32, reason: &str) {
    let i = index as usize;
    let (text, value, record) = match export {
        Export::Process => (reason.to_string(), ValueKind::Unchanged, Vec::new()),
        Export::OnTimers => (
            format!("timer {reason}"),
            ValueKind::Replaced,
            timer_failure_record(batch.key(i), batch.times[i]),
        ),
    };
    result.push(
        OutputHead {
            input: index,
            kind: OutputKind::DeadLetter,
            text: &text,
            key: None,
            time: None,
            value,
        },
        |data| data.extend_from_slice(&record),
    );
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

impl Stage for WasmStage {
    fn name(&self) -> &str {
        &self.labels.stage
    }

    fn plugin(&self) -> (&str, &str) {
        (self.version.plugin.name(), self.version.plugin.sha256())
    }

    fn begin(&mut self) -> &Needs {
        self.refresh();
        &self.needs
    }

    fn process(&mut self, batch: &mut Batch, watermark: i64) -> Result<BatchResult, RuntimeError> {
        if batch.is_empty() {
            return Ok(BatchResult::default());
        }
        self.run(Export::Process, batch, watermark)
    }

    fn next_timer(&self) -> Option<i64> {
        // While the breaker is open, timers wait.
        if self.version.breaker.refuses() {
            return None;
        }
        self.state.next_timer().map(|(at, _)| *at)
    }

    fn fire_due_timers(
        &mut self,
        watermark: i64,
        max: usize,
    ) -> Result<Option<FiredTimers>, RuntimeError> {
        self.refresh();
        if self.version.breaker.refuses() {
            return Ok(None);
        }
        let Some(mut batch) = due_timers(&mut self.state, watermark, max) else {
            return Ok(None);
        };
        let result = self.run(Export::OnTimers, &mut batch, watermark)?;
        Ok(Some(FiredTimers { batch, result }))
    }

    fn state(&self) -> &StageState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut StageState {
        &mut self.state
    }
}
