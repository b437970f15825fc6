//! Slices of a rolling snapshot: which share of a stage's entries and timers a checkpoint
//! carries, and whether the slices of a run of checkpoints make up the whole state.

use serde::{Deserialize, Serialize};

/// One of `count` slices of a stage's entries and timers. A rolling snapshot writes one slice
/// with a checkpoint's changes, in turn: the run of checkpoints since slice `i` was last
/// written holds every entry and timer of the state, either in a later checkpoint's changes
/// or, unchanged since, in slice `i`. The slice of an entry (the table a hash of its key picks,
/// seeded per process) stays fixed while it lives in this process and nothing reads it back,
/// so a restore needs no such rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// Which slice, below `count`.
    pub index: u32,
    /// How many slices make the whole: at most 64, and a divisor of eight for even slices.
    pub count: u32,
}

impl Slice {
    /// Whether the slice holds share `n`: the entries of table `n` (see
    /// [`super::entry_tables`]), or the timers whose time hashes to `n`.
    pub(super) fn holds(self, n: u64) -> bool {
        n % u64::from(self.count) == u64::from(self.index)
    }

    /// Whether a timer at `at` is in this slice (timers are shared by their time, which
    /// stays fixed while they are pending).
    pub(super) fn holds_timer(self, at: i64) -> bool {
        // Fibonacci hashing: the top byte of the product spreads nearby times evenly.
        self.holds((at as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56)
    }
}

/// Which slices of a rolling snapshot a run of checkpoints holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SliceCover {
    /// The slices' count, and a bit for each slice held.
    held: Option<(u32, u64)>,
}

impl SliceCover {
    /// The most slices a whole may be cut into and still be tracked here.
    pub const MAX_COUNT: u32 = 64;

    /// Adds a checkpoint's slice (`None`: it carries none). A slice cut into a different
    /// count than the ones before starts the cover again.
    pub fn add(&mut self, slice: Option<Slice>) {
        let Some(Slice { index, count }) = slice else {
            return;
        };
        if !(1..=Self::MAX_COUNT).contains(&count) || index >= count {
            return;
        }
        let held = match self.held {
            Some((c, held)) if c == count => held,
            _ => 0,
        };
        self.held = Some((count, held | 1 << index));
    }

    /// Whether every slice of the whole is held.
    pub fn whole(&self) -> bool {
        self.held
            .is_some_and(|(count, held)| held.count_ones() == count)
    }

    /// The slices held, for an error: "slices 0, 1 and 3 of 8".
    pub fn describe(&self) -> String {
        match self.held {
            None => "no slices".into(),
            Some((count, held)) => {
                let indices: Vec<_> = (0..count)
                    .filter(|i| held & 1 << i != 0)
                    .map(|i| i.to_string())
                    .collect();
                format!("slices {} of {count}", indices.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cover_is_whole_once_every_slice_of_one_count_is_held() {
        let mut cover = SliceCover::default();
        assert!(!cover.whole());
        for index in [0, 2, 3] {
            cover.add(Some(Slice { index, count: 4 }));
        }
        cover.add(None);
        cover.add(Some(Slice { index: 9, count: 4 }));
        assert!(!cover.whole());
        assert_eq!(cover.describe(), "slices 0, 2, 3 of 4");
        cover.add(Some(Slice { index: 1, count: 4 }));
        assert!(cover.whole());
        cover.add(Some(Slice { index: 0, count: 2 }));
        assert!(!cover.whole(), "a new count starts again");
    }

    #[test]
    fn slices_share_entries_and_timers_evenly() {
        let slice = |index| Slice { index, count: 8 };
        for index in 0..8 {
            let held = (0..256).filter(|s| slice(index).holds(*s)).count();
            assert_eq!(held, 32);
            let timers = (0..80_000i64)
                .filter(|at| slice(index).holds_timer(1_700_000_000_000 + at * 7))
                .count();
            assert!((9_000..11_000).contains(&timers), "{timers}");
        }
    }
}
