//! The epoch protocol's decisions over the checkpoint store, as plain functions: which
//! checkpoint of a partition is committed, what a restore redoes (a full snapshot and the
//! changes on top of it), and what is deleted after an aborted epoch or a new full snapshot.
//! The coordinator calls them; they know nothing of Kafka. Checkpoints are written and read
//! here too.

use bytes::Bytes;
use object_store::PutPayload;

use super::{
    COMMITTED_MARKER, CheckpointChain, CheckpointError, CheckpointStore, PartitionCheckpoint,
    offset_of,
};

/// Prefix of the offset-commit metadata that names the epoch's checkpoint.
pub const METADATA_PREFIX: &str = "weir:";

/// The offset-commit metadata naming the checkpoint `name`.
pub fn offset_metadata(name: &str) -> String {
    format!("{METADATA_PREFIX}{name}")
}

/// The committed checkpoint of the partition under `prefix`, whose checkpoints are `stored`.
/// The offset's metadata names it when the broker keeps metadata (Apache Kafka does).
/// Otherwise the committed marker names it: weir writes the marker right after each commit,
/// before publishing anything, and the broker's offset is not trusted, because a broker that
/// drops metadata may also apply offsets late or from aborted transactions. Without a marker,
/// the checkpoint at the broker's offset, if any. The marker lags only when the process died
/// between the commit and writing it: that epoch is then redone, so the lake and state stay
/// exactly-once and its Kafka outputs may repeat (with the same provenance headers).
pub fn committed_checkpoint(
    store: &CheckpointStore,
    prefix: &str,
    stored: &[String],
    broker_offset: Option<i64>,
    metadata: &str,
) -> Result<Option<String>, CheckpointError> {
    if let Some(name) = metadata.strip_prefix(METADATA_PREFIX) {
        return Ok(Some(format!("{prefix}/{name}")));
    }
    let marker = store
        .get(&marker_key(prefix))?
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
    if marker.is_some() {
        return Ok(marker);
    }
    Ok(broker_offset.and_then(|offset| {
        stored
            .iter()
            .find(|key| offset_of(key) == Some(offset))
            .cloned()
    }))
}

/// Records that `chain` committed (see [`committed_checkpoint`]).
pub fn mark_committed(
    store: &CheckpointStore,
    prefix: &str,
    chain: &CheckpointChain,
) -> Result<(), CheckpointError> {
    store.put(&marker_key(prefix), chain.key().into_bytes())
}

fn marker_key(prefix: &str) -> String {
    format!("{prefix}/{COMMITTED_MARKER}")
}

/// Reads and decodes the checkpoint `key`; a missing one is an error.
pub fn load(store: &CheckpointStore, key: &str) -> Result<PartitionCheckpoint, CheckpointError> {
    let bytes = store.get(key)?.ok_or_else(|| CheckpointError::Missing {
        key: key.to_string(),
    })?;
    PartitionCheckpoint::decode(key, &bytes)
}

/// Writes the checkpoint `key` as one object from its parts: the state is not copied.
pub fn save(
    store: &CheckpointStore,
    key: &str,
    checkpoint: &PartitionCheckpoint,
) -> Result<(), CheckpointError> {
    let parts = checkpoint.encode_parts(key)?;
    store.put(key, PutPayload::from_iter(parts))
}

/// What a restore redoes: the full snapshot a committed checkpoint's state starts from (none:
/// it starts empty, and the changes' slices of a rolling snapshot make up the whole), the
/// changes to apply on top of it in order, and the committed checkpoint itself.
#[derive(Debug)]
pub struct Restore {
    /// The committed checkpoint (its offset and its sinks' commit records).
    pub checkpoint: PartitionCheckpoint,
    /// The full snapshot, if the chain starts with one.
    pub snapshot: Option<Bytes>,
    /// The changes, oldest first (the committed checkpoint's last).
    pub changes: Vec<Bytes>,
    /// The chain, marked restored: the next checkpoint is a full snapshot.
    pub chain: CheckpointChain,
}

