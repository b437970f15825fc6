//! A partition's state as bytes: every stage's keyed state and timers plus the watermark (a
//! full snapshot), or only what changed since the previous checkpoint (changes), so the
//! checkpointer can persist it and a restarted or rebalanced partition can resume.

use serde::{Deserialize, Serialize};

use super::StageState;
use super::stage_state::{StageChanges, StageChangesRef};

/// Errors encoding or decoding a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot of this format.
    #[error("state snapshot does not decode: {0}")]
    Decode(postcard::Error),
    /// Encoding failed.
    #[error("state snapshot does not encode: {0}")]
    Encode(postcard::Error),
    /// The snapshot was written by an incompatible version.
    #[error("state snapshot has format version {0}, this build reads {1}")]
    Version(u32, u32),
}

/// The current format version.
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    watermark: i64,
    stages: Vec<(&'a str, &'a StageState)>,
}

/// The state of one partition, decoded.
#[derive(Debug, Default, Deserialize)]
pub struct PartitionSnapshot {
    /// Format version.
    pub version: u32,
    /// The partition's watermark.
    pub watermark: i64,
    /// Each stage's state, by stage name.
    pub stages: Vec<(String, StageState)>,
}

impl PartitionSnapshot {
    /// Encodes the watermark and the stages' states without copying them first.
    pub fn encode(
        watermark: i64,
        stages: &[(&str, &StageState)],
    ) -> Result<Vec<u8>, SnapshotError> {
        let snapshot = SnapshotRef {
            version: SNAPSHOT_VERSION,
            watermark,
            stages: stages.to_vec(),
        };
        postcard::to_allocvec(&snapshot).map_err(SnapshotError::Encode)
    }

    /// Decodes a snapshot.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut snapshot: PartitionSnapshot =
            postcard::from_bytes(bytes).map_err(SnapshotError::Decode)?;
        check_version(snapshot.version)?;
        for (_, state) in &mut snapshot.stages {
            state.recount();
        }
        Ok(snapshot)
    }
}

fn check_version(version: u32) -> Result<(), SnapshotError> {
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::Version(version, SNAPSHOT_VERSION));
    }
    Ok(())
}

#[derive(Serialize)]
struct ChangesRef<'a> {
    version: u32,
    watermark: i64,
    stages: Vec<(&'a str, StageChangesRef<'a>)>,
}

/// What changed in a partition's state since the previous checkpoint, decoded: applied in
/// order on top of a full snapshot, the changes of each later checkpoint give its state.
#[derive(Debug, Default, Deserialize)]
pub struct PartitionChanges {
    /// Format version.
    pub version: u32,
    /// The partition's watermark.
    pub watermark: i64,
    /// Each stage's changes, by stage name.
    pub stages: Vec<(String, StageChanges)>,
}

impl PartitionChanges {
    /// Encodes the watermark and each stage's changes since its last
    /// [`StageState::clear_changes`].
    pub fn encode(
        watermark: i64,
        stages: &[(&str, &StageState)],
    ) -> Result<Vec<u8>, SnapshotError> {
        let changes = ChangesRef {
            version: SNAPSHOT_VERSION,
            watermark,
            stages: stages
                .iter()
                .map(|(name, state)| (*name, state.changes()))
                .collect(),
        };
        postcard::to_allocvec(&changes).map_err(SnapshotError::Encode)
    }

    /// Decodes changes.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let changes: PartitionChanges =
            postcard::from_bytes(bytes).map_err(SnapshotError::Decode)?;
        check_version(changes.version)?;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_state_and_timers() {
        let mut stage = StageState::default();
        stage.put(b"u1", "open", b"abc".to_vec());
        stage.set_timer(b"u1", 42);
        stage.commit();
        let bytes = PartitionSnapshot::encode(7, &[("s", &stage)]).unwrap();
        let mut back = PartitionSnapshot::decode(&bytes).unwrap();
        assert_eq!(back.watermark, 7);
        let (name, stage) = &mut back.stages[0];
        assert_eq!(name, "s");
        assert_eq!(stage.get(b"u1", "open"), Some(b"abc".to_vec()));
        assert_eq!(stage.next_timer(), Some(&(42, b"u1".to_vec())));
        assert!(PartitionSnapshot::decode(b"\x05\x01").is_err());
    }

    #[test]
    fn changes_round_trip_onto_a_snapshot() {
        let mut stage = StageState::default();
        stage.put(b"u1", "open", b"abc".to_vec());
        stage.commit();
        let full = PartitionSnapshot::encode(7, &[("s", &stage)]).unwrap();
        stage.clear_changes();
        stage.put(b"u2", "open", b"def".to_vec());
        stage.set_timer(b"u2", 9);
        stage.commit();
        let changes =
            PartitionChanges::decode(&PartitionChanges::encode(8, &[("s", &stage)]).unwrap())
                .unwrap();
        assert_eq!(changes.watermark, 8);
        let mut back = PartitionSnapshot::decode(&full).unwrap();
        for ((_, state), (_, delta)) in back.stages.iter_mut().zip(changes.stages) {
            state.apply(delta);
        }
        let (_, state) = &mut back.stages[0];
        assert_eq!(state.get(b"u1", "open"), Some(b"abc".to_vec()));
        assert_eq!(state.get(b"u2", "open"), Some(b"def".to_vec()));
        assert_eq!(state.next_timer(), Some(&(9, b"u2".to_vec())));
        assert!(PartitionChanges::decode(b"\x05").is_err());
    }
}
