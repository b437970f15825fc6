//! The glue between the WIT world and a [`Transform`], compiled only for Wasm: the generated
//! bindings, the import-backed [`HostApi`] and the one transform instance per component.

use std::any::Any;
use std::cell::RefCell;

use crate::abi::{Batch, BatchResult, Needs, OutputKind, ValueKind};
use crate::host_api::{HostApi, Level, Location};
use crate::{Config, Transform};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "transform",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::guest::bindings",
    });
}

use bindings::weir::transform as wit;

/// The component's transform and what it declared it reads.
struct Instance {
    transform: Box<dyn Any>,
    needs: Needs,
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

/// The host capabilities, through the component's imports.
struct WasmHost;

impl HostApi for WasmHost {
    fn state_get(&mut self, key: &[u8], name: &str) -> Option<Vec<u8>> {
        wit::state::get(key, name)
    }
    fn apply_changes(&mut self, changes: &[u8]) {
        wit::state::apply(changes);
    }
    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit::log::Level::Trace,
            Level::Debug => wit::log::Level::Debug,
            Level::Info => wit::log::Level::Info,
            Level::Warn => wit::log::Level::Warn,
            Level::Error => wit::log::Level::Error,
        };
        wit::log::log(level, message);
    }
    fn counter(&mut self, name: &str, delta: u64) {
        wit::metrics::counter(name, delta);
    }
    fn histogram(&mut self, name: &str, value: f64) {
        wit::metrics::histogram(name, value);
    }
    fn geo_lookup(&mut self, ips: &[&str]) -> Vec<Result<Option<Location>, String>> {
        let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
        wit::geo::lookup(&ips)
            .into_iter()
            .map(|answer| {
                answer.map(|found| {
                    found.map(|l| Location {
                        country_iso: l.country_iso,
                        country_name: l.country_name,
                        region: l.region,
                        city: l.city,
                        latitude: l.latitude,
                        longitude: l.longitude,
                    })
                })
            })
            .collect()
    }
}

fn with_instance<T: Transform>(
    batch: wit::types::Batch,
    call: impl FnOnce(&mut T, &Needs, &Batch) -> BatchResult,
) -> wit::types::BatchResult {
    let batch = from_wit(batch);
    let result = INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut() {
            Some(instance) => match instance.transform.downcast_mut::<T>() {
                Some(transform) => call(transform, &instance.needs, &batch),
                None => BatchResult::default(),
            },
            // The host always calls `init` first; an uninitialized call has nothing to run.
            None => BatchResult::default(),
        }
    });
    to_wit(result)
}

fn from_wit(batch: wit::types::Batch) -> Batch {
    Batch {
        watermark: batch.watermark,
        times: batch.times,
        keys: batch.keys,
        key_ends: batch.key_ends,
        key_ids: batch.key_ids,
        fields: batch.fields,
        field_ends: batch.field_ends,
        state: batch.state,
        state_ends: batch.state_ends,
        state_present: batch.state_present,
        values: batch.values,
        value_ends: batch.value_ends,
        headers: batch.headers,
        header_ends: batch.header_ends,
    }
}

fn to_wit(result: BatchResult) -> wit::types::BatchResult {
    wit::types::BatchResult {
        outputs: result
            .outputs
            .into_iter()
            .map(|o| wit::types::Output {
                input: o.input,
                kind: match o.kind {
                    OutputKind::Emit => wit::types::OutputKind::Emit,
                    OutputKind::Route => wit::types::OutputKind::Route,
                    OutputKind::DeadLetter => wit::types::OutputKind::DeadLetter,
                },
                value: match o.value {
                    ValueKind::Unchanged => wit::types::ValueKind::Unchanged,
                    ValueKind::Edited => wit::types::ValueKind::Edited,
                    ValueKind::Replaced => wit::types::ValueKind::Replaced,
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

#[doc(hidden)]
pub fn init<T: Transform>(config: Vec<(String, String)>) -> Result<wit::types::Needs, String> {
    let transform = T::init(&Config::new(config))?;
    let needs = transform.needs();
    for ttl in &needs.ttls {
        let refresh = match ttl.refresh {
            crate::TtlRefresh::OnWrite => wit::state::TtlRefresh::OnWrite,
            crate::TtlRefresh::OnReadAndWrite => wit::state::TtlRefresh::OnReadAndWrite,
        };
        wit::state::expire_after(&ttl.name, ttl.ttl_ms, refresh);
    }
    let declared = wit::types::Needs {
        fields: needs.fields.clone(),
        state: needs.state.clone(),
        values: needs.values,
        headers: needs.headers,
    };
    INSTANCE.with(|cell| {
        *cell.borrow_mut() = Some(Instance {
            transform: Box::new(transform),
            needs,
        })
    });
    Ok(declared)
}

#[doc(hidden)]
pub fn process<T: Transform>(batch: wit::types::Batch) -> wit::types::BatchResult {
    with_instance::<T>(batch, |t, needs, batch| {
        crate::process_batch(t, needs, batch, &mut WasmHost)
    })
}

#[doc(hidden)]
pub fn on_timers<T: Transform>(timers: wit::types::Batch) -> wit::types::BatchResult {
    with_instance::<T>(timers, |t, needs, timers| {
        crate::fire_timers(t, needs, timers, &mut WasmHost)
    })
}
