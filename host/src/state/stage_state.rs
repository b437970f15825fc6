//! Keyed state and timers of one stage in one partition, with an undo journal per call, a
//! record and a log of what changed since the last checkpoint (for incremental
//! checkpoints), and the expiry of entries whose state name has a lifetime ([`TtlPolicy`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::{ByteBuf, Bytes};
use smallvec::SmallVec;
use weir_sdk::abi::TtlRefresh;

use super::entry_tables::EntryTables;
use super::slice::Slice;
use super::ttl::TtlPolicy;

/// The map key of an entry: the key's length, the key and the state name. Most are short and
/// kept inside the table itself, so a lookup touches one cache line where a heap key took two.
type EntryKey = SmallVec<[u8; 32]>;

/// One undoable change.
#[derive(Debug)]
enum Undo {
    /// The entry held this value, touched at this time (or nothing) before the change.
    Entry(EntryKey, Option<(Value, i64)>),
    /// The timer was added by the call.
    TimerAdded(i64, Vec<u8>),
    /// The timer was removed by the call.
    TimerRemoved(i64, Vec<u8>),
}

/// Whether a change can be undone by [`StageState::rollback`]. A call whose result is known
/// to fit the limits applies it without: nothing after it can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// Record the change for a rollback.
    Keep,
    /// Do not: the change is final once made.
    Skip,
}

/// A stored value, kept in the table itself when small (a counter, a timestamp), the event
/// time it was last touched, and the mark of the checkpoint interval in which it last
/// changed (0: not since it was restored).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Entry {
    value: Value,
    touched: i64,
    changed: u32,
}

/// A stored value.
type Value = SmallVec<[u8; 24]>;

type Entries = EntryTables<EntryKey, Entry>;

/// Changes walk the whole table once at least one entry in this many changed.
const SCAN_SHARE: usize = 8;

/// The change log may grow to the stage's state bytes, or to this much when they are fewer:
/// past that, the checkpoint is about as large as a full snapshot, which is due soon.
const LOG_FLOOR: usize = 1 << 20;

/// The change log is dropped once it holds more than this many changes per changed entry
/// (a few keys written over and over): the checkpoint then looks the entries up instead.
const LOG_REPEATS: usize = 2;

/// Whether the change log is kept.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Logging {
    /// Not since the last checkpoint: none was taken or restored yet, or the log passed its
    /// size.
    #[default]
    Off,
    /// Every entry change since the last checkpoint is in the log.
    On,
}

/// Each entry change since the last checkpoint, in the order it was made, encoded as a
/// checkpoint holds it (`EntryChange`): replayed in order on the state of that checkpoint,
/// they give this one. Written as the changes happen, while the entry is in the cache, so a
/// checkpoint copies one buffer instead of looking up every changed entry (a miss in the
/// cache each, once the table outgrows it).
#[derive(Debug, Default)]
struct ChangeLog {
    bytes: Vec<u8>,
    records: usize,
    logging: Logging,
}

impl ChangeLog {
    /// Appends that the entry `key` now holds a value touched at a time (`None`: deleted),
    /// unless the log is off.
    fn record(&mut self, key: &[u8], value: Option<(i64, &[u8])>) {
        if self.logging == Logging::Off {
            return;
        }
        let change: EntryChange<&Bytes> = (Bytes::new(key), value.map(|(t, v)| (t, Bytes::new(v))));
        self.records += 1;
        if weir_sdk::abi::append_postcard(&change, &mut self.bytes).is_err() {
            self.stop();
        }
    }

    /// Drops the log once it passes `state_bytes` (or [`LOG_FLOOR`]) or repeats its `changed`
    /// entries more than [`LOG_REPEATS`] times over: the checkpoint is then cheaper from the
    /// table.
    fn check(&mut self, state_bytes: usize, changed: usize) {
        if self.logging == Logging::On
            && (self.bytes.len() > state_bytes.max(LOG_FLOOR)
                || self.records > LOG_REPEATS * changed + 1024)
        {
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.logging = Logging::Off;
        self.bytes = Vec::new();
        self.records = 0;
    }

    /// Empties the log and keeps it from now on.
    fn restart(&mut self) {
        self.bytes.clear();
        self.records = 0;
        self.logging = Logging::On;
    }
}

/// Keyed state and pending timers of one stage.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StageState {
    // Serialized as key → value, as snapshots always were.
    #[serde(serialize_with = "entries_out", deserialize_with = "entries_in")]
    entries: Entries,
    #[serde(serialize_with = "timers_out", deserialize_with = "timers_in")]
    timers: BTreeSet<(i64, Vec<u8>)>,
    #[serde(skip)]
    journal: Vec<Undo>,
    /// Bytes of every entry's key and value; recounted after a snapshot is decoded.
    #[serde(skip)]
    bytes: usize,
    #[serde(skip)]
    scratch: EntryKey,
    /// Counts checkpoints: an entry changed since the last one carries [`Self::mark`].
    #[serde(skip)]
    generation: u32,
    /// The entry changes since the last [`StageState::clear_changes`], in order.
    #[serde(skip)]
    log: ChangeLog,
    /// Keys whose entries were marked changed since the last [`StageState::clear_changes`]
    /// (each once while its mark stays).
    #[serde(skip)]
    changed_entries: Vec<EntryKey>,
    /// Keys deleted since the last [`StageState::clear_changes`].
    #[serde(skip)]
    deleted_entries: HashSet<EntryKey, RandomState>,
    /// Timers pending now and not at the last [`StageState::clear_changes`] (`true`), or the
    /// other way round (`false`): a timer set and cancelled between two checkpoints (a
    /// session's timer moved on by each of its events) is in neither.
    #[serde(skip)]
    changed_timers: BTreeMap<(i64, Vec<u8>), bool>,
    #[serde(skip)]
    expiry: Expiry,
}

