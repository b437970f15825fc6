//! One pipeline stage: the [`Stage`] trait its Wasm ([`super::WasmStage`]) and native
//! ([`super::NativeStage`]) implementations share, and the dead letters a stage raises.

use weir_sdk::abi::{Batch, BatchResult, Needs};

use crate::runtime::RuntimeError;
use crate::state::StageState;

/// Timers that fired together, with what the stage made of them.
#[derive(Debug)]
pub struct FiredTimers {
    /// The timers: keys, and the times they were set for (`times`).
    pub batch: Batch,
    /// The outputs; input `i` is timer `i`. A timer whose call failed has a dead-letter
    /// output instead, whose value names the timer.
    pub result: BatchResult,
}

/// What a failed timer leaves as the dead letter's record: its key and time.
pub fn timer_failure_record(key: &[u8], at: i64) -> Vec<u8> {
    serde_json::json!({ "timer_key": String::from_utf8_lossy(key), "at": at })
        .to_string()
        .into_bytes()
}

/// A dead letter raised at `stage` (by its plugin, or by the host isolating a failure). It
/// carries the original source record when there is one, so it can be replayed; otherwise
/// (timer outputs) the stage's own value.
pub(crate) fn stage_dead_letter(
    stage: &dyn Stage,
    reason: String,
    key: &[u8],
    time: i64,
    original: Option<&crate::flow::SourceRecord>,
    stage_value: &[u8],
) -> crate::flow::DeadLetter {
    let (name, sha) = stage.plugin();
    crate::flow::DeadLetter {
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
/// Contract: [`Stage::begin`] comes first for every batch: it may swap in a new plugin version
/// and says what the batch must carry. [`Stage::process`] then gets a batch built that way
/// (keys, times and the declared fields, values and headers; the stage fills in key ids and
/// state) and returns a checked result whose outputs name inputs of the batch; a record whose
/// processing failed alone appears as a dead-letter output with the failure as reason, and its
/// state and timer changes are applied. `Err` means the stage cannot run at all (its plugin no
/// longer instantiates).
pub trait Stage: Send {
    /// Stage name.
    fn name(&self) -> &str;
    /// Plugin name and sha256.
    fn plugin(&self) -> (&str, &str);
    /// Starts a batch: swaps in a newly published version, if any, and says what the stage
    /// reads.
    fn begin(&mut self) -> &Needs;
    /// Runs a batch. The batch is lent mutably so its lists can cross into Wasm without a
    /// copy; its records are unchanged afterwards.
    fn process(&mut self, batch: &mut Batch, watermark: i64) -> Result<BatchResult, RuntimeError>;
    /// The time of the earliest pending timer.
    fn next_timer(&self) -> Option<i64>;
    /// Fires the timers due at `watermark`, earliest first, at most `max` of them in one call.
    fn fire_due_timers(
        &mut self,
        watermark: i64,
        max: usize,
    ) -> Result<Option<FiredTimers>, RuntimeError>;
    /// The stage's state, for snapshots.
    fn state(&self) -> &StageState;
    /// The stage's state, to restore a checkpoint into and to mark checkpointed.
    fn state_mut(&mut self) -> &mut StageState;
}
