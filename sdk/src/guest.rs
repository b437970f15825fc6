//! The glue between the WIT world and a [`Transform`], compiled only for Wasm: the generated
//! bindings, the import-backed [`HostApi`] and the one transform instance per component.

use std::any::Any;
use std::cell::RefCell;

use crate::abi::{Batch, BatchResult, OutputKind};
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

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// The host capabilities, through the component's imports.
struct WasmHost;

impl HostApi for WasmHost {
    fn state_get(&mut self, key: &[u8], name: &str) -> Option<Vec<u8>> {
        wit::state::get(key, name)
    }
    fn state_put(&mut self, key: &[u8], name: &str, value: &[u8]) {
        wit::state::put(key, name, value);
    }
    fn state_delete(&mut self, key: &[u8], name: &str) {
        wit::state::delete(key, name);
    }
    fn timer_set(&mut self, key: &[u8], at: i64) {
        wit::timers::set(key, at);
    }
    fn timer_cancel(&mut self, key: &[u8], at: i64) {
        wit::timers::cancel(key, at);
    }
    fn watermark(&mut self) -> i64 {
        wit::timers::watermark()
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
    fn geo_lookup(&mut self, ip: &str) -> Result<Option<Location>, String> {
        wit::geo::lookup(ip).map(|found| {
            found.map(|l| Location {
                country_iso: l.country_iso,
                country_name: l.country_name,
                region: l.region,
                city: l.city,
                latitude: l.latitude,
                longitude: l.longitude,
            })
        })
    }
}

fn with_instance<T: Transform>(f: impl FnOnce(&mut T) -> BatchResult) -> wit::types::BatchResult {
    let result = INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_mut().and_then(|b| b.downcast_mut::<T>()) {
            Some(transform) => f(transform),
            // The host always calls `init` first; an uninitialized call has nothing to run.
            None => BatchResult::default(),
        }
    });
    to_wit(result)
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
                    OutputKind::Route(r) => wit::types::OutputKind::Route(r),
                    OutputKind::DeadLetter(r) => wit::types::OutputKind::DeadLetter(r),
                },
            })
            .collect(),
        values: result.values,
        value_ends: result.value_ends,
    }
}

#[doc(hidden)]
pub fn init<T: Transform>(config: Vec<(String, String)>) -> Result<(), String> {
    let transform = T::init(&Config::new(config))?;
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(transform)));
    Ok(())
}

#[doc(hidden)]
pub fn process<T: Transform>(batch: wit::types::Batch) -> wit::types::BatchResult {
    let batch = Batch {
        values: batch.values,
        value_ends: batch.value_ends,
        keys: batch.keys,
        key_ends: batch.key_ends,
        times: batch.times,
        headers: batch.headers,
        header_ends: batch.header_ends,
    };
    with_instance::<T>(|t| crate::process_batch(t, &batch, &mut WasmHost))
}

#[doc(hidden)]
pub fn on_timer<T: Transform>(key: Vec<u8>, at: i64) -> wit::types::BatchResult {
    with_instance::<T>(|t| crate::fire_timer(t, &key, at, &mut WasmHost))
}
