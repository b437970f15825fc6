//! The host side of the `weir:transform` world, generated from `wit/` in one place, and the
//! moves between its types and the SDK's plain mirrors (`weir_sdk::abi`), which the rest of
//! the host uses.

use weir_sdk::abi;

wasmtime::component::bindgen!({
    world: "transform",
    path: "../wit",
    // Applying changes past a stage's limits ends the call with a trap.
    imports: { "weir:transform/state.apply": trappable },
});

use self::weir::transform::types as wit;

/// The version of the `weir:transform` package this host runs.
pub const WORLD_VERSION: &str = "0.2.0";

/// A batch as the generated bindings take it; its lists are moved, not copied.
pub fn to_wit(batch: &mut abi::Batch) -> wit::Batch {
    wit::Batch {
        watermark: batch.watermark,
        times: std::mem::take(&mut batch.times),
        keys: std::mem::take(&mut batch.keys),
        key_ends: std::mem::take(&mut batch.key_ends),
        key_ids: std::mem::take(&mut batch.key_ids),
        fields: std::mem::take(&mut batch.fields),
        field_ends: std::mem::take(&mut batch.field_ends),
        state: std::mem::take(&mut batch.state),
        state_ends: std::mem::take(&mut batch.state_ends),
        state_present: std::mem::take(&mut batch.state_present),
        values: std::mem::take(&mut batch.values),
        value_ends: std::mem::take(&mut batch.value_ends),
        headers: std::mem::take(&mut batch.headers),
        header_ends: std::mem::take(&mut batch.header_ends),
    }
}

/// Moves the lists of a batch given to [`to_wit`] back.
pub fn restore(batch: &mut abi::Batch, wit: wit::Batch) {
    batch.times = wit.times;
    batch.keys = wit.keys;
    batch.key_ends = wit.key_ends;
    batch.key_ids = wit.key_ids;
    batch.fields = wit.fields;
    batch.field_ends = wit.field_ends;
    batch.state = wit.state;
    batch.state_ends = wit.state_ends;
    batch.state_present = wit.state_present;
    batch.values = wit.values;
    batch.value_ends = wit.value_ends;
    batch.headers = wit.headers;
    batch.header_ends = wit.header_ends;
}

/// A result in the SDK's form.
pub fn from_wit(result: wit::BatchResult) -> abi::BatchResult {
    abi::BatchResult {
        outputs: result
            .outputs
            .into_iter()
            .map(|o| abi::Output {
                input: o.input,
                kind: match o.kind {
                    wit::OutputKind::Emit => abi::OutputKind::Emit,
                    wit::OutputKind::Route => abi::OutputKind::Route,
                    wit::OutputKind::DeadLetter => abi::OutputKind::DeadLetter,
                },
                value: match o.value {
                    wit::ValueKind::Unchanged => abi::ValueKind::Unchanged,
                    wit::ValueKind::Edited => abi::ValueKind::Edited,
                    wit::ValueKind::Replaced => abi::ValueKind::Replaced,
                },
                end: o.end,
                text_len: o.text_len,
                key_len: o.key_len,
                time: o.time,
            })
            .collect(),
        data: result.data,
        changes: result.changes,
    }
}

/// What a stage declared it reads, in the SDK's form.
pub fn needs_from_wit(needs: wit::Needs) -> abi::Needs {
    abi::Needs {
        fields: needs.fields,
        state: needs.state,
        values: needs.values,
        headers: needs.headers,
        // Declared through `state.expire-after` during `init`; the instance adds them.
        ttls: Vec::new(),
    }
}
