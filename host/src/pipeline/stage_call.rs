//! What every stage does around one call into its transform, Wasm or native: fill in the
//! batch's key ids and the declared state of each distinct key, then, once the call returns,
//! check the result before anything uses it and apply its state and timer changes within the
//! stage's limits (journaled, so a failed call leaves no trace).

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;
use weir_sdk::abi::{self, Batch, BatchResult, Change, Needs, RawEdit, ValueKind};

use crate::event::parse;
use crate::runtime::{CallFailure, StateLimits};
use crate::state::{Journal, StageState, TtlPolicy};

/// Fills in `batch.key_ids` and the state `needs` declares for each distinct key, as
/// `state` holds it under the lifetimes of `ttl`, and the watermark. Expired entries dropped
/// on the way count in `weir_state_expired_total` of `stage`.
pub fn prefetch(
    batch: &mut Batch,
    state: &mut StageState,
    needs: &Needs,
    ttl: &Arc<TtlPolicy>,
    watermark: i64,
    stage: &str,
) {
    let records = (0..batch.len()).map(|i| (batch.key(i), batch.times[i]));
    let expired = state.begin_call(ttl, watermark, records);
    if expired > 0 {
        ::metrics::counter!("weir_state_expired_total", "stage" => stage.to_string())
            .increment(expired as u64);
    }
    batch.watermark = watermark;
    batch.key_ids.clear();
    batch.state.clear();
    batch.state_ends.clear();
    batch.state_present.clear();
    // Key ids only serve the state slots.
    if needs.state.is_empty() {
        return;
    }
    let mut ids: HashMap<&[u8], u32, RandomState> =
        HashMap::with_capacity_and_hasher(batch.len(), RandomState::default());
    let mut first: Vec<usize> = Vec::new();
    let mut key_ids = Vec::with_capacity(batch.len());
    for i in 0..batch.len() {
        let next = ids.len() as u32;
        let id = *ids.entry(batch.key(i)).or_insert_with(|| {
            first.push(i);
            next
        });
        key_ids.push(id);
    }
    drop(ids);
    batch.key_ids = key_ids;
    let mut values = Vec::new();
    let mut ends = Vec::with_capacity(first.len() * needs.state.len());
    let mut present = Vec::with_capacity(first.len() * needs.state.len());
    for &i in &first {
        for name in &needs.state {
            let value = state.get_ref(batch.key(i), name.as_bytes());
            present.push(value.is_some());
            values.extend_from_slice(value.unwrap_or_default());
            ends.push(values.len() as u32);
        }
    }
    batch.state = values;
    batch.state_ends = ends;
    batch.state_present = present;
}

/// Checks a result against the batch it answers (`inputs` records or timers) and the stage's
/// output limit: every output names an input and has parts that fit in its data, edits are
/// well framed with UTF-8 names and JSON values, and new values are JSON objects.
/// A result that fails is never used: the call counts as failed.
pub fn check(result: &BatchResult, inputs: usize, output_limit: usize) -> Result<(), CallFailure> {
    let invalid = |reason: String| CallFailure::InvalidResult(reason);
    let bytes = result.data.len();
    if bytes > output_limit.saturating_mul(inputs.max(1)) {
        return Err(CallFailure::OutputLimit {
            bytes,
            inputs,
            limit: output_limit,
        });
    }
    for (i, output) in result.outputs.iter().enumerate() {
        if output.input as usize >= inputs {
            return Err(invalid(format!(
                "output names input {} of a batch of {inputs}",
                output.input
            )));
        }
        let parts = result.parts(i).map_err(|e| invalid(e.0))?;
        match output.value {
            ValueKind::Unchanged => {}
            ValueKind::Edited => {
                for edit in abi::raw_edits(parts.value) {
                    let edit = edit.map_err(|e| invalid(e.0))?;
                    let (RawEdit::Set(name, _) | RawEdit::Remove(name)) = edit;
                    if !name.is_ascii() && std::str::from_utf8(name).is_err() {
                        return Err(invalid("an edited field's name is not UTF-8".into()));
                    }
                    if let RawEdit::Set(name, raw) = edit {
                        parse::check_value(raw).map_err(|e| {
                            let name = String::from_utf8_lossy(name);
                            invalid(format!("the value set for field `{name}` is {e}"))
                        })?;
                    }
                }
            }
            ValueKind::Replaced => {
                std::str::from_utf8(parts.value)
                    .map_err(|_| invalid("a new value is not UTF-8".into()))?;
                parse::index_object(parts.value, &mut Vec::new())
                    .map_err(|e| invalid(format!("a new value is not a JSON object: {e}")))?;
            }
        }
    }
    // The changes' framing is checked by `apply_changes`, before it applies any.
    Ok(())
}

/// Applies a checked result's state and timer changes to `state`. A change past the stage's
/// state or timer limit fails the call (the caller rolls back). When the changes cannot
/// reach a limit even if every one grew the state, nothing can fail half-way and they are
/// applied without journaling; otherwise journaled.
pub fn apply_changes(
    changes: &[u8],
    state: &mut StageState,
    limits: StateLimits,
) -> Result<(), CallFailure> {
    if changes.is_empty() {
        return Ok(());
    }
    let (mut growth, mut timers) = (0usize, 0usize);
    for change in abi::changes(changes) {
        match change.map_err(|e| CallFailure::InvalidResult(e.0))? {
            Change::Put { key, name, value } => {
                growth += key.len() + name.len() + value.len() + 4;
            }
            Change::SetTimer { .. } => timers += 1,
            Change::Delete { .. } | Change::CancelTimer { .. } => {}
        }
    }
    let journal = if state.bytes().saturating_add(growth) <= limits.state_limit
        && state.timer_count().saturating_add(timers) <= limits.timer_limit
    {
        Journal::Skip
    } else {
        Journal::Keep
    };
    for change in abi::changes(changes) {
        match change.map_err(|e| CallFailure::InvalidResult(e.0))? {
            Change::Put { key, name, value } => {
                if !state.put_within(key, name, value, limits.state_limit, journal) {
                    return Err(CallFailure::StateLimit(limits.state_limit));
                }
            }
            Change::Delete { key, name } => state.delete_entry(key, name, journal),
            Change::SetTimer { key, at } => {
                if !state.set_timer_within(key, at, limits.timer_limit, journal) {
                    return Err(CallFailure::TimerLimit(limits.timer_limit));
                }
            }
            Change::CancelTimer { key, at } => state.cancel_timer_within(key, at, journal),
        }
    }
    Ok(())
}

/// Record `i` of `batch` alone (for re-running a failed batch record by record); its key id
/// and state are filled in by [`prefetch`] before the call.
pub fn single(batch: &Batch, i: usize, needs: &Needs) -> Batch {
    let mut one = Batch::default();
    one.push_record(batch.key(i), batch.times[i]);
    let fields = needs.fields.len();
    for f in 0..fields {
        one.push_field(batch.field(i * fields + f));
    }
    if let Some(value) = batch.value(i) {
        one.push_value(value);
    }
    if !batch.header_ends.is_empty() {
        one.push_headers(batch.headers(i));
    }
    one
}

/// The timers of `state` due at `watermark` (at most `max`, earliest first) as a batch of keys
/// and times, popped (journaled: a failed call puts them back); `None` when none is due.
pub fn due_timers(state: &mut StageState, watermark: i64, max: usize) -> Option<Batch> {
    let due = state.pop_due_timers(watermark, max);
    if due.is_empty() {
        return None;
    }
    let mut batch = Batch::default();
    for (at, key) in &due {
        batch.push_record(key, *at);
    }
    Some(batch)
}
