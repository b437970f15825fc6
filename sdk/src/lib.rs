//! The weir plugin SDK: implement [`Transform`], call [`export_transform!`] once, and the
//! crate builds to a `wasm32-wasip2` component the weir host can run. The same code runs
//! natively under [`testing::TestHarness`] for plain `cargo test`.
//!
//! ```ignore
//! use weir_sdk::{Config, Context, Event, Transform};
//!
//! struct Tag(String);
//!
//! impl Transform for Tag {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         Ok(Tag(config.get("env").unwrap_or("prod").to_string()))
//!     }
//!     fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
//!         event.set_str("env", &self.0);
//!         ctx.emit(&event);
//!     }
//! }
//!
//! weir_sdk::export_transform!(Tag);
//! ```

pub mod abi;
mod config;
mod context;
mod event;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;
mod host_api;
pub mod json;
pub mod testing;

pub use config::Config;
pub use context::Context;
pub use event::Event;
pub use host_api::{HostApi, Level, Location};

use abi::{Batch, BatchResult};

/// A transform: the business logic of one pipeline stage.
pub trait Transform: Sized + 'static {
    /// Builds the transform from its stage config. An error rejects the plugin, and the host
    /// keeps the previous version running.
    fn init(config: &Config) -> Result<Self, String>;

    /// Handles one event. Call [`Context::emit`], [`Context::route`] or
    /// [`Context::dead_letter`] for each output; an event with no output is dropped.
    fn process(&mut self, event: Event<'_>, ctx: &mut Context<'_>);

    /// Handles a timer set for `key` that fired at `at` (the watermark passed it).
    fn on_timer(&mut self, key: &[u8], at: i64, ctx: &mut Context<'_>) {
        let _ = (key, at, ctx);
    }
}

/// Runs `transform` over every record of `batch`. The guest glue and the native harness both
/// go through here.
pub fn process_batch<T: Transform>(
    transform: &mut T,
    batch: &Batch,
    host: &mut dyn HostApi,
) -> BatchResult {
    let mut result = BatchResult::default();
    let mut ctx = Context::new(host, &mut result, 0);
    for i in 0..batch.len() {
        ctx.set_input(u32::try_from(i).unwrap_or(u32::MAX));
        let event = Event::borrowed(
            batch.value(i),
            batch.key(i),
            batch.times[i],
            batch.headers(i),
        );
        transform.process(event, &mut ctx);
    }
    ctx.flush_counters();
    result
}

/// Runs `transform`'s timer handler for `(key, at)`.
pub fn fire_timer<T: Transform>(
    transform: &mut T,
    key: &[u8],
    at: i64,
    host: &mut dyn HostApi,
) -> BatchResult {
    let mut result = BatchResult::default();
    let mut ctx = Context::new(host, &mut result, 0);
    transform.on_timer(key, at, &mut ctx);
    ctx.flush_counters();
    result
}

/// Exports a [`Transform`] as the plugin's component interface. Call it once, at the crate
/// root, with the type that implements [`Transform`]. Outside Wasm it expands to nothing.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirExport;
            impl $crate::guest::bindings::Guest for __WeirExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::init::<$ty>(config)
                }
                fn process(
                    batch: $crate::guest::bindings::weir::transform::types::Batch,
                ) -> $crate::guest::bindings::weir::transform::types::BatchResult {
                    $crate::guest::process::<$ty>(batch)
                }
                fn on_timer(
                    key: ::std::vec::Vec<u8>,
                    at: i64,
                ) -> $crate::guest::bindings::weir::transform::types::BatchResult {
                    $crate::guest::on_timer::<$ty>(key, at)
                }
            }
    $crate::guest::bindings::export!(__WeirExport with_types_in $crate::guest::bindings);
        };
    };
}