/// What expiring entries takes: the stage's lifetimes, the event-time clock (the watermark of
/// the current call), and when the current call's records touch each key.
#[derive(Debug, Default)]
struct Expiry {
    policy: Arc<TtlPolicy>,
    clock: i64,
    /// The latest time of the current call's records of each key, by key hash.
    key_times: HashMap<u64, i64, RandomState>,
    hasher: RandomState,
    /// The latest time of all the current call's records: the touch of a key not among them.
    call_time: i64,
    /// The clock at which the next sweep runs.
    next_sweep: i64,
}

impl Expiry {
    /// When the current call touches `key`.
    fn touch_time(&self, key: &[u8]) -> i64 {
        if self.key_times.is_empty() {
            return self.call_time;
        }
        let hash = self.hasher.hash_one(key);
        self.key_times.get(&hash).copied().unwrap_or(self.call_time)
    }

    /// Whether an entry under `name` last touched at `touched` is gone.
    fn expired(&self, name: &[u8], touched: i64) -> bool {
        self.policy
            .of(name)
            .is_some_and(|l| touched.saturating_add(l.ms) <= self.clock)
    }
}

/// The state name in an entry's map key.
fn name_of(entry_key: &[u8]) -> &[u8] {
    let len = entry_key
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize);
    entry_key.get(4 + len..).unwrap_or_default()
}

// Keys, values and timer keys are written as byte strings (`serde_bytes`): postcard gives
// them the same bytes as a sequence of `u8`, which is what they were, but copies them whole
// instead of one byte at a time.

fn entries_out<S: Serializer>(entries: &Entries, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (k, e) in prefetching(entries) {
        map.serialize_entry(
            Bytes::new(k.as_slice()),
            &(e.touched, Bytes::new(e.value.as_slice())),
        )?;
    }
    map.end()
}

/// How many entries ahead of the one being written [`prefetching`] asks for a value.
const PREFETCH_AHEAD: usize = 8;

/// Iterates `entries`, asking the processor for the value of the entry [`PREFETCH_AHEAD`]
/// places on: a value kept outside the table (longer than 24 bytes) of a table larger than
/// the cache is otherwise a miss waited for in turn. The two iterators over the unchanged
/// table walk it in the same order.
fn prefetching(entries: &Entries) -> impl Iterator<Item = (&EntryKey, &Entry)> {
    let mut ahead = entries.values().skip(PREFETCH_AHEAD);
    entries.iter().inspect(move |_| {
        if let Some(entry) = ahead.next()
            && entry.value.spilled()
        {
            prefetch(&entry.value);
        }
    })
}

/// Asks the processor to bring the first cache line of `bytes` in: a hint, with no effect on
/// what the program computes.
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints; it never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

fn entries_in<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Entries, D::Error> {
    let plain = HashMap::<ByteBuf, (i64, ByteBuf), RandomState>::deserialize(deserializer)?;
    Ok(plain
        .into_iter()
        .map(|(k, (touched, value))| {
            (
                EntryKey::from_vec(k.into_vec()),
                stored(value.into_vec(), touched),
            )
        })
        .collect())
}

fn timers_out<S: Serializer>(
    timers: &BTreeSet<(i64, Vec<u8>)>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(timers.iter().map(|(at, key)| (at, Bytes::new(key))))
}

fn timers_in<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeSet<(i64, Vec<u8>)>, D::Error> {
    let plain = Vec::<(i64, ByteBuf)>::deserialize(deserializer)?;
    Ok(plain
        .into_iter()
        .map(|(at, key)| (at, key.into_vec()))
        .collect())
}

/// A restored entry: not changed since the checkpoint it came from.
fn stored(value: Vec<u8>, touched: i64) -> Entry {
    Entry {
        value: Value::from_vec(value),
        touched,
        changed: 0,
    }
}

/// A stage's state as snapshot format 1 wrote it: no touch times.
#[derive(Debug, Deserialize)]
pub struct StageStateV1 {
    entries: HashMap<Vec<u8>, Vec<u8>, RandomState>,
    timers: BTreeSet<(i64, Vec<u8>)>,
}

impl StageStateV1 {
    /// The state, each entry touched at `touched` (so it lives a full lifetime from there).
    pub fn upgrade(self, touched: i64) -> StageState {
        let entries = self.entries.into_iter();
        let mut state = StageState {
            entries: entries
                .map(|(k, v)| (EntryKey::from_vec(k), stored(v, touched)))
                .collect(),
            timers: self.timers,
            ..StageState::default()
        };
        state.recount();
        state
    }
}

/// A stage's changes as snapshot format 1 wrote them.
#[derive(Debug, Deserialize)]
pub struct StageChangesV1 {
    entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    timers: Vec<(i64, Vec<u8>, bool)>,
}

impl StageChangesV1 {
    /// The changes, each written entry touched at `touched`.
    pub fn upgrade(self, touched: i64) -> StageChanges {
        StageChanges {
            entries: self
                .entries
                .into_iter()
                .map(|(k, v)| (ByteBuf::from(k), v.map(|v| (touched, ByteBuf::from(v)))))
                .collect(),
            timers: self
                .timers
                .into_iter()
                .map(|(at, key, pending)| (at, ByteBuf::from(key), pending))
                .collect(),
        }
    }
}

/// A changed entry in a checkpoint: its map key, and its touch time and value (`None`:
/// deleted).
type EntryChange<B> = (B, Option<(i64, B)>);

/// What changed in a stage's state since a checkpoint: the changed entries with their touch
/// times and values (`None`: deleted) and each changed timer with whether it is pending.
/// Borrowed from the state for encoding; [`StageChanges`] is the decoded form.
#[derive(Debug)]
pub struct StageChangesRef<'a> {
    entries: ChangedEntries<'a>,
    timers: Vec<(i64, &'a Bytes, bool)>,
}

