//! Project tasks shared by the `cargo xtask` binary and the test suites: building every plugin
//! for `wasm32-wasip2`, preparing the Python environments (the independent Parquet reader,
//! the Python plugins' tools) and the npm workspace (the JavaScript plugins' tools), and
//! installing and starting the real servers tests talk to. Tests call the same functions, so
//! what they load is what `cargo xtask` builds.

pub mod guests;
pub mod node;
mod paths;
pub mod plugins;
pub mod python;
pub mod servers;

pub use paths::{target_dir, workspace_root};
