//! A partition's state as bytes: every stage's keyed state and timers plus the watermark (a
//! full snapshot), or only what changed since the previous checkpoint (changes), so the
//! checkpointer can persist it and a restarted or rebalanced partition can resume.

use serde::{Deserialize, Serialize};

use super::StageState;
use super::slice::Slice;
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
    /// A checkpoint chain with no full snapshot whose slices of a rolling snapshot are not
    /// the whole state.
    #[error("the checkpoint chain has no full snapshot, and its {0} are not the whole state")]
    Incomplete(String),
    /// The snapshot was written by an incompatible version.
    #[error("state snapshot has format version {0}, this build reads {1}")]
    Version(u32, u32),
}

/// The current format version. Version 2 added each entry's touch time (for state
/// lifetimes); version 1 still decodes, its entries touched at the snapshot's watermark.
pub const SNAPSHOT_VERSION: u32 = 2;

/// The current format version of changes. Version 3 added a slice of a rolling snapshot;
/// versions 2 and 1 still decode.
pub const CHANGES_VERSION: u32 = 3;

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

/// Changes of format 2.
#[derive(Deserialize)]
struct ChangesV2 {
    _version: u32,
    watermark: i64,
    stages: Vec<(String, StageChanges)>,
}

/// Changes of format 3.
#[derive(Deserialize)]
struct ChangesV3 {
    _version: u32,
    watermark: i64,
    slice: Option<Slice>,
    stages: Vec<(String, StageChanges, StageState)>,
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

/// What changed in a partition's state since the previous checkpoint, and perhaps one slice
/// of a rolling snapshot, decoded: applied in order on top of a full snapshot, or of nothing
/// once the slices of the changes applied cover the whole, the changes of each later
/// checkpoint give its state.
#[derive(Debug, Default)]
pub struct PartitionChanges {
    /// The partition's watermark.
    pub watermark: i64,
    /// The slice of a rolling snapshot the changes carry, if any.
    pub slice: Option<Slice>,
    /// Each stage's changes, and its entries and timers in `slice` (none without one), by
    /// stage name.
    pub stages: Vec<(String, StageChanges, StageState)>,
}

impl PartitionChanges {
    /// Encodes the watermark and each stage's changes since its last
    /// [`StageState::clear_changes`], and its entries and timers in `slice`, into a buffer of
    /// `reserve` bytes to begin with. Returns the bytes and how many of them the slice takes.
    pub fn encode(
        watermark: i64,
        stages: &[(&str, &StageState)],
        slice: Option<Slice>,
        reserve: usize,
    ) -> Result<(Vec<u8>, usize), SnapshotError> {
        let mut buf = Vec::with_capacity(reserve);
        let mut slice_bytes = 0;
        // Postcard's layout of a `ChangesV3`, with each stage's log copied in whole.
        let mut encode = |buf: &mut Vec<u8>| -> postcard::Result<()> {
            let head = (CHANGES_VERSION, watermark, slice, stages.len());
            weir_sdk::abi::append_postcard(&head, buf)?;
            for (name, state) in stages {
                weir_sdk::abi::append_postcard(name, buf)?;
                state.changes().encode_into(buf)?;
                let before = buf.len();
                match slice {
                    Some(slice) => state.slice(slice).encode_into(buf)?,
                    None => {
                        weir_sdk::abi::append_postcard(&StageState::default(), buf).map(drop)?
                    }
                }
                slice_bytes += buf.len() - before;
            }
            Ok(())
        };
        encode(&mut buf).map_err(SnapshotError::Encode)?;
        Ok((buf, slice_bytes))
    }

    /// Decodes changes.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let without_slice = |watermark, stages: Vec<(String, StageChanges)>| PartitionChanges {
            watermark,
            slice: None,
            stages: stages
                .into_iter()
                .map(|(name, changes)| (name, changes, StageState::default()))
                .collect(),
        };
        match split_version(bytes)? {
            (1, rest) => {
                let old: ChangesV1 = postcard::from_bytes(rest).map_err(SnapshotError::Decode)?;
                let touched = old.watermark.max(0);
                let stages = old.stages.into_iter();
                let stages = stages.map(|(name, changes)| (name, changes.upgrade(touched)));
                Ok(without_slice(old.watermark, stages.collect()))
            }
            (2, _) => {
                let old: ChangesV2 = postcard::from_bytes(bytes).map_err(SnapshotError::Decode)?;
                Ok(without_slice(old.watermark, old.stages))
            }
            (CHANGES_VERSION, _) => {
                let changes: ChangesV3 =
                    postcard::from_bytes(bytes).map_err(SnapshotError::Decode)?;
                Ok(PartitionChanges {
                    watermark: changes.watermark,
                    slice: changes.slice,
                    stages: changes.stages,
                })
            }
            (other, _) => Err(SnapshotError::Version(other, CHANGES_VERSION)),
        }
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
            slice: Option<(u32, u32)>,
            stages: Vec<(
                String,
                Vec<(Vec<u8>, Option<(i64, Vec<u8>)>)>,
                Vec<(i64, Vec<u8>, bool)>,
                HashMap<Vec<u8>, (i64, Vec<u8>)>,
                Vec<(i64, Vec<u8>)>,
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
        stage.set_timer(b"u2", 43);
        let slice = Slice { index: 0, count: 1 };
        let (changes, _) = PartitionChanges::encode(10, &[("s", &stage)], Some(slice), 0).unwrap();
        let old: Changes = postcard::from_bytes(&changes).unwrap();
        assert_eq!(old.slice, Some((0, 1)));
        assert_eq!(old.stages[0].3.len(), 1, "the whole state is one slice");
        assert_eq!(old.stages[0].4, vec![(43, b"u2".to_vec())]);
        let (entries, timers) = (&old.stages[0].1, &old.stages[0].2);
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().any(|(_, v)| v.is_none()));
        assert!(
            entries
                .iter()
                .any(|(_, v)| v.as_ref().is_some_and(|v| v.1 == b"xyz"))
        );
        assert_eq!(
            timers,
            &vec![(42, b"u1".to_vec(), false), (43, b"u2".to_vec(), true)]
        );
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
        assert_eq!(changes.slice, None);
        for ((_, state), (_, delta, _)) in back.stages.iter_mut().zip(changes.stages) {
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
        let (bytes, _) = PartitionChanges::encode(8, &[("s", &stage)], None, 0).unwrap();
        let changes = PartitionChanges::decode(&bytes).unwrap();
        assert_eq!(changes.watermark, 8);
        let mut back = PartitionSnapshot::decode(&full).unwrap();
        for ((_, state), (_, delta, slice)) in back.stages.iter_mut().zip(changes.stages) {
            state.apply(delta);
            state.absorb(slice);
        }
        let (_, state) = &mut back.stages[0];
        assert_eq!(state.get(b"u1", "open"), Some(b"abc".to_vec()));
        assert_eq!(state.get(b"u2", "open"), Some(b"def".to_vec()));
        assert_eq!(state.next_timer(), Some(&(9, b"u2".to_vec())));
        assert!(PartitionChanges::decode(b"\x05").is_err());
    }
}
