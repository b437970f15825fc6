//! Where checkpoints are kept: a [`Storage`] (a local folder by default, or any S3-compatible
//! bucket) with the checkpoint module's errors.

use bytes::Bytes;
use object_store::PutPayload;

use super::{CheckpointConfig, CheckpointError};
use crate::storage::{Storage, StorageError};

/// A checkpoint store.
pub struct CheckpointStore {
    storage: Storage,
}

impl From<StorageError> for CheckpointError {
    fn from(e: StorageError) -> Self {
        CheckpointError::Store {
            store: e.store,
            reason: if e.key.is_empty() {
                e.reason
            } else {
                format!("{}: {}", e.key, e.reason)
            },
        }
    }
}

impl CheckpointStore {
    /// Opens the store the config names (creating a local folder if needed).
    pub fn open(config: &CheckpointConfig) -> Result<Self, CheckpointError> {
        Ok(CheckpointStore {
            storage: Storage::open(&config.store, &config.s3)?,
        })
    }

    /// A store in memory, for unit tests of the checkpoint protocol.
    #[cfg(test)]
    pub fn in_memory() -> Self {
        CheckpointStore {
            storage: Storage::in_memory(),
        }
    }

    /// Writes an object (atomically: readers see all of it or nothing), given whole or in
    /// parts.
    pub fn put(&self, key: &str, payload: impl Into<PutPayload>) -> Result<(), CheckpointError> {
        Ok(self.storage.put(key, payload)?)
    }

    /// Reads an object; `None` when it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, CheckpointError> {
        Ok(self.storage.get(key)?)
    }

    /// Deletes an object; a missing one counts as deleted.
    pub fn delete(&self, key: &str) -> Result<(), CheckpointError> {
        Ok(self.storage.delete(key)?)
    }

    /// Keys of the objects directly under `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, CheckpointError> {
        Ok(self.storage.list(prefix)?)
    }

    /// The store's URL or folder, for logs.
    pub fn description(&self) -> &str {
        self.storage.description()
    }
}
