//! One live plugin instance: its `Store`, the per-call deadline and memory limit, and the
//! classification of a failed call into the reason the dead-letter output records.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, Trap};

use super::bindings::{Transform, WitBatch, WitBatchResult};
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
}

/// A plugin instance with its own store.
pub struct PluginInstance {
    store: Store<StoreData>,
    bindings: Transform,
    deadline_ticks: u64,
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
        let data = StoreData::new(labels.clone(), settings.memory_limit, geo);
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
        };
        let mut unused = StageState::default();
        match instance.call(&mut unused, i64::MIN, |b, s| b.call_init(s, config)) {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(reason)) => Err(init_error(reason)),
            Err(failure) => Err(init_error(failure.to_string())),
        }
    }

    /// Calls `process`. State changes are applied to `state`; the caller commits or rolls back.
    pub fn process(
        &mut self,
        batch: &WitBatch,
        state: &mut StageState,
        watermark: i64,
    ) -> Result<WitBatchResult, CallFailure> {
        self.call(state, watermark, |b, s| b.call_process(s, batch))
    }

    /// Calls `on-timer`.
    pub fn on_timer(
        &mut self,
        key: &[u8],
        at: i64,
        state: &mut StageState,
        watermark: i64,
    ) -> Result<WitBatchResult, CallFailure> {
        self.call(state, watermark, |b, s| b.call_on_timer(s, key, at))
    }

    /// Runs one export with `state` swapped into the store, a fresh deadline and a reset
    /// memory flag, then classifies any failure.
    fn call<R>(
        &mut self,
        state: &mut StageState,
        watermark: i64,
        f: impl FnOnce(&Transform, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let data = self.store.data_mut();
        std::mem::swap(&mut data.state, state);
        data.watermark = watermark;
        data.limiter.reset();
        self.store.set_epoch_deadline(self.deadline_ticks);
        let outcome = f(&self.bindings, &mut self.store);
        let data = self.store.data_mut();
        std::mem::swap(&mut data.state, state);
        let exceeded = data.limiter.exceeded();
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
        None => CallFailure::Trap(format!("{error:#}")),
    }
}
