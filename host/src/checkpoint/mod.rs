//! Checkpoints: the settings, what one partition's checkpoint holds, and where it is kept. An
//! epoch's checkpoint is written before its offsets commit and is named in the committed
//! offset's metadata, so recovery loads exactly the state that matches the committed offset.

mod chain;
pub mod protocol;
mod store;

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use chain::{CheckpointChain, SLICES};
pub use store::CheckpointStore;

pub use crate::storage::S3Options;
use crate::units::HumanDuration;

/// `[checkpoint]`: how often, where, and with which delivery guarantee.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Time between epoch commits.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Where state snapshots go: a local folder, `file:///abs/path` or `s3://bucket/prefix`.
    #[serde(default = "default_store")]
    pub store: String,
    /// `exactly-once` (transactional producer) or `at-least-once` (idempotent producer).
    #[serde(default)]
    pub delivery: Delivery,
    /// Timeout of one transactional call (begin, send offsets, commit).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Settings of an `s3://` store; credentials come from the environment (`AWS_*`).
    #[serde(default)]
    pub s3: S3Options,
    /// Whether a checkpoint may hold only the changes since the previous one (`false`: a
    /// full snapshot every time).
    #[serde(default = "default_incremental")]
    pub incremental: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: default_interval(),
            store: default_store(),
            delivery: Delivery::default(),
            timeout: default_timeout(),
            s3: S3Options::default(),
            incremental: default_incremental(),
        }
    }
}

fn default_incremental() -> bool {
    true
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_store() -> String {
    "checkpoints".into()
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl CheckpointConfig {
    /// Checks the values; errors are `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.interval.0 < Duration::from_millis(100) {
            return Err(("interval".into(), "must be at least 100ms".into()));
        }
        crate::storage::validate_location(&self.store).map_err(|e| ("store".into(), e))?;
        Ok(())
    }
}

/// The delivery guarantee of a Kafka pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Outputs and offsets commit in one transaction per epoch.
    #[default]
    ExactlyOnce,
    /// Idempotent producer; offsets commit after outputs are acknowledged (replays after a
    /// crash may repeat Kafka outputs; staged files stay exactly-once).
    AtLeastOnce,
}