/// The changed entries in a [`StageChangesRef`].
#[derive(Debug)]
enum ChangedEntries<'a> {
    /// Every change in order, from the log: already encoded.
    Logged { records: usize, bytes: &'a [u8] },
    /// Each changed entry as it is now, from the table.
    Looked(Vec<EntryChange<&'a Bytes>>),
}

impl StageChangesRef<'_> {
    /// Whether the changes come from the log.
    #[cfg(test)]
    pub fn logged(&self) -> bool {
        matches!(self.entries, ChangedEntries::Logged { .. })
    }

    /// Appends the changes to `buf` as postcard writes a [`StageChanges`].
    pub fn encode_into(&self, buf: &mut Vec<u8>) -> postcard::Result<()> {
        match &self.entries {
            ChangedEntries::Logged { records, bytes } => {
                weir_sdk::abi::append_postcard(records, buf)?;
                buf.extend_from_slice(bytes);
            }
            ChangedEntries::Looked(entries) => {
                weir_sdk::abi::append_postcard(&entries.len(), buf)?;
                for (i, change) in entries.iter().enumerate() {
                    if let Some((_, Some((_, value)))) = entries.get(i + PREFETCH_AHEAD) {
                        prefetch(value);
                    }
                    weir_sdk::abi::append_postcard(change, buf)?;
                }
            }
        }
        weir_sdk::abi::append_postcard(&self.timers, buf)?;
        Ok(())
    }
}

/// One [`Slice`] of a stage's entries and timers, borrowed from the state for encoding. It is
/// written in a [`StageState`]'s layout, which decodes it.
#[derive(Debug)]
pub struct StageSliceRef<'a> {
    entries: Vec<(&'a EntryKey, &'a Entry)>,
    timers: Vec<(i64, &'a Bytes)>,
}

impl StageSliceRef<'_> {
    /// Appends the slice to `buf` as postcard writes a [`StageState`], each value read a few
    /// entries ahead (they are apart in memory, and mostly not in the cache).
    pub fn encode_into(&self, buf: &mut Vec<u8>) -> postcard::Result<()> {
        weir_sdk::abi::append_postcard(&self.entries.len(), buf)?;
        for (i, (key, entry)) in self.entries.iter().enumerate() {
            if let Some((_, ahead)) = self.entries.get(i + PREFETCH_AHEAD)
                && ahead.value.spilled()
            {
                prefetch(&ahead.value);
            }
            let pair = (Bytes::new(key), (entry.touched, Bytes::new(&entry.value)));
            weir_sdk::abi::append_postcard(&pair, buf)?;
        }
        weir_sdk::abi::append_postcard(&self.timers, buf)?;
        Ok(())
    }
}

/// Decoded [`StageChangesRef`].
#[derive(Debug, Default, Deserialize)]
pub struct StageChanges {
    entries: Vec<EntryChange<ByteBuf>>,
    timers: Vec<(i64, ByteBuf, bool)>,
}

/// The map key of `(key, name)`: length-prefixed so no two pairs collide.
fn entry_key(buf: &mut EntryKey, key: &[u8], name: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(name);
}

impl StageState {
    /// Prepares a call over records with these keys and event times, at `watermark`, under
    /// `policy`: entries whose lifetime ended by the watermark read as absent from now on,
    /// writes and reads touch entries at their key's latest record time, and every so often
    /// (a quarter of the shortest lifetime of event time) the expired entries are dropped.
    /// Returns how many were dropped.
    pub fn begin_call<'k>(
        &mut self,
        policy: &Arc<TtlPolicy>,
        watermark: i64,
        records: impl Iterator<Item = (&'k [u8], i64)> + Clone,
    ) -> usize {
        let expiry = &mut self.expiry;
        if !Arc::ptr_eq(&expiry.policy, policy) {
            expiry.policy = Arc::clone(policy);
        }
        expiry.clock = watermark;
        expiry.key_times.clear();
        expiry.call_time = records.clone().map(|(_, t)| t).max().unwrap_or(watermark);
        let Some(shortest) = expiry.policy.shortest() else {
            return 0;
        };
        for (key, time) in records {
            let hash = expiry.hasher.hash_one(key);
            let latest = expiry.key_times.entry(hash).or_insert(time);
            *latest = (*latest).max(time);
        }
        if watermark == i64::MIN || watermark < expiry.next_sweep {
            return 0;
        }
        expiry.next_sweep = watermark.saturating_add((shortest / 4).max(1000));
        self.sweep()
    }

    /// Drops every expired entry, recording the deletions for the next checkpoint.
    fn sweep(&mut self) -> usize {
        let before = self.entries.len();
        let StageState {
            entries,
            bytes,
            deleted_entries,
            log,
            expiry,
            ..
        } = self;
        entries.retain(|k, e| {
            if !expiry.expired(name_of(k), e.touched) {
                return true;
            }
            *bytes -= k.len() + e.value.len();
            deleted_entries.insert(k.clone());
            log.record(k, None);
            false
        });
        before - self.entries.len()
    }

    /// The value stored under `name` for `key`.
    pub fn get(&mut self, key: &[u8], name: &str) -> Option<Vec<u8>> {
        self.get_ref(key, name.as_bytes()).map(<[u8]>::to_vec)
    }

