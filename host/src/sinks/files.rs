//! Output files shared by every partition of a run: an NDJSON sink or the dead-letter file is
//! one file however many partitions write to it, opened (and truncated) once, each write a
//! whole batch of lines under its lock. A character device or a pipe (standard output, the null
//! device) works too: it is flushed, not synced.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{SinkError, io_error};

/// One open output file.
#[derive(Debug, Clone)]
pub struct SharedFile {
    sink: String,
    out: Arc<Mutex<BufWriter<File>>>,
    /// A regular file, made durable with `fdatasync` at each flush; a character device or a
    /// pipe (standard output, the null device) cannot be and is only flushed.
    regular: bool,
}

/// The output files of a run, by path.
#[derive(Debug, Clone, Default)]
pub struct OutputFiles {
    open: Arc<Mutex<HashMap<PathBuf, SharedFile>>>,
}

impl OutputFiles {
    /// The file at `path` for `sink`: created (with its folder, truncating it) by the first
    /// partition that asks, shared with the others.
    pub fn open(&self, sink: &str, path: &Path) -> Result<SharedFile, SinkError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = open.get(path) {
            return Ok(file.clone());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| io_error(sink, format!("creating {}: {e}", dir.display())))?;
        }
        let file = File::create(path)
            .map_err(|e| io_error(sink, format!("creating {}: {e}", path.display())))?;
        let regular = file
            .metadata()
            .map_err(|e| io_error(sink, format!("reading {}: {e}", path.display())))?
            .is_file();
        let shared = SharedFile {
            sink: sink.to_string(),
            out: Arc::new(Mutex::new(BufWriter::with_capacity(1 << 16, file))),
            regular,
        };
        open.insert(path.to_path_buf(), shared.clone());
        Ok(shared)
    }
}

impl SharedFile {
    fn lock(&self) -> MutexGuard<'_, BufWriter<File>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends what `write` writes, under the file's lock.
    pub fn write(
        &self,
        write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
    ) -> Result<(), SinkError> {
        write(&mut self.lock()).map_err(|e| io_error(&self.sink, e))
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), SinkError> {
        let mut out = self.lock();
        out.flush().map_err(|e| io_error(&self.sink, e))?;
        if !self.regular {
            return Ok(());
        }
        out.get_ref()
            .sync_data()
            .map_err(|e| io_error(&self.sink, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_a_regular_file_and_to_a_character_device() {
        let dir = tempfile::tempdir().unwrap();
        let files = OutputFiles::default();
        let regular = files.open("out", &dir.path().join("a/out.ndjson")).unwrap();
        regular.write(|out| out.write_all(b"{}\n")).unwrap();
        regular.flush().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a/out.ndjson")).unwrap(),
            b"{}\n"
        );
        // fdatasync on a character device fails with EINVAL: it is only flushed.
        let null = files.open("null", Path::new("/dev/null")).unwrap();
        null.write(|out| out.write_all(b"{}\n")).unwrap();
        null.flush().unwrap();
    }
}
