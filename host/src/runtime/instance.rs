//! One live plugin instance: its `Store`, the per-call deadline and memory limit, and the
//! classification of a failed call into the reason the dead-letter output records.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, Trap};

use weir_sdk::abi::{Batch, BatchResult, Needs};

use super::bindings::{Transform, from_wit, needs_from_wit, restore, to_wit};
use super::engine::PluginEngine;
use super::geo::GeoDb;
use super::host_impl::{InstanceLabels, StoreData};
use super::plugin::Plugin;
use super::{Result, RuntimeError};
use crate::state::StageState;

/// Limits of one stage's instances.
#[derive(Debug, Clone, Copy)]
pub struct InstanceSettings {
    /// Linear memory limit in bytes.
    pub memory_limit: usize,
    /// Wall-clock budget of one call (`init`, `process` or `on-timer`).
    pub cpu_limit: Duration,
    /// Most output bytes per input record (or per timer) of one call.
    pub output_limit: usize,
    /// Most state bytes (keys and values) of the stage in one partition.
    pub state_limit: usize,
    /// Most pending timers of the stage in one partition.
    pub timer_limit: usize,
    /// Lifetime of the state entries whose name the plugin gave none (event time).
    pub state_ttl: Option<Duration>,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        InstanceSettings {
            memory_limit: 64 << 20,
            cpu_limit: Duration::from_millis(500),
            output_limit: 1 << 20,
            state_limit: 1 << 30,
            timer_limit: 1_000_000,
            state_ttl: None,
        }
    }
}

/// Why a call failed. Its `Display` is the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The guest trapped (panic, unreachable, out-of-bounds access...).
    #[error("trap: {0}")]
    Trap(String),
    /// The call ran past its deadline.
    #[error("timeout")]
    Timeout,
    /// The guest tried to grow its memory past the stage's limit.
    #[error("memory limit")]
    MemoryLimit,
    /// One record's (or timer's) outputs were larger than the stage's `output_limit`.
    #[error(
        "output limit: {bytes} bytes of output from {inputs} record(s), limit {limit} per record"
    )]
    OutputLimit {
        /// Output bytes of the call.
        bytes: usize,
        /// Inputs of the call.
        inputs: usize,
        /// The limit per input.
        limit: usize,
    },
    /// The call tried to grow the stage's state past its `state_limit`.
    #[error("state limit: the stage's state would pass {0} bytes")]
    StateLimit(usize),
    /// The call tried to hold more timers than the stage's `timer_limit`.
    #[error("timer limit: the stage would hold more than {0} pending timers")]
    TimerLimit(usize),
    /// The guest returned outputs that do not fit together (offsets past the values, an
    /// output naming an input the batch does not have...). Using them could lose or corrupt
    /// records, so the call counts as failed.
    #[error("invalid result: {0}")]
    InvalidResult(String),
}

/// The limits on what one call may change in a stage's state.
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    /// Most state bytes (keys and values) of the stage in one partition.
    pub state_limit: usize,
    /// Most pending timers of the stage in one partition.
    pub timer_limit: usize,
}

impl InstanceSettings {
    /// The state and timer limits.
    pub fn state_limits(&self) -> StateLimits {
        StateLimits {
            state_limit: self.state_limit,
            timer_limit: self.timer_limit,
        }
    }
}

/// A plugin instance with its own store.
pub struct PluginInstance {
    store: Store<StoreData>,
    bindings: Transform,
    deadline_ticks: u64,
    needs: Needs,
}

impl PluginInstance {
    /// Instantiates `plugin` and calls its `init` with `config`.
    pub fn new(
        engine: &PluginEngine,
        plugin: &Plugin,
        labels: InstanceLabels,
        settings: InstanceSettings,
        geo: Option<Arc<GeoDb>>,
        config: &[(String, String)],
    ) -> Result<Self> {
        let init_error = |reason: String| RuntimeError::Init {
            plugin: plugin.name().to_string(),
            stage: labels.stage.to_string(),
            reason,
        };
        let tick = engine.tick().as_nanos().max(1);
        let deadline_ticks = u64::try_from(settings.cpu_limit.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(1)
            + 1;
        let data = StoreData::new(labels.clone(), &settings, geo);
        let mut store = Store::new(engine.engine(), data);
        store.limiter(|data| &mut data.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks);
        let bindings = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| init_error(format!("instantiation failed: {e:#}")))?;
        let mut instance = PluginInstance {
            store,
            bindings,
            deadline_ticks,
            needs: Needs::default(),
        };
        let mut unused = StageState::default();
        match instance.call(&mut unused, |b, s| b.call_init(s, config)) {
            Ok(Ok(needs)) => {
                instance.needs = needs_from_wit(needs);
                let declared = instance.store.data_mut().declared_ttls.take();
                instance.needs.ttls = declared.unwrap_or_default();
                Ok(instance)
            }
            Ok(Err(reason)) => Err(init_error(reason)),
            Err(failure) => Err(init_error(failure.to_string())),
        }
    }

    /// What the plugin declared at `init` that it reads.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// Calls `process` with `batch` (its lists lent to the call and given back). Changes the
    /// plugin applies early go to `state`; the caller checks the result, applies the rest of
    /// its changes and commits or rolls back.
    pub fn process(
        &mut self,
        batch: &mut Batch,
        state: &mut StageState,
    ) -> Result<BatchResult, CallFailure> {
        let wit = to_wit(batch);
        let outcome = self.call(state, |b, s| b.call_process(s, &wit));
        restore(batch, wit);
        outcome.map(from_wit)
    }

    /// Calls `on-timers` with `timers`, as [`Self::process`] does.
    pub fn on_timers(
        &mut self,
        timers: &mut Batch,
        state: &mut StageState,
    ) -> Result<BatchResult, CallFailure> {
        let wit = to_wit(timers);
        let outcome = self.call(state, |b, s| b.call_on_timers(s, &wit));
        restore(timers, wit);
        outcome.map(from_wit)
    }

    /// Runs one export with `state` swapped into the store, a fresh deadline and a reset
    /// memory flag, then classifies any failure.
    fn call<R>(
        &mut self,
        state: &mut StageState,
        f: impl FnOnce(&Transform, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let data = self.store.data_mut();
        std::mem::swap(&mut data.state, state);
        data.limiter.reset();
        data.refused = None;
        self.store.set_epoch_deadline(self.deadline_ticks);
        let outcome = f(&self.bindings, &mut self.store);
        let data = self.store.data_mut();
        std::mem::swap(&mut data.state, state);
        let exceeded = data.limiter.exceeded();
        // A refused state or timer change fails the call even if the plugin carried on: its
        // state would not be what it computed.
        if let Some(refused) = data.refused.take() {
            return Err(refused);
        }
        outcome.map_err(|e| classify(&e, exceeded))
    }
}

fn classify(error: &wasmtime::Error, memory_exceeded: bool) -> CallFailure {
    if memory_exceeded {
        return CallFailure::MemoryLimit;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallFailure::Timeout,
        Some(trap) => {
            let frame = error
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .and_then(|bt| {
                    bt.frames()
                        .iter()
                        .find_map(|f| f.func_name().map(str::to_string))
                });
            match frame {
                Some(func) => CallFailure::Trap(format!("{trap} in {func}")),
                None => CallFailure::Trap(trap.to_string()),
            }
        }
        None => CallFailure::Trap(crate::error::one_line(&format!("{error:#}"))),
    }
}
