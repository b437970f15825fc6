//! Newline-delimited JSON from a file, every `.ndjson`/`.jsonl`/`.json` file of a folder (in
//! name order), or standard input (`-`). Each line is a record; its provenance is the file
//! and the line number. Blank lines are skipped. Lines are not parsed here: decoding and its
//! dead letters happen in the pipeline. Standard input is read on a thread of its own so that a
//! batch is handed over after `batch_timeout` even when fewer lines came.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use super::{Source, SourceError};

use crate::flow::{Provenance, SourceRecord};

/// Lines read from standard input ahead of the pipeline.
const STDIN_QUEUE: usize = 8192;

/// The NDJSON source.
pub struct FileSource {
    pending: Vec<PathBuf>,
    current: Option<(Arc<str>, Box<dyn BufRead + Send>, i64)>,
    stdin: Option<StdinLines>,
}

/// Standard input, read line by line on a thread of its own, so that a batch waits at most
/// `batch_timeout` for lines that do not come (and a shutdown is not held up by a read).
struct StdinLines {
    lines: Receiver<std::io::Result<Vec<u8>>>,
    line_no: i64,
    batch_timeout: Duration,
    name: Arc<str>,
}

fn io(source: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Io {
        source_name: source.display().to_string(),
        reason: e.to_string(),
    }
}

impl FileSource {
    /// Opens `path`: a file, a folder, or `-` (standard input, whose batches wait at most
    /// `batch_timeout` to fill).
    pub fn open(path: &Path, batch_timeout: Duration) -> Result<Self, SourceError> {
        if path.as_os_str() == "-" {
            return Ok(FileSource {
                pending: Vec::new(),
                current: None,
                stdin: Some(StdinLines::spawn(batch_timeout).map_err(|e| io(path, e))?),
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
            stdin: None,
        })
    }

    fn advance(&mut self) -> Result<bool, SourceError> {
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

/// The record of a line (its end of line removed); `None` for a blank line.
fn record(mut line: Vec<u8>, source: &Arc<str>, line_no: i64) -> Option<SourceRecord> {
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(SourceRecord {
        key: None,
        value: line,
        timestamp: None,
        headers: Vec::new(),
        provenance: Provenance {
            source: source.clone(),
            partition: 0,
            offset: line_no,
            trace: None,
        },
    })
}

impl StdinLines {
    fn spawn(batch_timeout: Duration) -> std::io::Result<StdinLines> {
        let (tx, lines) = sync_channel(STDIN_QUEUE);
        std::thread::Builder::new()
            .name("weir-stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                loop {
                    let mut line = Vec::new();
                    let read = stdin.read_until(b'\n', &mut line);
                    let end = !matches!(read, Ok(n) if n > 0);
                    let sent = match read {
                        Ok(0) => true,
                        Ok(_) => tx.send(Ok(line)).is_ok(),
                        Err(e) => tx.send(Err(e)).is_ok(),
                    };
                    if end || !sent {
                        break;
                    }
                }
            })?;
        Ok(StdinLines {
            lines,
            line_no: 0,
            batch_timeout,
            name: "stdin".into(),
        })
    }

    /// Up to `max` lines: waits `batch_timeout` for the first, then at most `batch_timeout`
    /// more for the rest. An empty batch: nothing came; `None`: standard input has ended.
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<SourceRecord>>, SourceError> {
        let mut batch = Vec::new();
        let mut deadline = Instant::now() + self.batch_timeout;
        let mut waiting_for_first = true;
        while batch.len() < max {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(Ok(line)) => {
                    self.line_no += 1;
                    if waiting_for_first {
                        waiting_for_first = false;
                        deadline = Instant::now() + self.batch_timeout;
                    }
                    batch.extend(record(line, &self.name, self.line_no));
                }
                Ok(Err(e)) => return Err(io(Path::new("stdin"), e)),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) if batch.is_empty() => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(Some(batch))
    }
}

impl Source for FileSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<Vec<SourceRecord>>, SourceError> {
        if let Some(stdin) = &mut self.stdin {
            return stdin.next_batch(max);
        }
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
            batch.extend(record(line, name, *line_no));
        }
        if batch.is_empty() && self.current.is_none() && self.pending.is_empty() {
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
        let mut source = FileSource::open(dir.path(), Duration::from_millis(50)).unwrap();
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
        assert!(
            FileSource::open(Path::new("/nonexistent/weir"), Duration::from_millis(50)).is_err()
        );
    }
}