/// Errors reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store failed.
    #[error("checkpoint store {store}: {reason}")]
    Store {
        /// The store's URL or folder.
        store: String,
        /// What failed.
        reason: String,
    },
    /// A checkpoint does not encode: the epoch stops rather than store something unreadable.
    #[error("checkpoint {key} does not encode: {reason}")]
    Encode {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A checkpoint does not decode.
    #[error("checkpoint {key} does not decode: {reason}")]
    Decode {
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The committed checkpoint, or one its state builds on, is not in the store.
    #[error("checkpoint {key}, which the committed state needs, is missing from the store")]
    Missing {
        /// Its key.
        key: String,
    },
}

/// `value` in postcard; a failure is an error naming `key`, never an empty checkpoint.
fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, CheckpointError> {
    postcard::to_allocvec(value).map_err(|e| CheckpointError::Encode {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Format version of [`PartitionCheckpoint`] (2: before incremental checkpoints, still read).
pub const CHECKPOINT_VERSION: u32 = 3;

/// One partition's checkpoint of one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    /// Format version.
    pub version: u32,
    /// The next offset to read: the offset committed with this checkpoint.
    pub offset: i64,
    /// Names (under the same partition prefix) of the earlier checkpoints this one's state
    /// builds on, oldest first. Empty: `state` is a full snapshot. Otherwise the first is a
    /// full snapshot and each later one, this one included, holds the changes since the one
    /// before it.
    pub base: Vec<String>,
    /// The partition's state (watermark, keyed state, timers): a full snapshot or changes.
    /// Shared, not copied, with the parts [`Self::encode_parts`] hands to the store.
    #[serde(with = "state_bytes")]
    pub state: Bytes,
    /// Each sink's commit record (by sink name): what publishes the epoch's staged output,
    /// redone on recovery, and what the sink carries into the next epoch.
    #[serde(with = "sink_records")]
    pub sinks: Vec<(String, Vec<u8>)>,
}

/// Format 2: a full snapshot in every checkpoint.
#[derive(Deserialize)]
struct CheckpointV2 {
    offset: i64,
    #[serde(with = "serde_bytes")]
    state: Vec<u8>,
    #[serde(with = "sink_records")]
    sinks: Vec<(String, Vec<u8>)>,
}

/// The state as a byte string (postcard: its length, then its bytes).
mod state_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::ByteBuf;

    pub fn serialize<S: Serializer>(state: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(state)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        Ok(ByteBuf::deserialize(deserializer)?.into_vec().into())
    }
}

/// The sinks' commit records as byte strings: postcard writes them as the sequences of `u8`
/// they were, but whole rather than one byte at a time.
mod sink_records {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(
        records: &[(String, Vec<u8>)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            records
                .iter()
                .map(|(sink, record)| (sink, Bytes::new(record))),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        let records = Vec::<(String, ByteBuf)>::deserialize(deserializer)?;
        Ok(records
            .into_iter()
            .map(|(sink, record)| (sink, record.into_vec()))
            .collect())
    }
}

/// The fields before the state, and its length: the first part of an encoded checkpoint.
#[derive(Serialize)]
struct Head<'a> {
    version: u32,
    offset: i64,
    base: &'a [String],
    state_len: usize,
}

/// The fields after the state: the last part of an encoded checkpoint.
#[derive(Serialize)]
struct Tail<'a>(#[serde(with = "sink_records")] &'a [(String, Vec<u8>)]);

impl PartitionCheckpoint {
    /// Encodes with postcard, as the parts of one object: the fields before the state, the
    /// state itself (shared, not copied: a full snapshot is megabytes) and the sinks' records.
    /// Written in order, they are the bytes of [`Self::encode`].
    pub fn encode_parts(&self, key: &str) -> Result<[Bytes; 3], CheckpointError> {
        let head = Head {
            version: self.version,
            offset: self.offset,
            base: &self.base,
            state_len: self.state.len(),
        };
        Ok([
            encode(key, &head)?.into(),
            self.state.clone(),
            encode(key, &Tail(&self.sinks))?.into(),
        ])
    }

    /// Encodes with postcard, in one buffer (weir writes [`Self::encode_parts`]; tests read
    /// the joined bytes).
    #[cfg(test)]
    pub fn encode(&self, key: &str) -> Result<Vec<u8>, CheckpointError> {
        Ok(self.encode_parts(key)?.concat())
    }

    /// Decodes, checking the version (format 2 reads as a full snapshot).
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, CheckpointError> {
        let error = |reason: String| CheckpointError::Decode {
            key: key.to_string(),
            reason,
        };
        let (version, rest) =
            postcard::take_from_bytes::<u32>(bytes).map_err(|e| error(e.to_string()))?;
        match version {
            CHECKPOINT_VERSION => postcard::from_bytes(bytes).map_err(|e| error(e.to_string())),
            2 => {
                let old: CheckpointV2 =
                    postcard::from_bytes(rest).map_err(|e| error(e.to_string()))?;
                Ok(PartitionCheckpoint {
                    version,
                    offset: old.offset,
                    base: Vec::new(),
                    state: old.state.into(),
                    sinks: old.sinks,
                })
            }
            other => Err(error(format!(
                "format version {other}, this build reads {CHECKPOINT_VERSION} and 2"
            ))),
        }
    }
}

/// Replaces characters that are not safe in a file or object name.
pub fn safe_name(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The folder of one partition's checkpoints: `<group>/<topic>/<partition>`.
pub fn partition_prefix(group: &str, topic: &str, partition: i32) -> String {
    format!("{}/{}/{partition}", safe_name(group), safe_name(topic))
}

/// The name of a checkpoint under its partition's prefix: `<offset, 20 digits>-<epoch id>.ckpt`.
/// Epoch ids sort in the order they were made, so names sort by offset, then by epoch.
pub fn checkpoint_name(offset: i64, epoch: &str) -> String {
    format!("{offset:020}-{epoch}.ckpt")
}

/// The offset in a checkpoint key; `None` for other objects.
pub fn offset_of(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    if !name.ends_with(".ckpt") {
        return None;
    }
    name.get(..20)?.parse().ok()
}

/// The object under a partition's prefix that names its last committed checkpoint. Written
/// after each commit; recovery uses it when the broker does not keep offset metadata.
pub const COMMITTED_MARKER: &str = "committed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_that_does_not_encode_is_an_error_naming_it() {
        struct Unencodable;
        impl Serialize for Unencodable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("a state value refused"))
            }
        }
        let error = encode("g/clicks/0/7", &Unencodable).unwrap_err();
        assert!(
            matches!(&error, CheckpointError::Encode { key, .. } if key == "g/clicks/0/7"),
            "{error}"
        );
        assert!(error.to_string().contains("does not encode"), "{error}");
    }

    /// Byte strings are written whole, in the bytes the sequences of `u8` they replaced had:
    /// a checkpoint reads back through the old layout and writes the same bytes from it.
    #[test]
    fn the_byte_fields_keep_the_layout_of_sequences_of_bytes() {
        #[derive(Serialize, Deserialize)]
        struct Sequences {
            version: u32,
            offset: i64,
            base: Vec<String>,
            state: Vec<u8>,
            sinks: Vec<(String, Vec<u8>)>,
        }
        let checkpoint = PartitionCheckpoint {
            version: CHECKPOINT_VERSION,
            offset: 7,
            base: vec!["a.ckpt".into()],
            state: (0..=255).collect(),
            sinks: vec![("lake".into(), vec![9; 300]), ("kv".into(), Vec::new())],
        };
        let bytes = checkpoint.encode("k").unwrap();
        let old: Sequences = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(old.state, checkpoint.state);
        assert_eq!(old.sinks, checkpoint.sinks);
        let old = Sequences {
            version: old.version,
            offset: old.offset,
            base: old.base,
            state: (0..=255).collect(),
            sinks: vec![("lake".into(), vec![9; 300]), ("kv".into(), Vec::new())],
        };
        assert_eq!(postcard::to_allocvec(&old).unwrap(), bytes);
    }

    #[test]
    fn checkpoints_round_trip_and_keys_sort_by_offset() {
        let checkpoint = PartitionCheckpoint {
            version: CHECKPOINT_VERSION,
            offset: 42,
            base: vec!["a.ckpt".into()],
            state: vec![1, 2, 3].into(),
            sinks: vec![("lake".into(), vec![4, 5])],
        };
        let back = PartitionCheckpoint::decode("k", &checkpoint.encode("k").unwrap()).unwrap();
        assert_eq!(back.offset, 42);
        assert_eq!(back.base, checkpoint.base);
        assert_eq!(back.sinks, checkpoint.sinks);
        assert!(PartitionCheckpoint::decode("k", b"\x07").is_err());
        // Format 2 (no base) reads as a full snapshot.
        let v2 =
            postcard::to_allocvec(&(2u32, 7i64, vec![9u8], vec![("lake", vec![1u8])])).unwrap();
        let old = PartitionCheckpoint::decode("k", &v2).unwrap();
        assert_eq!(
            (old.offset, old.base.len(), &old.state[..]),
            (7, 0, &[9][..])
        );
        let prefix = partition_prefix("my group", "clicks", 3);
        assert_eq!(prefix, "my_group/clicks/3");
        assert!(checkpoint_name(9, "e") < checkpoint_name(10, "e"));
        assert_eq!(
            offset_of(&format!("{prefix}/{}", checkpoint_name(10, "e"))),
            Some(10)
        );
        assert_eq!(offset_of("my_group/clicks/3/committed"), None);
    }
}
