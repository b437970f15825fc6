//! Compaction of a Delta table a sink writes: the small files of each `dt`/`hour` partition
//! are joined (their column chunks copied, not re-encoded) into files of about the target
//! size, committed as one Delta `OPTIMIZE` (the new files added, the old ones removed, no
//! data change) beside the pipeline's own commits; then files removed longer ago than the
//! retention are deleted (`VACUUM`).

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::time::Duration;

use deltalake_core::DeltaTableError;
use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{Action, Add};
use deltalake_core::protocol::DeltaOperation;

use futures::TryStreamExt;

use super::ParquetSinkConfig;
use super::compose::concat;
use super::delta_table::TableLocation;
use crate::sinks::now_ms;
use crate::storage::Storage;

/// What a compaction does.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// A partition is compacted once it has at least this many small files.
    pub min_files: usize,
    /// Files smaller than this are small; joined files grow to about this size.
    pub target_size: u64,
    /// Files removed longer ago than this are deleted; `None` keeps them.
    pub retention: Option<Duration>,
}

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Files in the table before and after.
    pub files_before: usize,
    pub files_after: usize,
    /// Partitions compacted.
    pub partitions: usize,
    /// The table version of the compaction's commit, if there was one.
    pub version: Option<i64>,
    /// Files deleted by the vacuum.
    pub vacuumed: usize,
}

/// A live file of the table.
struct LiveFile {
    path: String,
    size: u64,
    remove: deltalake_core::kernel::Remove,
}

/// Compacts the Delta table of a `type = "delta"` sink.
pub fn compact(
    config: &ParquetSinkConfig,
    options: CompactOptions,
) -> Result<CompactReport, String> {
    let storage = Storage::open(&config.path, &config.s3).map_err(|e| e.to_string())?;
    let runtime = crate::storage::io_runtime();
    let delta = |e: DeltaTableError| e.to_string();
    let mut table = TableLocation::new(&storage, &config.path)?
        .table()
        .map_err(delta)?;
    runtime.block_on(table.load()).map_err(delta)?;
    let snapshot = table.snapshot().map_err(delta)?.clone();
    let log_store = table.log_store();
    let views: Vec<_> = runtime
        .block_on(
            snapshot
                .snapshot()
                .file_views(log_store.as_ref(), None)
                .try_collect(),
        )
        .map_err(delta)?;
    let mut report = CompactReport {
        files_before: views.len(),
        ..CompactReport::default()
    };
    let mut by_partition: BTreeMap<String, Vec<LiveFile>> = BTreeMap::new();
    for view in &views {
        let size = u64::try_from(view.size()).unwrap_or(0);
        if size >= options.target_size {
            continue;
        }
        let folder = view.path().rsplit_once('/').map(|(f, _)| f.to_string());
        by_partition
            .entry(folder.unwrap_or_default())
            .or_default()
            .push(LiveFile {
                path: view.path().to_string(),
                size,
                remove: view.remove_action(false),
            });
    }
    let mut actions = Vec::new();
    for (folder, files) in &by_partition {
        if files.len() < options.min_files.max(2) {
            continue;
        }
        report.partitions += 1;
        for group in groups_up_to(files, options.target_size) {
            if group.len() > 1 {
                actions.extend(join(&storage, folder, &group)?);
            }
        }
    }
    let removed = actions
        .iter()
        .filter(|a| matches!(a, Action::Remove(_)))
        .count();
    report.files_after = report.files_before - removed + (actions.len() - removed);
    if !actions.is_empty() {
        let operation = DeltaOperation::Optimize {
            predicate: None,
            target_size: i64::try_from(options.target_size).unwrap_or(i64::MAX),
        };
        let committed = runtime
            .block_on(
                CommitBuilder::default()
                    .with_actions(actions)
                    .with_max_retries(100)
                    .build(Some(&snapshot), log_store.clone(), operation)
                    .into_future(),
            )
            .map_err(delta)?;
        report.version = i64::try_from(committed.version()).ok();
    }
    if let Some(retention) = options.retention {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let (_, metrics) = runtime
            .block_on(async {
                let mut table = table;
                table.load().await?;
                table
                    .vacuum()
                    .with_retention_period(retention)
                    .with_enforce_retention_duration(false)
                    .await
            })
            .map_err(delta)?;
        report.vacuumed = metrics.files_deleted.len();
    }
    Ok(report)
}

/// Joins `group` (files of `folder`) into one new file; returns its add action and the
/// old files' removes.
fn join(storage: &Storage, folder: &str, group: &[&LiveFile]) -> Result<Vec<Action>, String> {
    let mut parts = Vec::with_capacity(group.len());
    for file in group {
        let bytes = storage
            .get(&file.path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} is missing", file.path))?;
        parts.push(bytes);
    }
    let joined = concat(&parts).map_err(|e| e.to_string())?;
    let key = format!(
        "{folder}/compacted-{}-{:08x}.zstd.parquet",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3f"),
        rand::random::<u32>()
    );
    let size = i64::try_from(joined.len()).unwrap_or(i64::MAX);
    storage
        .put(&key, bytes::Bytes::from(joined))
        .map_err(|e| e.to_string())?;
    let add = Add {
        path: key,
        size,
        partition_values: group[0].remove.partition_values.clone().unwrap_or_default(),
        modification_time: now_ms(),
        data_change: false,
        ..Add::default()
    };
    let mut actions = vec![Action::Add(add)];
    actions.extend(group.iter().map(|f| Action::Remove(f.remove.clone())));
    Ok(actions)
}

/// `files` in order, cut into groups of at most `target` bytes (a file alone may be more).
fn groups_up_to(files: &[LiveFile], target: u64) -> Vec<Vec<&LiveFile>> {
    let mut groups: Vec<Vec<&LiveFile>> = Vec::new();
    let mut size = 0;
    for file in files {
        match groups.last_mut() {
            Some(group) if size + file.size <= target => group.push(file),
            _ => {
                groups.push(vec![file]);
                size = 0;
            }
        }
        size += file.size;
    }
    groups
}
