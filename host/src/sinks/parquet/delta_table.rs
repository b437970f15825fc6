//! A Delta table as the sinks reach it: where it lives (a folder, or a bucket through weir's
//! own S3 client), created on first use, and commits made at most once per writer and
//! version (the `txn` action). A commit is one conditional put of the log's next entry
//! (`If-None-Match: *` on S3), so the writers of one table need no lock.

use std::sync::{Arc, Once};

use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{Action, StructField, Transaction};
use deltalake_core::logstore::object_store::ObjectStore;
use deltalake_core::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::sinks::now_ms;
use crate::storage::Storage;

/// Commit attempts when other writers of the table commit at the same time.
const COMMIT_RETRIES: usize = 100;

/// Where a Delta table lives, and the store delta-rs reaches it through.
#[derive(Clone)]
pub struct TableLocation {
    url: Url,
    /// The bucket's store (weir's own S3 client) for a table on S3; delta-rs's file store
    /// for a folder otherwise.
    bucket: Option<Arc<dyn ObjectStore>>,
}

impl TableLocation {
    /// The table at `path` (a folder, `file://` or `s3://` URL), opened as `storage`.
    pub fn new(storage: &Storage, path: &str) -> Result<Self, String> {
        if let Some((store, url)) = storage.bucket() {
            return Ok(TableLocation {
                url,
                bucket: Some(store),
            });
        }
        let url = if path.contains("://") {
            Url::parse(path).map_err(|e| format!("{path}: {e}"))?
        } else {
            let absolute = std::path::absolute(path).map_err(|e| format!("{path}: {e}"))?;
            Url::from_directory_path(&absolute)
                .map_err(|()| format!("{path}: not a folder path"))?
        };
        Ok(TableLocation { url, bucket: None })
    }

    /// The table in folder `name` under this one.
    pub fn child(&self, name: &str) -> Result<Self, String> {
        let mut base = self.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(TableLocation {
            url: base
                .join(&format!("{name}/"))
                .map_err(|e| format!("{name}: {e}"))?,
            bucket: self.bucket.clone(),
        })
    }

    /// The table, its log not read yet (its folder made, for a local one).
    pub fn table(&self) -> DeltaResult<DeltaTable> {
        let builder = DeltaTableBuilder::from_url(self.url.clone())?;
        match &self.bucket {
            Some(store) => {
                use_conditional_puts_on_s3();
                builder
                    .with_storage_backend(store.clone(), self.url.clone())
                    .build()
            }
            None => {
                // delta-rs opens a folder only if it exists, even to create a table in it.
                if let Ok(folder) = self.url.to_file_path() {
                    std::fs::create_dir_all(&folder).map_err(|e| {
                        DeltaTableError::Generic(format!("creating {}: {e}", folder.display()))
                    })?;
                }
                builder.build()
            }
        }
    }
}

/// Makes delta-rs commit to `s3://` tables with its default log store: each commit is a put
/// of the log's next entry that fails if the entry exists (`If-None-Match: *`, honoured by S3
/// since 2024), so no DynamoDB lock (`deltalake-aws`) is needed.
fn use_conditional_puts_on_s3() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            logstore_factories().insert(scheme, Arc::new(ConditionalPutLogStore));
        }
    });
}

/// delta-rs's default log store, for a scheme it has no factory of its own for.
struct ConditionalPutLogStore;

impl LogStoreFactory for ConditionalPutLogStore {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// A Delta table a writer appends to, created with its columns on first use.
pub struct Table {
    location: TableLocation,
    columns: Vec<StructField>,
    partition_by: Vec<String>,
    loaded: Option<DeltaTable>,
}

impl Table {
    /// The table at `location`, with `columns`, partitioned by `partition_by`.
    pub fn new(location: TableLocation, columns: Vec<StructField>, partition_by: &[&str]) -> Self {
        Table {
            location,
            columns,
            partition_by: partition_by.iter().map(|c| c.to_string()).collect(),
            loaded: None,
        }
    }

    /// The table at its latest version, created if it does not exist yet.
    async fn latest(&mut self) -> Result<&DeltaTable, DeltaTableError> {
        let mut table = match self.loaded.take() {
            Some(table) => table,
            None => self.location.table()?,
        };
        match table.load().await {
            Ok(()) => {}
            Err(DeltaTableError::NotATable(_)) => {
                // Another writer may create it at the same time: either creation wins.
                let created = table
                    .create()
                    .with_columns(self.columns.clone())
                    .with_partition_columns(self.partition_by.clone())
                    .with_save_mode(SaveMode::Ignore)
                    .await;
                table = match created {
                    Ok(table) => table,
                    Err(_) => {
                        let mut again = self.location.table()?;
                        again.load().await?;
                        again
                    }
                };
            }
            Err(e) => return Err(e),
        }
        Ok(self.loaded.insert(table))
    }

    /// The newest version `app_id` committed, at the table's latest version.
    pub async fn transaction_version(
        &mut self,
        app_id: &str,
    ) -> Result<Option<i64>, DeltaTableError> {
        let table = self.latest().await?;
        table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), app_id)
            .await
    }

    /// Appends `actions` as `app_id`'s commit `version` if `app_id`'s newest commit is still
    /// `expected` and no other commit lands first (no retry on top of another writer's); an
    /// error otherwise, for the caller to read the table again and try again.
    pub async fn commit_after(
        &mut self,
        app_id: &str,
        expected: Option<i64>,
        version: i64,
        actions: Vec<Action>,
    ) -> Result<u64, DeltaTableError> {
        let table = self.latest().await?;
        let done = table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), app_id)
            .await?;
        if done != expected {
            return Err(DeltaTableError::Generic(format!(
                "{app_id} committed {done:?} meanwhile, not {expected:?}"
            )));
        }
        append(table, app_id, version, actions, None, 0).await
    }

    /// Appends `actions` as `app_id`'s commit `version`, unless the table holds that version
    /// or a later one. Returns the table version committed, if any.
    pub async fn commit_once(
        &mut self,
        app_id: &str,
        version: i64,
        actions: Vec<Action>,
    ) -> Result<Option<u64>, DeltaTableError> {
        let partition_by = (!self.partition_by.is_empty()).then(|| self.partition_by.clone());
        let table = self.latest().await?;
        if table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), app_id)
            .await?
            .is_some_and(|done| done >= version)
        {
            return Ok(None);
        }
        let committed = append(
            table,
            app_id,
            version,
            actions,
            partition_by,
            COMMIT_RETRIES,
        );
        Ok(Some(committed.await?))
    }
}

/// Appends `actions` to `table`'s loaded version as `app_id`'s commit `version`, trying again
/// on top of other writers' commits up to `retries` times. Returns the table version committed.
async fn append(
    table: &DeltaTable,
    app_id: &str,
    version: i64,
    mut actions: Vec<Action>,
    partition_by: Option<Vec<String>>,
    retries: usize,
) -> Result<u64, DeltaTableError> {
    actions.push(Action::Txn(Transaction {
        app_id: app_id.to_string(),
        version,
        last_updated: Some(now_ms()),
    }));
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by,
        predicate: None,
    };
    let committed = CommitBuilder::default()
        .with_actions(actions)
        .with_max_retries(retries)
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    Ok(committed.version())
}