    /// The value stored under `name` for `key`, borrowed; nothing once it expired. A read
    /// touches the entry when its name's lifetime restarts on reads.
    pub fn get_ref(&mut self, key: &[u8], name: &[u8]) -> Option<&[u8]> {
        entry_key(&mut self.scratch, key, name);
        let Some(lifetime) = self.expiry.policy.of(name) else {
            return self
                .entries
                .get(self.scratch.as_slice())
                .map(|e| e.value.as_slice());
        };
        let mark = self.mark();
        let entry = self.entries.get_mut(self.scratch.as_slice())?;
        if entry.touched.saturating_add(lifetime.ms) <= self.expiry.clock {
            return None;
        }
        if lifetime.refresh == TtlRefresh::OnReadAndWrite {
            let touch = self.expiry.touch_time(key);
            if touch > entry.touched {
                entry.touched = touch;
                if entry.changed != mark {
                    entry.changed = mark;
                    self.changed_entries.push(self.scratch.clone());
                }
                let change = Some((touch, entry.value.as_slice()));
                self.log.record(&self.scratch, change);
            }
        }
        Some(entry.value.as_slice())
    }

    /// Stores a value, journaling the previous one.
    pub fn put(&mut self, key: &[u8], name: &str, value: Vec<u8>) {
        self.put_within(key, name.as_bytes(), &value, usize::MAX, Journal::Keep);
    }

    /// Stores a value unless that would grow the state past `limit` bytes; returns whether
    /// it was stored. Shrinking is always allowed. Unjournaled, the old value's buffer is
    /// reused.
    pub fn put_within(
        &mut self,
        key: &[u8],
        name: &[u8],
        value: &[u8],
        limit: usize,
        journal: Journal,
    ) -> bool {
        entry_key(&mut self.scratch, key, name);
        let new_len = value.len();
        let touch = self.expiry.touch_time(key);
        let mark = self.mark();
        if let Some(entry) = self.entries.get_mut(self.scratch.as_slice()) {
            let old_len = entry.value.len();
            let bytes = self.bytes - old_len + new_len;
            if bytes > limit && new_len > old_len {
                return false;
            }
            self.bytes = bytes;
            let touched = entry.touched;
            entry.touched = touched.max(touch);
            match journal {
                Journal::Keep => {
                    let previous = std::mem::replace(&mut entry.value, Value::from_slice(value));
                    self.journal
                        .push(Undo::Entry(self.scratch.clone(), Some((previous, touched))));
                }
                Journal::Skip => {
                    entry.value.clear();
                    entry.value.extend_from_slice(value);
                }
            }
            if entry.changed != mark {
                entry.changed = mark;
                self.changed_entries.push(self.scratch.clone());
            }
            let change = Some((entry.touched, entry.value.as_slice()));
            self.log.record(&self.scratch, change);
        } else {
            let bytes = self.bytes + self.scratch.len() + new_len;
            if bytes > limit {
                return false;
            }
            self.bytes = bytes;
            let entry = Entry {
                value: Value::from_slice(value),
                touched: touch,
                changed: mark,
            };
            self.entries.insert(self.scratch.clone(), entry);
            if journal == Journal::Keep {
                self.journal.push(Undo::Entry(self.scratch.clone(), None));
            }
            self.log.record(&self.scratch, Some((touch, value)));
            self.changed_entries.push(self.scratch.clone());
            if !self.deleted_entries.is_empty() {
                self.deleted_entries.remove(self.scratch.as_slice());
            }
        }
        true
    }

    /// Deletes a value, journaling it.
    pub fn delete(&mut self, key: &[u8], name: &str) {
        self.delete_entry(key, name.as_bytes(), Journal::Keep);
    }

    /// Deletes a value.
    pub fn delete_entry(&mut self, key: &[u8], name: &[u8], journal: Journal) {
        entry_key(&mut self.scratch, key, name);
        if let Some(previous) = self.entries.remove(self.scratch.as_slice()) {
            self.bytes -= self.scratch.len() + previous.value.len();
            if journal == Journal::Keep {
                self.journal.push(Undo::Entry(
                    self.scratch.clone(),
                    Some((previous.value, previous.touched)),
                ));
            }
            self.log.record(&self.scratch, None);
            self.deleted_entries.insert(self.scratch.clone());
        }
    }

    /// Registers a timer.
    pub fn set_timer(&mut self, key: &[u8], at: i64) {
        self.set_timer_within(key, at, usize::MAX, Journal::Keep);
    }

    /// Registers a timer unless `limit` timers are already pending; returns whether the timer
    /// is pending now.
    pub fn set_timer_within(
        &mut self,
        key: &[u8],
        at: i64,
        limit: usize,
        journal: Journal,
    ) -> bool {
        let timer = (at, key.to_vec());
        if self.timers.contains(&timer) {
            return true;
        }
        if self.timers.len() >= limit {
            return false;
        }
        self.timer_changed(&timer, true);
        self.timers.insert(timer);
        if journal == Journal::Keep {
            self.journal.push(Undo::TimerAdded(at, key.to_vec()));
        }
        true
    }

    /// Removes a timer, journaled.
    pub fn cancel_timer(&mut self, key: &[u8], at: i64) {
        self.cancel_timer_within(key, at, Journal::Keep);
    }

    /// Removes a timer.
    pub fn cancel_timer_within(&mut self, key: &[u8], at: i64, journal: Journal) {
        let timer = (at, key.to_vec());
        if self.timers.remove(&timer) {
            self.timer_changed(&timer, false);
            if journal == Journal::Keep {
                self.journal.push(Undo::TimerRemoved(timer.0, timer.1));
            }
        }
    }

    /// Notes that `timer` became pending (or stopped being): a change since the last
    /// checkpoint, or the undoing of one.
    fn timer_changed(&mut self, timer: &(i64, Vec<u8>), pending: bool) {
        if self.changed_timers.remove(timer).is_none() {
            self.changed_timers.insert(timer.clone(), pending);
        }
    }

    /// The earliest pending timer.
    pub fn next_timer(&self) -> Option<&(i64, Vec<u8>)> {
        self.timers.first()
    }

