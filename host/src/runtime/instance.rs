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
    /// Most output bytes per input record (or per timer) of one call.
    pub output_limit: usize,
    /// Most state bytes (keys and values) of the stage in one partition.
    pub state_limit: usize,
    /// Most pending timers of the stage in one partition.
    pub timer_limit: usize,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        InstanceSettings {
            memory_limit: 64 << 20,
            cpu_limit: Duration::from_millis(500),
            output_limit: 1 << 20,
            state_limit: 1 << 30,
            timer_limit: 1_000_000,
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

/// A plugin instance with its own store.
pub struct PluginInstance {
    store: Store<StoreData>,
    bindings: Transform,
    deadline_ticks: u64,
    output_limit: usize,
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
            output_limit: settings.output_limit,
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
        let result = self.call(state, watermark, |b, s| b.call_process(s, batch))?;
        check_result(&result, Some(batch.times.len())).map_err(CallFailure::InvalidResult)?;
        self.check_output(&result, batch.times.len())?;
        Ok(result)
    }

    /// Calls `on-timer`.
    pub fn on_timer(
        &mut self,
        key: &[u8],
        at: i64,
        state: &mut StageState,
        watermark: i64,
    ) -> Result<WitBatchResult, CallFailure> {
        let result = self.call(state, watermark, |b, s| b.call_on_timer(s, key, at))?;
        check_result(&result, None).map_err(CallFailure::InvalidResult)?;
        self.check_output(&result, 1)?;
        Ok(result)
    }

    /// Refuses a result larger than `output_limit` per input: a plugin that multiplies its
    /// input must not flood the sinks.
    fn check_output(&self, result: &WitBatchResult, inputs: usize) -> Result<(), CallFailure> {
        let bytes = result.values.len();
        let limit = self.output_limit;
        if bytes > limit.saturating_mul(inputs.max(1)) {
            return Err(CallFailure::OutputLimit {
                bytes,
                inputs,
                limit,
            });
        }
        Ok(())
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

/// Checks that a result's columns fit together: one end offset per output, offsets that never
/// go back or past the values, and (for `process`) inputs that exist.
pub(crate) fn check_result(result: &WitBatchResult, inputs: Option<usize>) -> Result<(), String> {
    if result.outputs.len() != result.value_ends.len() {
        return Err(format!(
            "{} outputs but {} value offsets",
            result.outputs.len(),
            result.value_ends.len()
        ));
    }
    let mut previous = 0u32;
    for &end in &result.value_ends {
        if end < previous || end as usize > result.values.len() {
            return Err(format!(
                "value offset {end} out of order or past {} bytes",
                result.values.len()
            ));
        }
        previous = end;
    }
    if let Some(n) = inputs
        && let Some(bad) = result.outputs.iter().find(|o| o.input as usize >= n)
    {
        return Err(format!(
            "output names input {} of a batch of {n}",
            bad.input
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::WitOutputKind;
    use crate::runtime::bindings::weir::transform::types::Output;

    fn result(inputs: &[u32], values: &[u8], ends: &[u32]) -> WitBatchResult {
        WitBatchResult {
            outputs: inputs
                .iter()
                .map(|&input| Output {
                    input,
                    kind: WitOutputKind::Emit,
                })
                .collect(),
            values: values.to_vec(),
            value_ends: ends.to_vec(),
        }
    }

    #[test]
    fn inconsistent_results_are_refused() {
        assert_eq!(
            check_result(&result(&[0, 1], b"{}{}", &[2, 4]), Some(2)),
            Ok(())
        );
        assert!(
            check_result(&result(&[0, 1], b"{}{}", &[2]), Some(2))
                .unwrap_err()
                .contains("2 outputs but 1")
        );
        assert!(
            check_result(&result(&[0], b"{}", &[9]), Some(1))
                .unwrap_err()
                .contains("past 2 bytes")
        );
        assert!(
            check_result(&result(&[0, 0], b"{}{}", &[4, 2]), Some(1))
                .unwrap_err()
                .contains("out of order")
        );
        assert!(
            check_result(&result(&[3], b"{}", &[2]), Some(2))
                .unwrap_err()
                .contains("input 3")
        );
        assert_eq!(check_result(&result(&[3], b"{}", &[2]), None), Ok(()));
    }
}
