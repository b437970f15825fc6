//! The WebAssembly runtime: one wasmtime [`Engine`](wasmtime::Engine) per process with the
//! pooling allocator and epoch interruption, plugins compiled and type-checked against the
//! `weir:transform` world, and one `Store` per plugin instance with its own memory limit and
//! per-call deadline.

mod bindings;
mod call_stats;
mod compile_cache;
mod engine;
mod geo;
mod host_impl;
mod instance;
mod limits;
mod plugin;

use std::path::PathBuf;

pub use bindings::WORLD_VERSION;
pub use call_stats::{CallStats, CallSummary};
pub use engine::{EngineSettings, PluginEngine, lower_thread_priority};
pub use geo::GeoDb;
pub use host_impl::InstanceLabels;
pub use instance::{CallFailure, InstanceSettings, PluginInstance, StateLimits};
pub use plugin::{Plugin, PluginInfo, sha256_hex};

/// Errors of the runtime, each naming the plugin or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine could not be configured.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// A plugin file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A plugin is not a valid component or does not match the `weir:transform` world.
    #[error("plugin {plugin} rejected: {reason}")]
    Rejected {
        /// Plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// A plugin's `init` returned an error or failed.
    #[error("plugin {plugin} failed to initialize for stage {stage}: {reason}")]
    Init {
        /// Plugin name.
        plugin: String,
        /// Stage name.
        stage: String,
        /// The error the plugin returned, or the trap.
        reason: String,
    },
    /// The geo database could not be opened.
    #[error(
        "cannot open geo database {path}: {reason} (use a MaxMind City database such as \
         GeoLite2-City.mmdb, or make a small synthetic one with `weir generate geodb --out {path}`)"
    )]
    Geo {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Result alias for the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
