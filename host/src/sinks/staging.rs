//! Output staged by a checkpoint epoch and made visible only after the epoch commits: the
//! [`PostCommit`] steps a sink returns from [`super::Sink::prepare_commit`], recorded in the
//! partition's checkpoint and redone on recovery, so they must be idempotent.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SinkError, io_error};

/// Which partition's output a sink instance stages; it names the staging folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
}

impl Scope {
    /// `topic-partition`, safe as a file name.
    pub fn label(&self) -> String {
        format!(
            "{}-{}",
            crate::checkpoint::safe_name(&self.topic),
            self.partition
        )
    }

    /// The staging folder of this scope under a table's root.
    pub fn staging_dir(&self, root: &Path) -> PathBuf {
        root.join(STAGING_DIR).join(self.label())
    }
}

/// Folder under a table's root holding staged files; readers skip names starting with `_`.
pub const STAGING_DIR: &str = "_staging";

/// A step that makes committed output visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostCommit {
    /// Move a finished, synced file from its staging path to its final path.
    Publish {
        /// The staged file.
        from: PathBuf,
        /// Where readers see it.
        to: PathBuf,
    },
}

impl PostCommit {
    /// Carries out the step. Idempotent: a file already moved counts as done.
    pub fn apply(&self) -> Result<(), SinkError> {
        match self {
            PostCommit::Publish { from, to } => publish(from, to),
        }
    }
}

fn publish(from: &Path, to: &Path) -> Result<(), SinkError> {
    if !from.exists() {
        if to.exists() {
            return Ok(());
        }
        return Err(io_error(
            "staging",
            format!(
                "committed file {} is neither staged nor published",
                to.display()
            ),
        ));
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_error("staging", format!("creating {}: {e}", dir.display())))?;
    }
    std::fs::rename(from, to)
        .map_err(|e| io_error("staging", format!("publishing {}: {e}", to.display())))?;
    if let Some(dir) = to.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a rename durable (best effort: not every filesystem supports syncing folders).
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Deletes a scope's staging folder: whatever is still there belongs to epochs that never
/// committed (the committed epoch's files were published first).
pub fn discard(dir: &Path) -> Result<(), SinkError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(
            "staging",
            format!("discarding {}: {e}", dir.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_idempotent_and_reports_lost_files() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("_staging/t-0/a.parquet");
        std::fs::create_dir_all(from.parent().unwrap()).unwrap();
        std::fs::write(&from, b"x").unwrap();
        let step = PostCommit::Publish {
            from: from.clone(),
            to: dir.path().join("dt=1/a.parquet"),
        };
        step.apply().unwrap();
        step.apply().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("dt=1/a.parquet")).unwrap(),
            b"x"
        );
        let lost = PostCommit::Publish {
            from: dir.path().join("nope"),
            to: dir.path().join("nope2"),
        };
        assert!(lost.apply().unwrap_err().to_string().contains("neither"));
        let scope = Scope {
            topic: "a/b".into(),
            partition: 3,
        };
        assert_eq!(scope.label(), "a_b-3");
        discard(&scope.staging_dir(dir.path())).unwrap();
    }
}
