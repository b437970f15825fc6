//! What sinks share about their commit records: the postcard encoding kept in checkpoints, and
//! the sequence numbers that fence a redone commit (Redis, PostgreSQL).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{SinkError, io_error, now_ms};

/// A commit record as the checkpoint keeps it.
pub fn encode<T: Serialize>(sink: &str, record: &T) -> Result<Option<Vec<u8>>, SinkError> {
    encode_extended::<T, ()>(sink, record, None)
}

/// A commit record read back from a checkpoint.
pub fn decode<T: DeserializeOwned>(sink: &str, bytes: &[u8]) -> Result<T, SinkError> {
    postcard::from_bytes(bytes).map_err(|e| undecodable(sink, e))
}

fn undecodable(sink: &str, e: postcard::Error) -> SinkError {
    io_error(sink, format!("commit record does not decode: {e}"))
}

/// A commit record followed by an extension that older versions did not write: a record
/// without it decodes with `None`.
pub fn decode_extended<T: DeserializeOwned, X: DeserializeOwned>(
    sink: &str,
    bytes: &[u8],
) -> Result<(T, Option<X>), SinkError> {
    let (record, rest) = postcard::take_from_bytes(bytes).map_err(|e| undecodable(sink, e))?;
    let extension = match rest {
        [] => None,
        rest => Some(decode(sink, rest)?),
    };
    Ok((record, extension))
}

/// A commit record with an extension (see [`decode_extended`]).
pub fn encode_extended<T: Serialize, X: Serialize>(
    sink: &str,
    record: &T,
    extension: Option<&X>,
) -> Result<Option<Vec<u8>>, SinkError> {
    let mut bytes = postcard::to_allocvec(record).map_err(|e| io_error(sink, e))?;
    if let Some(extension) = extension {
        bytes.extend(postcard::to_allocvec(extension).map_err(|e| io_error(sink, e))?);
    }
    Ok(Some(bytes))
}

/// The sequence numbers of a sink's commits from one source partition: each above the last,
/// and at least the wall clock, so a pipeline started afresh (new group, no checkpoint) still
/// passes the numbers an older one left in the destination.
#[derive(Debug, Default)]
pub struct Sequence {
    last: i64,
}

impl Sequence {
    /// The number of the next commit.
    pub fn advance(&mut self) -> i64 {
        self.last = (self.last + 1).max(now_ms());
        self.last
    }

    /// A recovered commit had number `seq`: the next ones come after it.
    pub fn recovered(&mut self, seq: i64) {
        self.last = self.last.max(seq);
    }
}
