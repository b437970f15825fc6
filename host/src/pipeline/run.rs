//! Drives a built file pipeline from its source to the end. With several (virtual)
//! partitions, the reading thread splits each batch by key hash and hands every partition's
//! records to the worker thread that owns it; each worker runs its partitions' pipelines and
//! closes them at the end of input. A stop flag (set by SIGTERM or SIGINT) ends the reading
//! after the batch in hand; the partitions then close their sinks without closing windows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use weir_sdk::json;

use super::build::BuiltPipeline;
use super::partition::{PartitionPipeline, PipelineStats};
use crate::error::Result;
use crate::flow::SourceRecord;

/// What a finished run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Counts.
    pub stats: PipelineStats,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The run was stopped before the end of its input; open windows were not closed.
    pub stopped: bool,
}

/// How long a source or a worker waits for input before an idle partition's watermark may
/// move on processing time.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// Batches a worker may have waiting before the reader waits for it (backpressure).
const QUEUED_BATCHES: usize = 4;

/// Runs until the source ends, then fires every remaining timer and closes the sinks; or,
/// once `stop` is set, until the batch in hand is done, then closes the sinks.
pub fn run_to_end(built: BuiltPipeline, stop: &AtomicBool) -> Result<RunSummary> {
    let started = Instant::now();
    let stopped = AtomicBool::new(false);
    let stats = if built.partitions.len() == 1 {
        run_one(built, stop, &stopped)?
    } else {
        run_partitioned(built, stop, &stopped)?
    };
    Ok(RunSummary {
        stats,
        elapsed: started.elapsed(),
        stopped: stopped.into_inner(),
    })
}

/// Whether reading must stop before the end of the input; notes it in `stopped`.
fn stopping(stop: &AtomicBool, stopped: &AtomicBool) -> bool {
    let stopping = stop.load(Ordering::Relaxed);
    if stopping {
        stopped.store(true, Ordering::Relaxed);
    }
    stopping
}

/// Closes a partition at the end of its input: every window closes, unless the run was
/// stopped.
fn close(pipeline: &mut PartitionPipeline, stopped: &AtomicBool) -> Result<()> {
    if stopped.load(Ordering::Relaxed) {
        pipeline.stop()
    } else {
        pipeline.finish()
    }
}

/// One partition on the calling thread.
fn run_one(
    mut built: BuiltPipeline,
    stop: &AtomicBool,
    stopped: &AtomicBool,
) -> Result<PipelineStats> {
    let Some(pipeline) = built.partitions.first_mut() else {
        return Ok(PipelineStats::default());
    };
    while !stopping(stop, stopped) {
        match built.source.next_batch(built.batch_size)? {
            Some(batch) if batch.is_empty() => {
                pipeline.on_idle()?;
                std::thread::sleep(IDLE_POLL);
            }
            Some(batch) => pipeline.process(&batch)?,
            None => break,
        }
    }
    close(pipeline, stopped)?;
    Ok(pipeline.stats())
}

/// Records for one partition.
type Work = (usize, Vec<SourceRecord>);

/// The partition a record belongs to: its key field's hash (records without one go to
/// partition 0, where decoding dead-letters them or falls back to the record key).
fn partition_of(record: &SourceRecord, key_field: &str, partitions: usize) -> usize {
    use std::hash::BuildHasher;
    // A fixed seed: the same key goes to the same partition in every run.
    let hash = |key: &[u8]| FixedState::with_seed(0x7765_6972).hash_one(key);
    let hashed = match json::find_raw(&record.value, key_field) {
        Some(raw) if raw.first() == Some(&b'"') => {
            json::decode_string(raw).map(|k| hash(k.as_bytes()))
        }
        Some(b"null") | None => record.key.as_deref().map(hash),
        Some(raw) => Some(hash(raw)),
    };
    hashed.map_or(0, |h| (h % partitions as u64) as usize)
}

