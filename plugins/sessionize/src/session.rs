//! Open sessions and the pure rules that place an event among them, merge them, split them at
//! the maximum duration and expire them. No host calls here, so the rules test directly.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Name of the per-user state value holding the open sessions, sorted by start.
pub(crate) const OPEN_STATE: &str = "open";

/// A session that can still change. Its URLs borrow from the state bytes and the event while
/// an event is placed, so placing one allocates no strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenSession<'a> {
    /// Time of the event that opened it; with the user key it fixes the session id.
    pub(crate) anchor: i64,
    /// Earliest event time.
    pub(crate) start: i64,
    /// Latest event time.
    pub(crate) last: i64,
    pub(crate) event_count: u64,
    pub(crate) page_views: u64,
    /// URL of the earliest event.
    #[serde(borrow)]
    pub(crate) first_url: Option<Cow<'a, str>>,
    /// URL of the latest event.
    #[serde(borrow)]
    pub(crate) last_url: Option<Cow<'a, str>>,
    /// When this session's pending timer fires. Timers are armed lazily: when an event moves
    /// the deadline later, the timer stays where it is (saving two host calls per event), and
    /// when it fires early, `rearm` moves it to the deadline.
    pub(crate) timer: i64,
}

/// What the rules need to know about one event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed<'a> {
    pub(crate) time: i64,
    pub(crate) url: Option<&'a str>,
    pub(crate) page_view: bool,
}

impl<'a> OpenSession<'a> {
    fn new(event: Observed<'a>) -> Self {
        let url = event.url.map(Cow::Borrowed);
        OpenSession {
            anchor: event.time,
            start: event.time,
            last: event.time,
            event_count: 1,
            page_views: u64::from(event.page_view),
            first_url: url.clone(),
            last_url: url,
            timer: i64::MIN,
        }
    }

    /// Whether an event at `t` is less than `gap` from this session.
    fn covers(&self, t: i64, gap: i64) -> bool {
        t > self.start.saturating_sub(gap) && t < self.last.saturating_add(gap)
    }

    /// Adds an event. Ties keep arrival order: an event at the current start does not take
    /// over `first_url`, one at the current last does take over `last_url`.
    fn add(&mut self, event: Observed<'a>) {
        self.event_count += 1;
        self.page_views += u64::from(event.page_view);
        if event.time < self.start {
            self.start = event.time;
            self.first_url = event.url.map(Cow::Borrowed);
        }
        if event.time >= self.last {
            self.last = event.time;
            self.last_url = event.url.map(Cow::Borrowed);
        }
    }

    /// The session with its own copies of its URLs.
    #[cfg(test)]
    pub(crate) fn into_owned(self) -> OpenSession<'static> {
        OpenSession {
            first_url: self.first_url.map(|u| Cow::Owned(u.into_owned())),
            last_url: self.last_url.map(|u| Cow::Owned(u.into_owned())),
            ..self
        }
    }

    /// Folds `other` into this session, which keeps its anchor and so its id.
    fn absorb(&mut self, other: OpenSession<'a>) {
        self.event_count += other.event_count;
        self.page_views += other.page_views;
        if other.start < self.start {
            self.start = other.start;
            self.first_url = other.first_url;
        }
        if other.last > self.last {
            self.last = other.last;
            self.last_url = other.last_url;
        }
    }
}

/// Where an event went and which timers change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed<'a> {
    /// Anchor of the session that holds the event.
    pub(crate) anchor: i64,
    /// A session the event would have stretched to `max_duration`: it is complete now.
    pub(crate) closed: Option<OpenSession<'a>>,
    /// Timers to cancel.
    pub(crate) cancel: Vec<i64>,
    /// Timer to set, after the cancellations.
    pub(crate) set: Option<i64>,
}

/// The session window rules, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Windows {
    pub(crate) gap: i64,
    pub(crate) max_duration: i64,
    pub(crate) allowed_lateness: i64,
}

impl Windows {
    /// When the watermark passing `session.last + gap + allowed_lateness` means no accepted
    /// event can reach the session any more.
    pub(crate) fn deadline(&self, session: &OpenSession<'_>) -> i64 {
        session
            .last
            .saturating_add(self.gap)
            .saturating_add(self.allowed_lateness)
    }