    /// Removes and returns the earliest timer if it is due at `watermark`. Journaled, so a
    /// trapping `on-timer` call gets its timer back on rollback.
    pub fn pop_due_timer(&mut self, watermark: i64) -> Option<(i64, Vec<u8>)> {
        if self.timers.first().is_some_and(|(at, _)| *at <= watermark) {
            let timer = self.timers.pop_first()?;
            self.timer_changed(&timer, false);
            self.journal
                .push(Undo::TimerRemoved(timer.0, timer.1.clone()));
            return Some(timer);
        }
        None
    }

    /// Removes and returns the timers due at `watermark`, earliest first, at most `max`.
    /// Journaled like [`Self::pop_due_timer`].
    pub fn pop_due_timers(&mut self, watermark: i64, max: usize) -> Vec<(i64, Vec<u8>)> {
        let mut due = Vec::new();
        while due.len() < max
            && let Some(timer) = self.pop_due_timer(watermark)
        {
            due.push(timer);
        }
        due
    }

    /// Number of pending timers.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Number of stored `(key, name)` entries.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of the stored keys and values.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counts the stored bytes again (after decoding a snapshot, which does not carry them).
    pub fn recount(&mut self) {
        self.bytes = self
            .entries
            .iter()
            .map(|(k, e)| k.len() + e.value.len())
            .sum();
    }

    /// Whether enough entries changed that walking the whole table, in memory order, beats
    /// looking each changed key up (a miss in the cache each, once the table outgrows it).
    fn most_changed(&self) -> bool {
        self.changed_entries.len() >= self.entries.len() / SCAN_SHARE
    }

