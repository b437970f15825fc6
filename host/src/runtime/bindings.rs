//! The host side of the `weir:transform` world, generated from `wit/` in one place.

wasmtime::component::bindgen!({
    world: "transform",
    path: "../wit",
});

pub use self::weir::transform::types::{
    Batch as WitBatch, BatchResult as WitBatchResult, OutputKind as WitOutputKind,
};