    /// Places `event` among `open` (sorted by start, kept sorted).
    pub(crate) fn place<'a>(
        &self,
        open: &mut Vec<OpenSession<'a>>,
        event: Observed<'a>,
    ) -> Placed<'a> {
        let t = event.time;
        let hits: Vec<usize> = (0..open.len())
            .filter(|i| open[*i].covers(t, self.gap))
            .collect();
        match hits.as_slice() {
            [] => self.open_new(open, event, None, Vec::new()),
            [i] => {
                let session = &mut open[*i];
                if t > session.last && t.saturating_sub(session.start) >= self.max_duration {
                    let closed = open.remove(*i);
                    let cancel = vec![closed.timer];
                    return self.open_new(open, event, Some(closed), cancel);
                }
                // The deadline only moves later here, so the armed timer stays (see `timer`).
                session.add(event);
                Placed {
                    anchor: session.anchor,
                    closed: None,
                    cancel: Vec::new(),
                    set: None,
                }
            }
            _ => {
                // Removing from the back keeps the remaining indexes valid.
                let mut merged: Vec<OpenSession<'a>> =
                    hits.iter().rev().map(|i| open.remove(*i)).collect();
                let cancel = merged.iter().map(|s| s.timer).collect();
                merged.sort_by_key(|s| s.anchor);
                let mut parts = merged.into_iter();
                let Some(mut target) = parts.next() else {
                    return self.open_new(open, event, None, cancel);
                };
                parts.for_each(|s| target.absorb(s));
                target.add(event);
                target.timer = self.deadline(&target);
                let set = Some(target.timer);
                let anchor = target.anchor;
                insert_sorted(open, target);
                Placed {
                    anchor,
                    closed: None,
                    cancel,
                    set,
                }
            }
        }
    }

    fn open_new<'a>(
        &self,
        open: &mut Vec<OpenSession<'a>>,
        event: Observed<'a>,
        closed: Option<OpenSession<'a>>,
        cancel: Vec<i64>,
    ) -> Placed<'a> {
        let mut session = OpenSession::new(event);
        session.timer = self.deadline(&session);
        let set = Some(session.timer);
        insert_sorted(open, session);
        Placed {
            anchor: event.time,
            closed,
            cancel,
            set,
        }
    }

    /// Removes and returns, in start order, every session whose deadline is at or before `at`.
    pub(crate) fn expire<'a>(
        &self,
        open: &mut Vec<OpenSession<'a>>,
        at: i64,
    ) -> Vec<OpenSession<'a>> {
        open.extract_if(.., |s| self.deadline(s) <= at).collect()
    }

    /// After the timer at `at` fired: the sessions it belonged to that are still open (an
    /// event moved their deadline) get their timer moved to the deadline. Returns the new
    /// timer times.
    pub(crate) fn rearm(&self, open: &mut [OpenSession<'_>], at: i64) -> Vec<i64> {
        open.iter_mut()
            .filter(|s| s.timer <= at)
            .map(|s| {
                s.timer = self.deadline(s);
                s.timer
            })
            .collect()
    }
}

fn insert_sorted<'a>(open: &mut Vec<OpenSession<'a>>, session: OpenSession<'a>) {
    let at = open.partition_point(|s| s.start <= session.start);
    open.insert(at, session);
}

/// The session id: `s-` and the 64-bit FNV-1a hash of the key, a 0 byte and the anchor as
/// little-endian i64, in 16 lowercase hex digits. Stable across runs, hosts and replays.
pub(crate) fn session_id(key: &[u8], anchor: i64) -> String {
    let hash = fnv1a(fnv1a(fnv1a(FNV_OFFSET, key), &[0]), &anchor.to_le_bytes());
    format!("s-{hash:016x}")
}

/// [`session_id`] as a JSON string (quotes included), without allocating.
pub(crate) fn session_id_json(key: &[u8], anchor: i64) -> [u8; 20] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(fnv1a(fnv1a(FNV_OFFSET, key), &[0]), &anchor.to_le_bytes());
    let mut out = *b"\"s-0000000000000000\"";
    for (i, byte) in out[3..19].iter_mut().enumerate() {
        *byte = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_answers() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn session_id_hashes_key_zero_and_anchor() {
        let mut bytes = b"u-42\0".to_vec();
        bytes.extend_from_slice(&1_000i64.to_le_bytes());
        assert_eq!(
            session_id(b"u-42", 1_000),
            format!("s-{:016x}", fnv1a(FNV_OFFSET, &bytes))
        );
        assert_eq!(session_id(b"u-42", 1_000).len(), 18);
        assert_ne!(session_id(b"u-42", 1_000), session_id(b"u-42", 1_001));
        assert_ne!(session_id(b"u-4", 1_000), session_id(b"u-42", 1_000));
        assert_eq!(
            session_id_json(b"u-42", 1_000).as_slice(),
            format!("\"{}\"", session_id(b"u-42", 1_000)).as_bytes()
        );
    }
}
