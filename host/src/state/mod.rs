//! Host-owned keyed state, event-time timers and watermarks, per partition and per stage.
//!
//! Plugins reach state only through the `state` and `timers` imports; the host keeps it here,
//! so it survives plugin reloads and instance re-creation, and expires it in event time. Every call runs inside a journal: a
//! call that traps is rolled back, so re-running its records one by one does not count twice.

mod entry_tables;
mod slice;
mod snapshot;
mod stage_state;
mod ttl;
mod watermark;

pub use entry_tables::TABLES as ENTRY_TABLES;
pub use slice::{Slice, SliceCover};
pub use snapshot::{
    CHANGES_VERSION, PartitionChanges, PartitionSnapshot, SNAPSHOT_VERSION, SnapshotError,
};
pub use stage_state::{Journal, StageState};
pub use ttl::{Lifetime, TtlPolicy};
pub use watermark::{WatermarkConfig, WatermarkTracker};