/// Loads the committed checkpoint `key` under `prefix` and the chain its state builds on.
/// The chain's first checkpoint is a full snapshot when it builds on nothing itself.
pub fn restore_plan(
    store: &CheckpointStore,
    prefix: &str,
    key: &str,
) -> Result<Restore, CheckpointError> {
    let mut checkpoint = load(store, key)?;
    let mut states = checkpoint
        .base
        .iter()
        .map(|name| load(store, &format!("{prefix}/{name}")))
        .collect::<Result<Vec<_>, CheckpointError>>()?;
    let committed = std::mem::take(&mut checkpoint.state);
    let snapshot = match states.first() {
        None => Some(committed.clone()),
        Some(first) if first.base.is_empty() => Some(states.remove(0).state),
        Some(_) => None,
    };
    let mut changes: Vec<Bytes> = states.into_iter().map(|c| c.state).collect();
    if !checkpoint.base.is_empty() {
        changes.push(committed);
    }
    let name = key.rsplit('/').next().unwrap_or(key).to_string();
    let chain = CheckpointChain::new(prefix, checkpoint.base.clone(), name).restored();
    Ok(Restore {
        checkpoint,
        snapshot,
        changes,
        chain,
    })
}

/// The checkpoints among `stored` that no committed state needs: those of epochs that never
/// committed (an aborted epoch's, or a crashed one's). Objects that are not checkpoints (the
/// marker) stay. Whoever restores deletes them only after its own next commit: until then it
/// may be an instance the group has dropped, and one of them its successor's epoch in
/// flight.
pub fn uncommitted<'a>(
    stored: &'a [String],
    committed: Option<&CheckpointChain>,
) -> impl Iterator<Item = &'a String> {
    stored.iter().filter(move |key| {
        offset_of(key).is_some() && !committed.is_some_and(|chain| chain.contains(key))
    })
}