/// Partitions spread over worker threads, fed by the calling thread.
fn run_partitioned(
    built: BuiltPipeline,
    stop: &AtomicBool,
    stopped: &AtomicBool,
) -> Result<PipelineStats> {
    let BuiltPipeline {
        partitions,
        key_field,
        workers,
        mut source,
        batch_size,
        factory: _factory,
    } = built;
    let count = partitions.len();
    let workers = workers.clamp(1, count);
    // Worker `w` owns partitions `w, w + workers, …`.
    let mut owned: Vec<Vec<(usize, PartitionPipeline)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for (p, pipeline) in partitions.into_iter().enumerate() {
        owned[p % workers].push((p, pipeline));
    }
    std::thread::scope(|scope| {
        let mut senders: Vec<SyncSender<Work>> = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for (w, mine) in owned.into_iter().enumerate() {
            let (tx, rx) = sync_channel::<Work>(QUEUED_BATCHES);
            senders.push(tx);
            let handle = std::thread::Builder::new()
                .name(format!("weir-worker-{w}"))
                .spawn_scoped(scope, move || work(mine, rx, stopped))
                .map_err(|e| crate::source::SourceError::Io {
                    source_name: "workers".into(),
                    reason: format!("cannot start worker {w}: {e}"),
                })?;
            handles.push(handle);
        }
        let read = read(
            &mut *source,
            &senders,
            &key_field,
            (count, workers),
            batch_size,
            (stop, stopped),
        );
        // Closing the channels ends the workers, which then close their partitions.
        drop(senders);
        let mut stats = PipelineStats::default();
        let mut failed = read.err();
        for handle in handles {
            match handle.join() {
                Ok(Ok(worker)) => stats.add(&worker),
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(_) => {
                    failed = failed.or(Some(
                        crate::source::SourceError::Io {
                            source_name: "workers".into(),
                            reason: "a worker thread panicked".into(),
                        }
                        .into(),
                    ));
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    })
}

/// Reads the source to its end, sending each partition a batch whenever it has gathered
/// `batch_size` records, and whatever is waiting whenever the source hands over a short batch
/// (standard input after its `batch_timeout`, or nothing at all) or ends: a steady trickle of
/// lines is processed within `batch_timeout`, not once 512 have come.
fn read(
    source: &mut dyn crate::source::Source,
    senders: &[SyncSender<Work>],
    key_field: &str,
    (partitions, workers): (usize, usize),
    batch_size: usize,
    (stop, stopped): (&AtomicBool, &AtomicBool),
) -> Result<()> {
    let mut pending: Vec<Vec<SourceRecord>> = (0..partitions).map(|_| Vec::new()).collect();
    let send = |p: usize, records: Vec<SourceRecord>| -> bool {
        senders[p % workers].send((p, records)).is_ok()
    };
    while !stopping(stop, stopped)
        && let Some(batch) = source.next_batch(batch_size)?
    {
        let (short, idle) = (batch.len() < batch_size, batch.is_empty());
        for mut record in batch {
            let p = partition_of(&record, key_field, partitions);
            record.provenance.partition = i32::try_from(p).unwrap_or(i32::MAX);
            pending[p].push(record);
            if pending[p].len() >= batch_size {
                let full = std::mem::replace(&mut pending[p], Vec::with_capacity(batch_size));
                // A worker that stopped has failed; its error is reported on join.
                if !send(p, full) {
                    return Ok(());
                }
            }
        }
        if short {
            // The source has no more for now (a pipe): hand over what is waiting.
            for (p, records) in pending.iter_mut().enumerate() {
                if !records.is_empty() && !send(p, std::mem::take(records)) {
                    return Ok(());
                }
            }
        }
        if idle {
            std::thread::sleep(IDLE_POLL);
        }
    }
    for (p, records) in pending.into_iter().enumerate() {
        if !records.is_empty() && !send(p, records) {
            break;
        }
    }
    Ok(())
}

/// A worker: runs the batches of its partitions as they come, lets idle partitions' watermarks
/// move, and closes every partition when the input ends.
fn work(
    mut mine: Vec<(usize, PartitionPipeline)>,
    rx: Receiver<Work>,
    stopped: &AtomicBool,
) -> Result<PipelineStats> {
    let heart = crate::liveness::Heart::new("file worker");
    loop {
        heart.beat();
        match rx.recv_timeout(IDLE_POLL) {
            Ok((p, records)) => {
                if let Some((_, pipeline)) = mine.iter_mut().find(|(q, _)| *q == p) {
                    pipeline.process(&records)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                for (_, pipeline) in &mut mine {
                    pipeline.on_idle()?;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut stats = PipelineStats::default();
    for (_, pipeline) in &mut mine {
        close(pipeline, stopped)?;
        stats.add(&pipeline.stats());
    }
    Ok(stats)
}