    /// The entries and timers changed since the last [`Self::clear_changes`]: from the log
    /// when it was kept, else looked up in the table as they are now.
    pub fn changes(&self) -> StageChangesRef<'_> {
        fn written<'a>((k, entry): (&'a EntryKey, &'a Entry)) -> EntryChange<&'a Bytes> {
            (
                Bytes::new(k.as_slice()),
                Some((entry.touched, Bytes::new(&entry.value))),
            )
        }
        let timers = self
            .changed_timers
            .iter()
            .map(|(t, pending)| (t.0, Bytes::new(&t.1), *pending))
            .collect();
        if self.log.logging == Logging::On {
            let (records, bytes) = (self.log.records, self.log.bytes.as_slice());
            return StageChangesRef {
                entries: ChangedEntries::Logged { records, bytes },
                timers,
            };
        }
        let mark = self.mark();
        let mut entries: Vec<EntryChange<&Bytes>> = if self.most_changed() {
            self.entries
                .iter()
                .filter(|(_, e)| e.changed == mark)
                .map(written)
                .collect()
        } else {
            self.changed_entries
                .iter()
                .filter_map(|k| self.entries.get_key_value(k))
                .map(written)
                .collect()
        };
        entries.extend(
            self.deleted_entries
                .iter()
                .filter(|k| !self.entries.contains_key(k))
                .map(|k| (Bytes::new(k), None)),
        );
        StageChangesRef {
            entries: ChangedEntries::Looked(entries),
            timers,
        }
    }

    /// Forgets what changed: a checkpoint holds it now (or the state was just restored from
    /// one). From here on the changes are also logged.
    pub fn clear_changes(&mut self) {
        self.generation += 1;
        if self.generation == u32::MAX {
            // Once in 2^32 checkpoints: no entry may carry the new mark already.
            self.entries.values_mut().for_each(|e| e.changed = 0);
            self.generation = 0;
        }
        self.changed_entries.clear();
        self.deleted_entries.clear();
        self.changed_timers.clear();
        self.log.restart();
    }

    /// What an entry changed since the last checkpoint carries (never 0, a restored entry's).
    fn mark(&self) -> u32 {
        self.generation + 1
    }

    /// Ends a call: drops the change log if it grew past its size or repeats itself.
    fn check_log(&mut self) {
        let changed = self.changed_entries.len() + self.deleted_entries.len();
        self.log.check(self.bytes, changed);
    }

    /// Applies changes read from a checkpoint (restoring: neither journaled nor recorded as
    /// changes).
    pub fn apply(&mut self, changes: StageChanges) {
        for (key, value) in changes.entries {
            let key_len = key.len();
            let old = match value {
                Some((touched, value)) => {
                    self.bytes += key_len + value.len();
                    self.entries.insert(
                        EntryKey::from_vec(key.into_vec()),
                        stored(value.into_vec(), touched),
                    )
                }
                None => self.entries.remove(key.as_slice()),
            };
            if let Some(old) = old {
                self.bytes -= key_len + old.value.len();
            }
        }
        for (at, key, pending) in changes.timers {
            let key = key.into_vec();
            if pending {
                self.timers.insert((at, key));
            } else {
                self.timers.remove(&(at, key));
            }
        }
    }

    /// The entries and timers in `slice`, for a rolling snapshot.
    pub fn slice(&self, slice: Slice) -> StageSliceRef<'_> {
        StageSliceRef {
            entries: self
                .entries
                .tables_where(|t| slice.holds(t as u64))
                .collect(),
            timers: self
                .timers
                .iter()
                .filter(|(at, _)| slice.holds_timer(*at))
                .map(|(at, key)| (*at, Bytes::new(key)))
                .collect(),
        }
    }

    /// Adds a slice read from a checkpoint (restoring, after the changes it was written
    /// with): its entries and timers are as they were at that checkpoint.
    pub fn absorb(&mut self, slice: StageState) {
        for (key, entry) in slice.entries {
            let key_len = key.len();
            self.bytes += key_len + entry.value.len();
            if let Some(old) = self.entries.insert(key, entry) {
                self.bytes -= key_len + old.value.len();
            }
        }
        self.timers.extend(slice.timers);
    }

    /// Keeps every change since the last commit or rollback.
    pub fn commit(&mut self) {
        self.journal.clear();
        self.check_log();
    }

    /// Undoes every change since the last commit or rollback. The entries keep their
    /// changed marks: the next checkpoint then writes them as they are, which is still right.
    /// The log gets each undone entry's restored value (or deletion) as a change of its own.
    pub fn rollback(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Entry(k, Some((value, touched))) => {
                    let (key_len, value_len) = (k.len(), value.len());
                    self.log.record(&k, Some((touched, &value)));
                    let entry = Entry {
                        value,
                        touched,
                        changed: self.mark(),
                    };
                    match self.entries.insert(k.clone(), entry) {
                        Some(now) => self.bytes = self.bytes - now.value.len() + value_len,
                        None => {
                            self.bytes += key_len + value_len;
                            self.changed_entries.push(k);
                        }
                    }
                }
                Undo::Entry(k, None) => {
                    if let Some(e) = self.entries.remove(&k) {
                        self.bytes -= k.len() + e.value.len();
                        self.log.record(&k, None);
                        self.deleted_entries.insert(k);
                    }
                }
                Undo::TimerAdded(at, k) => {
                    let timer = (at, k);
                    if self.timers.remove(&timer) {
                        self.timer_changed(&timer, false);
                    }
                }
                Undo::TimerRemoved(at, k) => {
                    let timer = (at, k);
                    if self.timers.insert(timer.clone()) {
                        self.timer_changed(&timer, true);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_entries_and_timers() {
        let mut s = StageState::default();
        s.put(b"u1", "a", b"1".to_vec());
        s.set_timer(b"u1", 10);
        s.commit();

        s.put(b"u1", "a", b"2".to_vec());
        s.put(b"u2", "a", b"x".to_vec());
        s.delete(b"u1", "a");
        s.cancel_timer(b"u1", 10);
        s.set_timer(b"u2", 5);
        assert_eq!(s.pop_due_timer(100), Some((5, b"u2".to_vec())));
        s.rollback();

        assert_eq!(s.get(b"u1", "a"), Some(b"1".to_vec()));
        assert_eq!(s.get(b"u2", "a"), None);
        assert_eq!(s.next_timer(), Some(&(10, b"u1".to_vec())));
        assert_eq!(s.timer_count(), 1);
    }

    #[test]
    fn bytes_follow_puts_deletes_and_rollbacks_and_limits_refuse_growth() {
        let mut state = StageState::default();
        assert!(state.put_within(b"k", b"a", &[0; 10], 100, Journal::Keep));
        state.commit();
        let one = state.bytes();
        assert_eq!(one, 4 + 1 + 1 + 10);
        assert!(state.put_within(b"k", b"a", &[0; 20], 100, Journal::Keep));
        assert!(state.put_within(b"j", b"a", &[0; 5], 100, Journal::Keep));
        state.delete(b"k", "a");
        state.rollback();
        assert_eq!(state.bytes(), one);
        assert!(
            !state.put_within(b"k", b"a", &[0; 200], 100, Journal::Keep),
            "grows past the limit"
        );
        assert!(
            !state.put_within(b"x", b"b", &[0; 90], 100, Journal::Keep),
            "a new entry past the limit"
        );
        assert!(
            state.put_within(b"k", b"a", &[0; 1], 10, Journal::Keep),
            "shrinking is allowed"
        );
        state.commit();
        let mut copy: StageState =
            postcard::from_bytes(&postcard::to_allocvec(&state).unwrap()).unwrap();
        copy.recount();
        assert_eq!(copy.bytes(), state.bytes());
        assert!(state.set_timer_within(b"k", 1, 1, Journal::Keep));
        assert!(
            state.set_timer_within(b"k", 1, 1, Journal::Keep),
            "an existing timer is not a new one"
        );
        assert!(!state.set_timer_within(b"k", 2, 1, Journal::Keep));
    }

    /// The changes, encoded as a checkpoint holds them and decoded.
    fn changes_of(state: &StageState) -> StageChanges {
        let mut buf = Vec::new();
        state.changes().encode_into(&mut buf).unwrap();
        postcard::from_bytes(&buf).unwrap()
    }

    fn values(s: &StageState) -> HashMap<Vec<u8>, Vec<u8>> {
        s.entries
            .iter()
            .map(|(k, e)| (k.to_vec(), e.value.to_vec()))
            .collect()
    }

    /// The changes and slices of the checkpoints since each slice was last written, applied
    /// in order to an empty state, give the state: entries made, changed, deleted and rolled
    /// back, timers set and cancelled, with the log kept or dropped.
    #[test]
    fn a_rolling_snapshot_restores_from_nothing() {
        let mut seed = 7u64;
        let mut next = move |below: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % below
        };
        let count = 4;
        let mut state = StageState::default();
        state.clear_changes();
        let mut written: Vec<(Option<Slice>, Vec<u8>)> = Vec::new();
        // Entries written once at the start: only slices carry them later on.
        for quiet in 1000..1040u64 {
            state.put(&quiet.to_le_bytes(), "a", b"quiet".to_vec());
        }
        for checkpoint in 0..40u32 {
            if checkpoint % 5 == 3 {
                state.log.stop();
            }
            for _ in 0..next(60) {
                let key = next(50).to_le_bytes();
                match next(10) {
                    0..=4 => state.put(&key, "a", vec![checkpoint as u8; next(40) as usize]),
                    5 => state.delete(&key, "a"),
                    6 => state.set_timer(&key, next(1000) as i64),
                    7 => state.cancel_timer(&key, next(1000) as i64),
                    _ => {
                        state.commit();
                        state.put(&key, "a", b"rolled back".to_vec());
                        state.delete(&(next(50)).to_le_bytes(), "a");
                        state.set_timer(&key, 5);
                        state.rollback();
                    }
                }
            }
            state.commit();
            // Every second checkpoint carries a slice, in turn.
            let slice = (checkpoint % 2 == 0).then_some(Slice {
                index: checkpoint / 2 % count,
                count,
            });
            let mut bytes = Vec::new();
            state.changes().encode_into(&mut bytes).unwrap();
            match slice {
                Some(slice) => state.slice(slice).encode_into(&mut bytes).unwrap(),
                None => weir_sdk::abi::append_postcard(&StageState::default(), &mut bytes)
                    .map(drop)
                    .unwrap(),
            }
            written.push((slice, bytes));
            state.clear_changes();
        }
        // The run since the checkpoint that wrote the oldest of the last `count` slices.
        let start = written.len() - 1 - 2 * (count as usize - 1) - 1;
        let mut restored = StageState::default();
        for (_, bytes) in &written[start..] {
            let (changes, rest): (StageChanges, _) = postcard::take_from_bytes(bytes).unwrap();
            let slice: StageState = postcard::from_bytes(rest).unwrap();
            restored.apply(changes);
            restored.absorb(slice);
        }
        assert_eq!(values(&restored), values(&state));
        assert_eq!(restored.timers, state.timers);
        assert_eq!(restored.bytes(), state.bytes());
        // One checkpoint fewer misses a slice: some quiet entries would be lost.
        let mut short = StageState::default();
        for (_, bytes) in &written[start + 1..] {
            let (changes, rest): (StageChanges, _) = postcard::take_from_bytes(bytes).unwrap();
            short.apply(changes);
            short.absorb(postcard::from_bytes(rest).unwrap());
        }
        assert_ne!(values(&short), values(&state));
    }

    /// Applying the changes since a copy was taken to that copy gives the state, including
    /// entries and timers changed and then changed back, deleted, or rolled back: from the
    /// log, and from the table when the log was dropped.
    #[test]
    fn changes_applied_to_an_earlier_copy_give_the_current_state() {
        for logged in [true, false] {
            let mut state = StageState::default();
            state.put(b"keep", "a", b"1".to_vec());
            state.put(b"gone", "a", b"2".to_vec());
            state.set_timer(b"keep", 10);
            state.set_timer(b"gone", 20);
            state.commit();
            let encoded = postcard::to_allocvec(&state).unwrap();
            state.clear_changes();
            if !logged {
                state.log.stop();
            }

            state.put(b"keep", "a", b"one".to_vec());
            state.delete(b"gone", "a");
            state.put(b"new", "b", b"3".to_vec());
            state.cancel_timer(b"gone", 20);
            state.set_timer(b"new", 5);
            assert_eq!(state.pop_due_timer(5), Some((5, b"new".to_vec())));
            state.commit();
            state.put(b"rolled", "a", b"x".to_vec());
            state.put(b"keep", "a", b"rolled back".to_vec());
            state.set_timer(b"rolled", 1);
            state.rollback();
            assert_eq!(state.changes().logged(), logged);

            let mut copy: StageState = postcard::from_bytes(&encoded).unwrap();
            copy.recount();
            copy.apply(changes_of(&state));
            assert_eq!(values(&copy), values(&state));
            assert_eq!(copy.timers, state.timers);
            assert_eq!(copy.bytes(), state.bytes());
            let applied = changes_of(&copy);
            assert!(
                applied.entries.is_empty() && applied.timers.is_empty(),
                "applying records no changes"
            );
            state.clear_changes();
            assert_eq!(changes_of(&state).entries.len(), 0);
        }
    }

    /// Few changes among many entries are looked up by key, most by walking the table, and
    /// both are in the log: all three give the same state, and a checkpoint clears them.
    #[test]
    fn changes_are_the_same_whether_logged_looked_up_or_walked() {
        let mut state = StageState::default();
        for user in 0..100u32 {
            state.put(&user.to_le_bytes(), "n", vec![1]);
        }
        state.commit();
        state.clear_changes();
        for changed in [2u32, 60] {
            let base = postcard::to_allocvec(&state).unwrap();
            for user in 0..changed {
                state.put(&user.to_le_bytes(), "n", vec![2, changed as u8]);
            }
            state.delete(&99u32.to_le_bytes(), "n");
            state.commit();
            assert_eq!(state.most_changed(), changed == 60);
            let logged = changes_of(&state);
            state.log.stop();
            let looked = changes_of(&state);
            for changes in [logged, looked] {
                let mut copy: StageState = postcard::from_bytes(&base).unwrap();
                copy.recount();
                copy.apply(changes);
                assert_eq!(values(&copy), values(&state), "{changed} changed");
            }
            state.clear_changes();
            assert!(changes_of(&state).entries.is_empty());
            assert!(state.entries.values().all(|e| e.changed != state.mark()));
        }
    }

    /// A key written over and over between two checkpoints: the log is dropped once it
    /// repeats itself, and the checkpoint looks the one entry up.
    #[test]
    fn a_log_that_repeats_itself_is_dropped_for_the_table() {
        let mut state = StageState::default();
        state.clear_changes();
        for n in 0..2_000u32 {
            state.put(b"counter", "n", n.to_le_bytes().to_vec());
            state.commit();
        }
        assert!(!state.changes().logged());
        let changes = changes_of(&state);
        assert_eq!(changes.entries.len(), 1);
        let mut copy = StageState::default();
        copy.apply(changes);
        assert_eq!(values(&copy), values(&state));
        state.clear_changes();
        assert!(state.changes().logged(), "kept again after a checkpoint");
    }

    /// A session's timer moved on by each of its events: only the last one, and the removal
    /// of the one the checkpoint had, are changes; rolled-back moves are none.
    #[test]
    fn a_timer_moved_several_times_between_checkpoints_is_one_change() {
        let mut state = StageState::default();
        state.set_timer(b"u", 100);
        state.commit();
        let encoded = postcard::to_allocvec(&state).unwrap();
        state.clear_changes();

        for at in [100, 110, 120] {
            state.cancel_timer(b"u", at);
            state.set_timer(b"u", at + 10);
        }
        state.commit();
        state.cancel_timer(b"u", 130);
        state.set_timer(b"u", 999);
        assert_eq!(state.pop_due_timer(1_000), Some((999, b"u".to_vec())));
        state.rollback();
        let changes = changes_of(&state);
        assert_eq!(
            changes.timers,
            vec![
                (100, ByteBuf::from(b"u".to_vec()), false),
                (130, ByteBuf::from(b"u".to_vec()), true)
            ]
        );

        let mut copy: StageState = postcard::from_bytes(&encoded).unwrap();
        copy.apply(changes);
        assert_eq!(copy.timers, state.timers);
    }

    fn policy(ttl_ms: u64, refresh: TtlRefresh) -> Arc<TtlPolicy> {
        let declared = weir_sdk::abi::StateTtl {
            name: "a".into(),
            ttl_ms,
            refresh,
        };
        Arc::new(TtlPolicy::new(&[declared], None))
    }

    /// A call at `watermark` over one record of each key at its time.
    fn call(s: &mut StageState, ttl: &Arc<TtlPolicy>, watermark: i64, records: &[(&[u8], i64)]) {
        s.begin_call(ttl, watermark, records.iter().copied());
    }

    #[test]
    fn entries_expire_in_event_time_from_their_keys_latest_write() {
        let ttl = policy(1000, TtlRefresh::OnWrite);
        let mut s = StageState::default();
        call(&mut s, &ttl, 0, &[(b"u1", 100), (b"u2", 500), (b"u1", 50)]);
        s.put(b"u1", "a", b"1".to_vec());
        s.put(b"u2", "a", b"2".to_vec());
        s.put(b"u2", "b", b"kept".to_vec());
        s.commit();
        s.clear_changes();
        let all = s.bytes();
        // u1 was touched at 100 (its latest record), u2 at 500.
        call(&mut s, &ttl, 1099, &[]);
        assert_eq!(s.get(b"u1", "a"), Some(b"1".to_vec()));
        call(&mut s, &ttl, 1100, &[]);
        assert_eq!(s.get(b"u1", "a"), None, "gone at touch + ttl");
        assert_eq!(s.get(b"u2", "a"), Some(b"2".to_vec()));
        // A write restarts the lifetime.
        call(&mut s, &ttl, 1400, &[(b"u2", 1450)]);
        s.put(b"u2", "a", b"3".to_vec());
        s.commit();
        call(&mut s, &ttl, 2449, &[]);
        assert_eq!(s.get(b"u2", "a"), Some(b"3".to_vec()));
        // Sweeps drop what expired (u1 at the sweep of 2449, u2 now), and the next
        // checkpoint records the deletions.
        sweep_at(&mut s, &ttl, 2450);
        assert_eq!(s.entry_count(), 1, "a name without a lifetime stays");
        assert_eq!(s.get(b"u2", "b"), Some(b"kept".to_vec()));
        assert_eq!(s.bytes(), all - 2 * (4 + 2 + 1 + 1));
        let changes = changes_of(&s);
        let deleted = changes.entries.iter().filter(|(_, v)| v.is_none()).count();
        assert_eq!(deleted, 2);
    }

    /// Runs a sweep now, at `watermark`; returns how many entries it dropped.
    fn sweep_at(s: &mut StageState, ttl: &Arc<TtlPolicy>, watermark: i64) -> usize {
        s.expiry.next_sweep = 0;
        s.begin_call(ttl, watermark, std::iter::empty())
    }

    #[test]
    fn reads_restart_the_lifetime_when_declared_and_rollbacks_restore_touches() {
        let ttl = policy(1000, TtlRefresh::OnReadAndWrite);
        let mut s = StageState::default();
        call(&mut s, &ttl, 0, &[(b"u1", 100)]);
        s.put(b"u1", "a", b"1".to_vec());
        s.commit();
        call(&mut s, &ttl, 900, &[(b"u1", 900)]);
        assert_eq!(s.get(b"u1", "a"), Some(b"1".to_vec()), "read at 900");
        assert_eq!(sweep_at(&mut s, &ttl, 1899), 0, "lives to 1900");
        // A rolled-back write does not extend it.
        call(&mut s, &ttl, 1899, &[(b"u1", 5000)]);
        s.put(b"u1", "a", b"2".to_vec());
        s.rollback();
        assert_eq!(sweep_at(&mut s, &ttl, 1900), 1);
        // Encoded and decoded, an entry keeps its touch time.
        call(&mut s, &ttl, 1900, &[(b"u2", 2000)]);
        s.put(b"u2", "a", b"x".to_vec());
        s.commit();
        let mut copy: StageState =
            postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap();
        copy.recount();
        assert_eq!(sweep_at(&mut copy, &ttl, 2999), 0);
        assert_eq!(sweep_at(&mut copy, &ttl, 3000), 1);
        assert_eq!(copy.bytes(), 0);
    }

    #[test]
    fn keys_and_names_do_not_collide() {
        let mut s = StageState::default();
        s.put(b"ab", "c", b"1".to_vec());
        assert_eq!(s.get(b"a", "bc"), None);
        assert_eq!(s.get(b"ab", "c"), Some(b"1".to_vec()));
    }

    #[test]
    fn due_timers_pop_in_time_order() {
        let mut s = StageState::default();
        s.set_timer(b"b", 20);
        s.set_timer(b"a", 20);
        s.set_timer(b"c", 5);
        s.set_timer(b"c", 5);
        assert_eq!(s.timer_count(), 3);
        assert_eq!(s.pop_due_timer(20).map(|t| t.1), Some(b"c".to_vec()));
        assert_eq!(s.pop_due_timer(20).map(|t| t.1), Some(b"a".to_vec()));
        assert_eq!(s.pop_due_timer(19), None);
    }
}
