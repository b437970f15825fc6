//! What crosses into a stage and back: the batch built from the events in flight as the
//! stage declared it reads them, and the event each of its outputs makes.

use weir_sdk::abi::{Batch, BatchResult, Needs, ValueKind, push_header};

use crate::event::{EventArena, EventRef};

/// Fills `batch` with `events` as `needs` says: keys and times always, the declared fields'
/// raw values, whole values and headers (`headers(i)` gives record `i`'s, if it has any).
pub fn stage_batch<'h>(
    batch: &mut Batch,
    arena: &EventArena,
    needs: &Needs,
    events: &[EventRef],
    headers: impl Fn(usize) -> Option<&'h [(String, Vec<u8>)]>,
) {
    batch.clear();
    let mut framed = Vec::new();
    for (i, event) in events.iter().enumerate() {
        batch.push_record(arena.key(event), event.time);
        for field in &needs.fields {
            batch.push_field(arena.path(event, field).unwrap_or_default());
        }
        if needs.values {
            arena.write_json(event, &mut batch.values, None);
            batch.value_ends.push(batch.values.len() as u32);
        }
        if needs.headers {
            framed.clear();
            for (name, value) in headers(i).unwrap_or_default() {
                push_header(&mut framed, name, value);
            }
            batch.push_headers(&framed);
        }
    }
}

/// The event output `i` of `result` makes of `input`: the input itself, edited, or a new
/// object, with the output's own key and time. The result was checked when it came back, so
/// this fails only if the host is at fault.
pub fn output_event(
    arena: &mut EventArena,
    result: &BatchResult,
    i: usize,
    input: &EventRef,
) -> Result<EventRef, String> {
    let output = result.outputs[i];
    let parts = result
        .parts(i)
        .map_err(|e| format!("unreadable output: {e}"))?;
    let mut event = match output.value {
        ValueKind::Unchanged => *input,
        ValueKind::Edited => arena
            .edited(input, parts.value)
            .map_err(|e| format!("unreadable edits: {e}"))?,
        ValueKind::Replaced => {
            let (members, bytes) = arena
                .push_object(parts.value)
                .map_err(|e| format!("unreadable new value: {e}"))?;
            EventRef {
                members,
                verbatim: Some(bytes),
                appended: 0,
                ..*input
            }
        }
    };
    if let Some(key) = parts.key {
        event.key = arena.push_key(key);
    }
    if let Some(time) = output.time {
        event.time = time;
    }
    Ok(event)
}

/// The inputs a batch of fired timers stands for: an empty object per timer, keyed and timed
/// like it, which the timers' outputs are made from.
pub fn timer_events(arena: &mut EventArena, timers: &Batch) -> Result<Vec<EventRef>, String> {
    timers
        .times
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let (members, _) = arena.push_object(b"{}").map_err(|e| e.to_string())?;
            Ok(EventRef {
                members,
                key: arena.push_key(timers.key(i)),
                time: *at,
                verbatim: None,
                appended: 0,
            })
        })
        .collect()
}
