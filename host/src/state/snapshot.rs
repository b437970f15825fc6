//! A partition's state as bytes: every stage's keyed state and timers plus the watermark (a
//! full snapshot), or only what changed since the previous checkpoint (changes), so the
//! checkpointer can persist it and a restarted or rebalanced partition can resume.

use serde::{Deserialize, Serialize};

use super::StageState;
use super::stage_state::{StageChanges, StageChangesV1, StageStateV1};

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

/// The current format version. Version 2 added each entry's touch time (for state
/// lifetimes); version 1 still decodes, its entries touched at the snapshot's watermark.
pub const SNAPSHOT_VERSION: u32 = 2;

/// A full snapshot of format 1.
#[derive(Deserialize)]
struct SnapshotV1 {
    watermark: i64,
    stages: Vec<(String, StageStateV1)>,
}

/// Changes of format 1.
#[derive(Deserialize)]
struct ChangesV1 {
    watermark: i64,
    stages: Vec<(String, StageChangesV1)>,
}

/// The format version the bytes start with, and the bytes after it.
fn split_version(bytes: &[u8]) -> Result<(u32, &[u8]), SnapshotError> {
    postcard::take_from_bytes::<u32>(bytes).map_err(SnapshotError::Decode)
}

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

/// `value` in postcard, in a buffer of `reserve` bytes to begin with: postcard's own `Vec`
/// output starts empty and doubles, copying what it holds each time (megabytes, for a full
/// snapshot).
fn encode_reserved<T: Serialize>(value: &T, reserve: usize) -> Result<Vec<u8>, SnapshotError> {
    let mut buf = Vec::with_capacity(reserve);
    weir_sdk::abi::append_postcard(value, &mut buf).map_err(SnapshotError::Encode)?;
    Ok(buf)
}

impl PartitionSnapshot {
    /// Encodes the watermark and the stages' states without copying them first, into a
    /// buffer of `reserve` bytes to begin with (it grows if they need more).
    pub fn encode(
        watermark: i64,
        stages: &[(&str, &StageState)],
        reserve: usize,
    ) -> Result<Vec<u8>, SnapshotError> {
        let snapshot = SnapshotRef {
            version: SNAPSHOT_VERSION,
            watermark,
            stages: stages.to_vec(),
        };
        encode_reserved(&snapshot, reserve)
    }