/// The checkpoints of the `old` chain that the newly committed `new` one no longer builds on
/// (all of them after a full snapshot, none after changes on top of `old`).
pub fn superseded(old: Option<&CheckpointChain>, new: &CheckpointChain) -> Vec<String> {
    old.iter()
        .flat_map(|chain| chain.keys())
        .filter(|key| !new.contains(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{CHECKPOINT_VERSION, checkpoint_name};
    use super::*;

    const PREFIX: &str = "g/clicks/0";

    /// Writes a checkpoint at `offset` with `state`, on top of `base` (names), and returns
    /// its chain.
    fn write(
        store: &CheckpointStore,
        offset: i64,
        base: &[&CheckpointChain],
        state: &[u8],
    ) -> CheckpointChain {
        let name = checkpoint_name(offset, &format!("e{offset}"));
        let chain = match base.first() {
            Some(below) => below.extended(name, state.len(), None),
            None => CheckpointChain::new(PREFIX, Vec::new(), name),
        };
        let checkpoint = PartitionCheckpoint {
            version: CHECKPOINT_VERSION,
            offset,
            base: chain.base(),
            state: Bytes::copy_from_slice(state),
            sinks: vec![("lake".into(), offset.to_le_bytes().to_vec())],
        };
        save(store, &chain.key(), &checkpoint).unwrap();
        chain
    }

    fn name_of(chain: &CheckpointChain) -> String {
        chain.key().rsplit('/').next().unwrap().to_string()
    }

    #[test]
    fn the_offset_metadata_names_the_committed_checkpoint_before_the_marker() {
        let store = CheckpointStore::in_memory();
        let first = write(&store, 10, &[], b"s");
        let second = write(&store, 20, &[], b"s");
        mark_committed(&store, PREFIX, &first).unwrap();
        let stored = store.list(PREFIX).unwrap();
        let metadata = offset_metadata(&name_of(&second));
        let by_metadata =
            committed_checkpoint(&store, PREFIX, &stored, Some(20), &metadata).unwrap();
        assert_eq!(by_metadata, Some(second.key()));
        // A broker without metadata: the marker, even where the broker's offset says more.
        let by_marker = committed_checkpoint(&store, PREFIX, &stored, Some(20), "").unwrap();
        assert_eq!(by_marker, Some(first.key()));
    }

    #[test]
    fn without_metadata_or_marker_the_checkpoint_at_the_broker_offset_is_committed() {
        let store = CheckpointStore::in_memory();
        let at_ten = write(&store, 10, &[], b"s");
        write(&store, 20, &[], b"s");
        let stored = store.list(PREFIX).unwrap();
        let found = committed_checkpoint(&store, PREFIX, &stored, Some(10), "").unwrap();
        assert_eq!(found, Some(at_ten.key()));
        let none = committed_checkpoint(&store, PREFIX, &stored, Some(15), "").unwrap();
        assert_eq!(none, None, "no checkpoint at offset 15");
        assert_eq!(
            committed_checkpoint(&store, PREFIX, &stored, None, "").unwrap(),
            None
        );
    }

    #[test]
    fn a_restore_redoes_the_full_snapshot_then_each_change_in_order() {
        let store = CheckpointStore::in_memory();
        let full = write(&store, 10, &[], b"full");
        let one = write(&store, 20, &[&full], b"one");
        let two = write(&store, 30, &[&one], b"two");
        let plan = restore_plan(&store, PREFIX, &two.key()).unwrap();
        assert_eq!(plan.snapshot.as_deref(), Some(&b"full"[..]));
        assert_eq!(plan.changes, [&b"one"[..], &b"two"[..]]);
        assert_eq!(plan.checkpoint.offset, 30);
        assert_eq!(plan.checkpoint.sinks[0].1, 30i64.to_le_bytes());
        assert_eq!(plan.chain.key(), two.key());
        assert_eq!(plan.chain.base(), two.base());
        assert!(plan.chain.full_due(), "restored: a full snapshot next");

        let alone = restore_plan(&store, PREFIX, &full.key()).unwrap();
        assert_eq!(
            (alone.snapshot.as_deref(), alone.changes.len()),
            (Some(&b"full"[..]), 0)
        );
    }

    #[test]
    fn a_chain_that_starts_with_changes_restores_from_nothing_and_a_missing_one_is_refused() {
        let store = CheckpointStore::in_memory();
        let full = write(&store, 10, &[], b"full");
        let one = write(&store, 20, &[&full], b"one");
        let two = write(&store, 30, &[&one], b"two");
        // A chain whose first checkpoint holds changes (and slices of a rolling snapshot).
        let rolled = PartitionCheckpoint {
            version: CHECKPOINT_VERSION,
            offset: 40,
            base: vec![name_of(&one)],
            state: Bytes::from_static(b"x"),
            sinks: Vec::new(),
        };
        let key = format!("{PREFIX}/{}", checkpoint_name(40, "rolled"));
        save(&store, &key, &rolled).unwrap();
        let plan = restore_plan(&store, PREFIX, &key).unwrap();
        assert_eq!(plan.snapshot, None);
        assert_eq!(plan.changes, [&b"one"[..], &b"x"[..]]);

        store.delete(&full.key()).unwrap();
        let error = restore_plan(&store, PREFIX, &two.key()).unwrap_err();
        assert!(
            matches!(&error, CheckpointError::Missing { key } if *key == full.key()),
            "{error}"
        );
    }

    #[test]
    fn an_aborted_epochs_checkpoints_are_deleted_and_the_committed_chain_kept() {
        let store = CheckpointStore::in_memory();
        let full = write(&store, 10, &[], b"full");
        let committed = write(&store, 20, &[&full], b"one");
        let aborted = write(&store, 30, &[&committed], b"two");
        let other_full = write(&store, 25, &[], b"lost");
        mark_committed(&store, PREFIX, &committed).unwrap();
        let stored = store.list(PREFIX).unwrap();
        let doomed: Vec<&String> = uncommitted(&stored, Some(&committed)).collect();
        assert_eq!(doomed, [&other_full.key(), &aborted.key()]);
        // Nothing committed yet: every checkpoint goes, the marker stays.
        let all: Vec<&String> = uncommitted(&stored, None).collect();
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|k| !k.ends_with(COMMITTED_MARKER)));
    }

    #[test]
    fn a_full_snapshot_or_a_whole_rolling_one_supersedes_the_old_chain_and_changes_do_not() {
        let store = CheckpointStore::in_memory();
        let full = write(&store, 10, &[], b"full");
        let one = write(&store, 20, &[&full], b"one");
        assert!(superseded(Some(&full), &one).is_empty());
        let mut rolled = one.clone();
        for index in 0..super::super::chain::SLICES {
            let slice = Some(crate::state::Slice {
                index,
                count: super::super::chain::SLICES,
            });
            rolled = rolled.extended(format!("s{index}"), 1, slice);
        }
        assert_eq!(superseded(Some(&one), &rolled), [full.key(), one.key()]);
        let next_full = write(&store, 30, &[], b"full again");
        assert_eq!(superseded(Some(&one), &next_full), [full.key(), one.key()]);
        assert!(superseded(None, &next_full).is_empty());
    }
}
