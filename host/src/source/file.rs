//! Newline-delimited JSON from a file, every `.ndjson`/`.jsonl`/`.json` file of a folder (in
//! name order), or standard input (`-`). Each line is a record; its provenance is the file
//! and the line number. Blank lines are skipped. Lines are not parsed here: decoding and its
//! dead letters happen in the pipeline.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Source, SourceError};

use crate::flow::{Provenance, SourceRecord};

/// The NDJSON source.
pub struct FileSource {
    pending: Vec<PathBuf>,
    current: Option<(Arc<str>, Box<dyn BufRead + Send>, i64)>,
    stdin: bool,
}

fn io(source: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Io {
        source_name: source.display().to_string(),
        reason: e.to_string(),
    }
}

impl FileSource {
    /// Opens `path`: a file, a folder, or `-`.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        if path.as_os_str() == "-" {
            return Ok(FileSource {
                pending: Vec::new(),
                current: None,
                stdin: true,
            });
        }
        let mut files = Vec::new();
        if path.is_dir() {
            for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
                let file = entry.map_err(|e| io(path, e))?.path();
                let ext = file
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or_default();
                if file.is_file() && matches!(ext, "ndjson" | "jsonl" | "json") {
                    files.push(file);
                }
            }
            files.sort();
        } else if path.is_file() {
            files.push(path.to_path_buf());
        } else {
            return Err(io(path, "no such file or folder"));
        }
        files.reverse();
        Ok(FileSource {
            pending: files,
            current: None,
            stdin: false,
        })
    }

    fn advance(&mut self) -> Result<bool, SourceError> {
        if self.stdin {
            self.stdin = false;
            self.current = Some((
                "stdin".into(),
                Box::new(BufReader::new(std::io::stdin())),
                0,
            ));
            return Ok(true);
        }
        let Some(path) = self.pending.pop() else {
            return Ok(false);
        };
        let file = File::open(&path).map_err(|e| io(&path, e))?;
        self.current = Some((
            path.display().to_string().into(),
            Box::new(BufReader::with_capacity(1 << 16, file)),
            0,
        ));
        Ok(true)
    }
}

impl Source for FileSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<SourceRecord>>, SourceError> {
        let mut batch = Vec::with_capacity(max);
        while batch.len() < max {
            if self.current.is_none() && !self.advance()? {
                break;
            }
            let Some((name, reader, line_no)) = self.current.as_mut() else {
                break;
            };
            let mut line = Vec::new();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io(Path::new(&**name), e))?;
            if read == 0 {
                self.current = None;
                continue;
            }
            *line_no += 1;
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push(SourceRecord {
                key: None,
                value: line,
                timestamp: None,
                headers: Vec::new(),
                provenance: Provenance {
                    source: name.clone(),
                    partition: 0,
                    offset: *line_no,
                },
            });
        }
        if batch.is_empty() && self.current.is_none() && self.pending.is_empty() && !self.stdin {
            return Ok(None);
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_folder_files_in_order_skipping_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.ndjson"), "{\"n\":3}\n").unwrap();
        std::fs::write(dir.path().join("a.ndjson"), "{\"n\":1}\n\n  \n{\"n\":2}").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "x").unwrap();
        let mut source = FileSource::open(dir.path()).unwrap();
        let mut all = Vec::new();
        while let Some(batch) = source.next_batch(2).unwrap() {
            all.extend(batch);
        }
        let values: Vec<_> = all
            .iter()
            .map(|r| String::from_utf8(r.value.clone()).unwrap())
            .collect();
        assert_eq!(values, ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        assert_eq!(all[1].provenance.offset, 4);
        assert!(all[2].provenance.source.ends_with("b.ndjson"));
    }

    #[test]
    fn missing_path_is_an_error() {
        assert!(FileSource::open(Path::new("/nonexistent/weir")).is_err());
    }
}
