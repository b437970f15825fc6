//! Drives a built pipeline from its source to the end of input.

use std::time::{Duration, Instant};

use super::build::BuiltPipeline;
use super::partition::PipelineStats;
use crate::error::Result;

/// What a finished run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Counts.
    pub stats: PipelineStats,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

/// Runs until the source ends, then fires every remaining timer and closes the sinks.
pub fn run_to_end(mut built: BuiltPipeline) -> Result<RunSummary> {
    let started = Instant::now();
    loop {
        match built.source.next_batch(built.batch_size)? {
            Some(batch) if batch.is_empty() => {
                built.pipeline.on_idle()?;
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(batch) => built.pipeline.process(&batch)?,
            None => break,
        }
    }
    built.pipeline.finish()?;
    Ok(RunSummary {
        stats: built.pipeline.stats(),
        elapsed: started.elapsed(),
    })
}
