//! The data path inside one partition: decode, run the stages in order, route the outputs,
//! advance the watermark and fire due timers. [`build`] makes a pipeline from its config and
//! [`run`] drives one from a source to the end.

pub mod build;
mod decode;
mod native_stage;
mod partition;
pub mod plugin_poller;
pub mod plugin_source;
pub mod plugins;
mod router;
pub mod run;
mod stage;
pub mod stage_breaker;
mod stage_call;
pub mod stage_io;
pub mod time;
mod wasm_stage;
pub mod watcher;

pub use decode::{Decoded, RecordDecoder};
pub use native_stage::NativeStage;
pub use partition::{PartitionPipeline, PipelineStats};
pub use router::{RouteCounts, Router, reason_class};
pub use stage::{FiredTimers, Stage};
pub use stage_call::apply_changes;
pub use wasm_stage::WasmStage;
