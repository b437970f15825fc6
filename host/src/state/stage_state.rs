//! Keyed state and timers of one stage in one partition, with an undo journal per call.

use std::collections::{BTreeSet, HashMap};

use foldhash::fast::RandomState;

use serde::{Deserialize, Serialize};

/// One undoable change.
#[derive(Debug)]
enum Undo {
    /// The entry held this value (or nothing) before the change.
    Entry(Vec<u8>, Option<Vec<u8>>),
    /// The timer was added by the call.
    TimerAdded(i64, Vec<u8>),
    /// The timer was removed by the call.
    TimerRemoved(i64, Vec<u8>),
}

/// Keyed state and pending timers of one stage.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StageState {
    // foldhash: several times faster than SipHash on short keys, and seeded per process so
    // keys chosen by a producer cannot force collisions.
    entries: HashMap<Vec<u8>, Vec<u8>, RandomState>,
    timers: BTreeSet<(i64, Vec<u8>)>,
    #[serde(skip)]
    journal: Vec<Undo>,
    /// Bytes of every entry's key and value; recounted after a snapshot is decoded.
    #[serde(skip)]
    bytes: usize,
    #[serde(skip)]
    scratch: Vec<u8>,
}

/// The map key of `(key, name)`: length-prefixed so no two pairs collide.
fn entry_key(buf: &mut Vec<u8>, key: &[u8], name: &str) {
    buf.clear();
    buf.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(name.as_bytes());
}

impl StageState {
    /// The value stored under `name` for `key`.
    pub fn get(&mut self, key: &[u8], name: &str) -> Option<Vec<u8>> {
        entry_key(&mut self.scratch, key, name);
        self.entries.get(self.scratch.as_slice()).cloned()
    }

    /// Stores a value, journaling the previous one.
    pub fn put(&mut self, key: &[u8], name: &str, value: Vec<u8>) {
        self.put_within(key, name, value, usize::MAX);
    }

    /// Stores a value unless that would grow the state past `limit` bytes; returns whether
    /// it was stored. Shrinking is always allowed.
    pub fn put_within(&mut self, key: &[u8], name: &str, value: Vec<u8>, limit: usize) -> bool {
        entry_key(&mut self.scratch, key, name);
        let new_len = value.len();
        if let Some(slot) = self.entries.get_mut(self.scratch.as_slice()) {
            let bytes = self.bytes - slot.len() + new_len;
            if bytes > limit && new_len > slot.len() {
                return false;
            }
            self.bytes = bytes;
            let previous = std::mem::replace(slot, value);
            self.journal
                .push(Undo::Entry(self.scratch.clone(), Some(previous)));
        } else {
            let bytes = self.bytes + self.scratch.len() + new_len;
            if bytes > limit {
                return false;
            }
            self.bytes = bytes;
            self.entries.insert(self.scratch.clone(), value);
            self.journal.push(Undo::Entry(self.scratch.clone(), None));
        }
        true
    }

    /// Deletes a value, journaling it.
    pub fn delete(&mut self, key: &[u8], name: &str) {
        entry_key(&mut self.scratch, key, name);
        if let Some(previous) = self.entries.remove(self.scratch.as_slice()) {
            self.bytes -= self.scratch.len() + previous.len();
            self.journal
                .push(Undo::Entry(self.scratch.clone(), Some(previous)));
        }
    }

    /// Registers a timer.
    pub fn set_timer(&mut self, key: &[u8], at: i64) {
        self.set_timer_within(key, at, usize::MAX);
    }

    /// Registers a timer unless `limit` timers are already pending; returns whether the timer
    /// is pending now.
    pub fn set_timer_within(&mut self, key: &[u8], at: i64, limit: usize) -> bool {
        let timer = (at, key.to_vec());
        if self.timers.contains(&timer) {
            return true;
        }
        if self.timers.len() >= limit {
            return false;
        }
        self.timers.insert(timer);
        self.journal.push(Undo::TimerAdded(at, key.to_vec()));
        true
    }

    /// Removes a timer.
    pub fn cancel_timer(&mut self, key: &[u8], at: i64) {
        let timer = (at, key.to_vec());
        if self.timers.remove(&timer) {
            self.journal.push(Undo::TimerRemoved(timer.0, timer.1));
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
            self.journal
                .push(Undo::TimerRemoved(timer.0, timer.1.clone()));
            return Some(timer);
        }
        None
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
        self.bytes = self.entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    }

    /// Keeps every change since the last commit or rollback.
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    /// Undoes every change since the last commit or rollback.
    pub fn rollback(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Entry(k, Some(v)) => {
                    let (key_len, value_len) = (k.len(), v.len());
                    match self.entries.insert(k, v) {
                        Some(now) => self.bytes = self.bytes - now.len() + value_len,
                        None => self.bytes += key_len + value_len,
                    }
                }
                Undo::Entry(k, None) => {
                    if let Some(v) = self.entries.remove(&k) {
                        self.bytes -= k.len() + v.len();
                    }
                }
                Undo::TimerAdded(at, k) => {
                    self.timers.remove(&(at, k));
                }
                Undo::TimerRemoved(at, k) => {
                    self.timers.insert((at, k));
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
        assert!(state.put_within(b"k", "a", vec![0; 10], 100));
        state.commit();
        let one = state.bytes();
        assert_eq!(one, 4 + 1 + 1 + 10);
        assert!(state.put_within(b"k", "a", vec![0; 20], 100));
        assert!(state.put_within(b"j", "a", vec![0; 5], 100));
        state.delete(b"k", "a");
        state.rollback();
        assert_eq!(state.bytes(), one);
        assert!(
            !state.put_within(b"k", "a", vec![0; 200], 100),
            "grows past the limit"
        );
        assert!(
            !state.put_within(b"x", "b", vec![0; 90], 100),
            "a new entry past the limit"
        );
        assert!(
            state.put_within(b"k", "a", vec![0; 1], 10),
            "shrinking is allowed"
        );
        state.commit();
        let mut copy: StageState =
            postcard::from_bytes(&postcard::to_allocvec(&state).unwrap()).unwrap();
        copy.recount();
        assert_eq!(copy.bytes(), state.bytes());
        assert!(state.set_timer_within(b"k", 1, 1));
        assert!(
            state.set_timer_within(b"k", 1, 1),
            "an existing timer is not a new one"
        );
        assert!(!state.set_timer_within(b"k", 2, 1));
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