    /// Decodes a snapshot.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if let (1, rest) = split_version(bytes)? {
            let old: SnapshotV1 = postcard::from_bytes(rest).map_err(SnapshotError::Decode)?;
            let touched = old.watermark.max(0);
            return Ok(PartitionSnapshot {
                version: SNAPSHOT_VERSION,
                watermark: old.watermark,
                stages: old
                    .stages
                    .into_iter()
                    .map(|(name, state)| (name, state.upgrade(touched)))
                    .collect(),
            });
        }
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
    /// [`StageState::clear_changes`], into a buffer of `reserve` bytes to begin with.
    pub fn encode(
        watermark: i64,
        stages: &[(&str, &StageState)],
        reserve: usize,
    ) -> Result<Vec<u8>, SnapshotError> {
        let changes: Vec<_> = stages
            .iter()
            .map(|(name, state)| (*name, state.changes()))
            .collect();
        let mut buf = Vec::with_capacity(reserve);
        // Postcard's layout of a `PartitionChanges`, with each stage's log copied in whole.
        let encode = |buf: &mut Vec<u8>| -> postcard::Result<()> {
            let head = (SNAPSHOT_VERSION, watermark, changes.len());
            weir_sdk::abi::append_postcard(&head, buf)?;
            for (name, stage) in &changes {
                weir_sdk::abi::append_postcard(name, buf)?;
                stage.encode_into(buf)?;
            }
            Ok(())
        };
        encode(&mut buf).map_err(SnapshotError::Encode)?;
        Ok(buf)
    }

    /// Decodes changes.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if let (1, rest) = split_version(bytes)? {
            let old: ChangesV1 = postcard::from_bytes(rest).map_err(SnapshotError::Decode)?;
            let touched = old.watermark.max(0);
            return Ok(PartitionChanges {
                version: SNAPSHOT_VERSION,
                watermark: old.watermark,
                stages: old
                    .stages
                    .into_iter()
                    .map(|(name, changes)| (name, changes.upgrade(touched)))
                    .collect(),
            });
        }
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
        let bytes = PartitionSnapshot::encode(7, &[("s", &stage)], 0).unwrap();
        let mut back = PartitionSnapshot::decode(&bytes).unwrap();
        assert_eq!(back.watermark, 7);
        let (name, stage) = &mut back.stages[0];
        assert_eq!(name, "s");
        assert_eq!(stage.get(b"u1", "open"), Some(b"abc".to_vec()));
        assert_eq!(stage.next_timer(), Some(&(42, b"u1".to_vec())));
        assert!(PartitionSnapshot::decode(b"\x05\x01").is_err());
    }

    /// Keys, values and timer keys are written whole as byte strings, in the bytes of the
    /// sequences of `u8` they replaced: snapshots and changes read back through the old
    /// layout and write the same bytes from it.
    #[test]
    #[allow(clippy::type_complexity, reason = "the old layout, spelled out")]
    fn byte_strings_keep_the_layout_of_sequences_of_bytes() {
        use std::collections::HashMap;
        #[derive(Serialize, Deserialize)]
        struct Snapshot {
            version: u32,
            watermark: i64,
            stages: Vec<(
                String,
                HashMap<Vec<u8>, (i64, Vec<u8>)>,
                Vec<(i64, Vec<u8>)>,
            )>,
        }
        #[derive(Serialize, Deserialize)]
        struct Changes {
            version: u32,
            watermark: i64,
            stages: Vec<(
                String,
                Vec<(Vec<u8>, Option<(i64, Vec<u8>)>)>,
                Vec<(i64, Vec<u8>, bool)>,
            )>,
        }
        let mut stage = StageState::default();
        stage.put(b"u1", "open", vec![7; 40]);
        stage.set_timer(b"u1", 42);
        stage.commit();
        let snapshot = PartitionSnapshot::encode(9, &[("s", &stage)], 0).unwrap();
        let old: Snapshot = postcard::from_bytes(&snapshot).unwrap();
        assert_eq!(old.stages[0].1.values().next().unwrap().1, vec![7; 40]);
        assert_eq!(old.stages[0].2, vec![(42, b"u1".to_vec())]);
        assert_eq!(postcard::to_allocvec(&old).unwrap(), snapshot);

        stage.clear_changes();
        stage.put(b"u2", "open", b"xyz".to_vec());
        stage.delete(b"u1", "open");
        stage.cancel_timer(b"u1", 42);
        stage.commit();
        let changes = PartitionChanges::encode(10, &[("s", &stage)], 0).unwrap();
        let old: Changes = postcard::from_bytes(&changes).unwrap();
        let (entries, timers) = (&old.stages[0].1, &old.stages[0].2);
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().any(|(_, v)| v.is_none()));
        assert!(
            entries
                .iter()
                .any(|(_, v)| v.as_ref().is_some_and(|v| v.1 == b"xyz"))
        );
        assert_eq!(timers, &vec![(42, b"u1".to_vec(), false)]);
        assert_eq!(postcard::to_allocvec(&old).unwrap(), changes);
    }

    /// Checkpoints written before entries had touch times still restore, each entry living
    /// a full lifetime from the checkpoint's watermark.
    #[test]
    #[allow(clippy::type_complexity, reason = "the old format, spelled out")]
    fn format_1_snapshots_and_changes_still_decode() {
        #[derive(Serialize)]
        struct V1<'a> {
            version: u32,
            watermark: i64,
            stages: Vec<(
                &'a str,
                std::collections::BTreeMap<&'a [u8], &'a [u8]>,
                Vec<(i64, &'a [u8])>,
            )>,
        }
        let key = |k: &[u8], name: &[u8]| {
            let mut bytes = (k.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(k);
            bytes.extend_from_slice(name);
            bytes
        };
        let u1 = key(b"u1", b"open");
        let old = V1 {
            version: 1,
            watermark: 500,
            stages: vec![(
                "s",
                [(u1.as_slice(), b"abc".as_slice())].into(),
                vec![(42, b"u1".as_slice())],
            )],
        };
        let mut back = PartitionSnapshot::decode(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!((back.version, back.watermark), (SNAPSHOT_VERSION, 500));
        let (_, state) = &mut back.stages[0];
        assert_eq!(state.get(b"u1", "open"), Some(b"abc".to_vec()));
        assert_eq!(state.bytes(), u1.len() + 3);
        assert_eq!(state.next_timer(), Some(&(42, b"u1".to_vec())));

        #[derive(Serialize)]
        struct ChangesV1<'a> {
            version: u32,
            watermark: i64,
            stages: Vec<(
                &'a str,
                Vec<(&'a [u8], Option<&'a [u8]>)>,
                Vec<(i64, &'a [u8], bool)>,
            )>,
        }
        let old = ChangesV1 {
            version: 1,
            watermark: 600,
            stages: vec![(
                "s",
                vec![(u1.as_slice(), None)],
                vec![(42, b"u1".as_slice(), false)],
            )],
        };
        let changes = PartitionChanges::decode(&postcard::to_allocvec(&old).unwrap()).unwrap();
        for ((_, state), (_, delta)) in back.stages.iter_mut().zip(changes.stages) {
            state.apply(delta);
        }
        let (_, state) = &mut back.stages[0];
        assert_eq!(state.get(b"u1", "open"), None);
        assert_eq!((state.bytes(), state.timer_count()), (0, 0));
    }

    #[test]
    fn changes_round_trip_onto_a_snapshot() {
        let mut stage = StageState::default();
        stage.put(b"u1", "open", b"abc".to_vec());
        stage.commit();
        let full = PartitionSnapshot::encode(7, &[("s", &stage)], 0).unwrap();
        stage.clear_changes();
        stage.put(b"u2", "open", b"def".to_vec());
        stage.set_timer(b"u2", 9);
        stage.commit();
        let changes =
            PartitionChanges::decode(&PartitionChanges::encode(8, &[("s", &stage)], 0).unwrap())
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
