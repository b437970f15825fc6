//! The weir plugin SDK: implement [`Transform`], call [`export_transform!`] once, and the
//! crate builds to a `wasm32-wasip2` component the weir host can run. The same code runs
//! natively under [`testing::TestHarness`] for plain `cargo test`.
//!
//! ```ignore
//! use weir_sdk::{Config, Context, Event, Needs, Transform};
//!
//! struct Tag(String);
//!
//! impl Transform for Tag {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         Ok(Tag(config.get("env").unwrap_or("prod").to_string()))
//!     }
//!     fn needs(&self) -> Needs {
//!         Needs::fields(&[])
//!     }
//!     fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
//!         event.set_str("env", &self.0);
//!         ctx.emit(&event);
//!     }
//! }
//!
//! weir_sdk::export_transform!(Tag);
//! ```
//!
//! Under the hood (`weir:transform@0.2.0`): the host parses each record once and hands the
//! stage only what [`Transform::needs`] declares; an emitted event goes back as the edits made
//! to it, and state written during a call goes back with the result. A transform never sees
//! any of that.

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

pub use abi::{Needs, StateTtl, TtlRefresh};
pub use config::Config;
pub use context::Context;
pub use event::{Event, Events};
pub use host_api::{HostApi, Level, Location};

use abi::{Batch, BatchResult};
use event::Record;

impl Needs {
    /// Whole values: the default, for transforms that read fields they cannot name up front.
    pub fn whole_values() -> Self {
        Needs {
            values: true,
            ..Needs::default()
        }
    }

    /// Only the raw values of `fields` (top-level names or dotted paths): the host hands over
    /// a few bytes per event instead of the whole event.
    pub fn fields(fields: &[&str]) -> Self {
        Needs {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            ..Needs::default()
        }
    }

    /// Also the state values `names` of each event's key, so reading them costs no host call.
    pub fn with_state(mut self, names: &[&str]) -> Self {
        self.state = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Also the headers of each event.
    pub fn with_headers(mut self) -> Self {
        self.headers = true;
        self
    }

    /// Entries of the state `name` expire `ttl` of event time after they were last written
    /// (or also read, per `refresh`): the host forgets them, so state about keys that went
    /// quiet does not grow forever. A read of an expired entry finds nothing.
    pub fn with_ttl(mut self, name: &str, ttl: std::time::Duration, refresh: TtlRefresh) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.ttls.retain(|t| t.name != name);
        self.ttls.push(StateTtl {
            name: name.to_string(),
            ttl_ms,
            refresh,
        });
        self
    }
}

/// A transform: the business logic of one pipeline stage.
pub trait Transform: Sized + 'static {
    /// Builds the transform from its stage config. An error rejects the plugin, and the host
    /// keeps the previous version running.
    fn init(config: &Config) -> Result<Self, String>;

    /// What the transform reads, asked once after `init`. The default, whole values, always
    /// works; naming the fields (and the state read for each event's key) is much cheaper.
    /// Reading a field that was not named finds nothing unless whole values are declared.
    fn needs(&self) -> Needs {
        Needs::whole_values()
    }

    /// Called once per batch before [`Self::process`] runs on its events: a place to make one
    /// host call for the whole batch (geo lookups, say) instead of one per event.
    fn prepare(&mut self, events: &Events<'_>, ctx: &mut Context<'_>) {
        let _ = (events, ctx);
    }

    /// Handles one event. Call [`Context::emit`], [`Context::route`] or
    /// [`Context::dead_letter`] for each output; an event with no output is dropped.
    fn process(&mut self, event: Event<'_>, ctx: &mut Context<'_>);

    /// Handles a timer set for `key` that fired at `at` (the watermark passed it).
    fn on_timer(&mut self, key: &[u8], at: i64, ctx: &mut Context<'_>) {
        let _ = (key, at, ctx);
    }
}

/// Runs `transform` over every record of `batch`, which carries what `needs` declared. The
/// guest glue and the native harness both go through here.
pub fn process_batch<T: Transform>(
    transform: &mut T,
    needs: &Needs,
    batch: &Batch,
    host: &mut dyn HostApi,
) -> BatchResult {
    let mut ctx = Context::new(host, batch, &needs.state);
    let names = needs.fields.as_slice();
    transform.prepare(&Events { batch, names }, &mut ctx);
    // One edit buffer lent to each event in turn: no allocation per event.
    let mut edits = Vec::new();
    for index in 0..batch.len() {
        ctx.set_input(index);
        edits.clear();
        let record = Record {
            batch,
            names,
            index,
        };
        transform.process(Event::input(record, &mut edits), &mut ctx);
    }
    ctx.finish()
}

/// Runs `transform`'s timer handler for every timer of `timers` (keys and times, with the
/// state `needs` declared), in order.
pub fn fire_timers<T: Transform>(
    transform: &mut T,
    needs: &Needs,
    timers: &Batch,
    host: &mut dyn HostApi,
) -> BatchResult {
    let mut ctx = Context::new(host, timers, &needs.state);
    for (index, at) in timers.times.iter().enumerate() {
        ctx.set_input(index);
        transform.on_timer(timers.key(index), *at, &mut ctx);
    }
    ctx.finish()
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
                ) -> ::std::result::Result<
                    $crate::guest::bindings::weir::transform::types::Needs,
                    ::std::string::String,
                > {
                    $crate::guest::init::<$ty>(config)
                }
                fn process(
                    batch: $crate::guest::bindings::weir::transform::types::Batch,
                ) -> $crate::guest::bindings::weir::transform::types::BatchResult {
                    $crate::guest::process::<$ty>(batch)
                }
                fn on_timers(
                    timers: $crate::guest::bindings::weir::transform::types::Batch,
                ) -> $crate::guest::bindings::weir::transform::types::BatchResult {
                    $crate::guest::on_timers::<$ty>(timers)
                }
            }
    $crate::guest::bindings::export!(__WeirExport with_types_in $crate::guest::bindings);
        };
    };
}
