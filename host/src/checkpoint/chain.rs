//! [`CheckpointChain`]: a partition's committed checkpoint and the earlier checkpoints its
//! state builds on (a full snapshot then changes, or changes whose slices of a rolling
//! snapshot make up the whole state), and what the next checkpoint should carry.

use crate::state::{Slice, SliceCover};

/// A rolling snapshot cuts the state into this many slices: one table of each stage's
/// entries a slice.
pub const SLICES: u32 = crate::state::ENTRY_TABLES as u32;

/// A chain holds at most about this many checkpoints: a checkpoint carries a slice at least
/// every `MAX_CHAIN / SLICES`, so a restore reads a bounded number of objects.
pub const MAX_CHAIN: usize = 64;

/// What one checkpoint of a chain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// A full snapshot.
    Full,
    /// The changes since the checkpoint before it, with one slice of a rolling snapshot or
    /// none.
    Changes(Option<Slice>),
}

/// One checkpoint of a chain.
#[derive(Debug, Clone)]
struct Link {
    name: String,
    holds: Holds,
    /// Bytes of its changes (not of its slice).
    change_bytes: usize,
}

/// The committed checkpoint of one partition and the ones it builds on.
#[derive(Debug, Clone)]
pub struct CheckpointChain {
    prefix: String,
    /// Oldest first; the last is the committed one.
    links: Vec<Link>,
    /// Whether the next checkpoint must be a full snapshot.
    full_next: bool,
}

impl CheckpointChain {
    /// A chain ending in `name`, whose state builds on `base` (empty: `name` is a full
    /// snapshot).
    pub fn new(prefix: &str, base: Vec<String>, name: String) -> Self {
        let holds = if base.is_empty() {
            Holds::Full
        } else {
            Holds::Changes(None)
        };
        let unknown = |name| Link {
            name,
            holds: Holds::Changes(None),
            change_bytes: 0,
        };
        let mut links: Vec<Link> = base.into_iter().map(unknown).collect();
        links.push(Link {
            holds,
            ..unknown(name)
        });
        CheckpointChain {
            prefix: prefix.to_string(),
            links,
            full_next: false,
        }
    }

    /// The chain as a restore found it: the next checkpoint is a full snapshot, so an
    /// instance never builds on checkpoints another instance wrote (a previous owner that
    /// has not yet noticed it lost the partition may still delete its own).
    pub fn restored(mut self) -> Self {
        self.full_next = true;
        self
    }

    /// The key of the committed checkpoint.
    pub fn key(&self) -> String {
        self.keys().last().unwrap_or_default()
    }

    /// The keys of every checkpoint in the chain, oldest first.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = String> + '_ {
        self.links
            .iter()
            .map(|l| format!("{}/{}", self.prefix, l.name))
    }

    /// Whether `key` is one of the chain's checkpoints.
    pub fn contains(&self, key: &str) -> bool {
        self.keys().any(|k| k == key)
    }

    /// The names of the checkpoints the committed one builds on, oldest first.
    pub fn base(&self) -> Vec<String> {
        let before = &self.links[..self.links.len() - 1];
        before.iter().map(|l| l.name.clone()).collect()
    }

    /// How many checkpoints a restore reads.
    pub fn checkpoints(&self) -> usize {
        self.links.len()
    }

    /// The chain a checkpoint of `change_bytes` of changes, carrying `slice`, on top of this
    /// one makes: the shortest run of checkpoints, ending in the new one, that still starts
    /// from a full snapshot or holds every slice.
    pub fn extended(
        &self,
        name: String,
        change_bytes: usize,
        slice: Option<Slice>,
    ) -> CheckpointChain {
        let mut links = self.links.clone();
        links.push(Link {
            name,
            holds: Holds::Changes(slice),
            change_bytes,
        });
        let drop = (1..links.len())
            .take_while(|&first| restorable(&links[first..]))
            .count();
        links.drain(..drop);
        CheckpointChain {
            prefix: self.prefix.clone(),
            links,
            full_next: false,
        }
    }

    /// Whether the next checkpoint must be a full snapshot (after a restore).
    pub fn full_due(&self) -> bool {
        self.full_next
    }

    /// The slice the next checkpoint should carry, if one is due: the changes since the
    /// last slice (or full snapshot) passed a `SLICES`th of twice the state
    /// (`state_bytes`), or `MAX_CHAIN / SLICES` checkpoints went by without one. So a
    /// restore reads about the state and at most about twice the state of changes, and a
    /// partition that changes little writes a slice only now and then.
    pub fn next_slice(&self, state_bytes: usize) -> Option<Slice> {
        let last = self
            .links
            .iter()
            .rposition(|l| l.holds != Holds::Changes(None))
            .unwrap_or(0);
        let since = &self.links[last..];
        let change_bytes: usize = since.iter().map(|l| l.change_bytes).sum();
        let due = change_bytes.saturating_mul(SLICES as usize) >= state_bytes.saturating_mul(2)
            || since.len() >= MAX_CHAIN / SLICES as usize;
        let index = match self.links[last].holds {
            Holds::Changes(Some(slice)) if slice.count == SLICES => (slice.index + 1) % SLICES,
            _ => 0,
        };
        due.then_some(Slice {
            index,
            count: SLICES,
        })
    }
}

/// Whether a restore can start from the first of `links`: a full snapshot, or a run whose
/// slices make up the whole state.
fn restorable(links: &[Link]) -> bool {
    if links[0].holds == Holds::Full {
        return true;
    }
    let mut cover = SliceCover::default();
    for link in links {
        if let Holds::Changes(slice) = link.holds {
            cover.add(slice);
        }
    }
    cover.whole()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(index: u32) -> Option<Slice> {
        Some(Slice {
            index,
            count: SLICES,
        })
    }

    #[test]
    fn chains_grow_from_a_full_snapshot() {
        let full = CheckpointChain::new("g/t/0", Vec::new(), "a.ckpt".into());
        assert_eq!(full.key(), "g/t/0/a.ckpt");
        assert!(!full.full_due());
        let next = full.extended("b.ckpt".into(), 60, None);
        assert_eq!(next.base(), ["a.ckpt"]);
        assert!(full.base().is_empty());
        assert_eq!(next.key(), "g/t/0/b.ckpt");
        assert!(next.contains("g/t/0/a.ckpt") && !next.contains("g/t/0/c.ckpt"));
        assert!(!next.full_due());
        assert!(next.restored().full_due(), "after a restore");
    }

    #[test]
    fn slices_fall_due_with_the_changes_and_at_least_every_few_checkpoints() {
        let full = CheckpointChain::new("g/t/0", Vec::new(), "a.ckpt".into());
        // A state of 800 bytes: a slice is due after 200 bytes of changes.
        assert_eq!(full.next_slice(800), None);
        let small = full.extended("b".into(), 150, None);
        assert_eq!(small.next_slice(800), None);
        let enough = small.extended("c".into(), 50, None);
        assert_eq!(enough.next_slice(800), slice(0));
        let sliced = enough.extended("d".into(), 250, slice(0));
        assert_eq!(sliced.next_slice(800), slice(1), "its own changes count");
        let mut quiet = sliced.extended("e".into(), 0, slice(1));
        for i in 1..MAX_CHAIN / SLICES as usize {
            assert_eq!(quiet.next_slice(usize::MAX), None);
            quiet = quiet.extended(format!("q{i}"), 0, None);
        }
        assert_eq!(
            quiet.next_slice(usize::MAX),
            slice(2),
            "a slice now and then"
        );
    }

    #[test]
    fn chains_drop_what_the_slices_after_it_make_up() {
        let mut chain = CheckpointChain::new("g/t/0", Vec::new(), "full".into());
        chain = chain.extended("plain".into(), 10, None);
        for index in 0..SLICES - 1 {
            chain = chain.extended(format!("s{index}"), 10, slice(index));
            assert!(chain.contains("g/t/0/full"));
        }
        chain = chain.extended("s7".into(), 10, slice(7));
        assert_eq!(
            chain.checkpoints(),
            SLICES as usize,
            "the full snapshot and before it go"
        );
        assert_eq!(chain.base()[0], "s0");
        chain = chain.extended("plain2".into(), 10, None);
        assert_eq!(chain.checkpoints(), SLICES as usize + 1);
        chain = chain.extended("t0".into(), 10, slice(0));
        assert_eq!(chain.base()[0], "s1", "slice 0 again makes s0 needless");
        assert_eq!(chain.checkpoints(), SLICES as usize + 1);
        let mut long = chain;
        for i in 0..MAX_CHAIN * 2 {
            let slice = long.next_slice(usize::MAX);
            long = long.extended(format!("l{i}"), 0, slice);
        }
        assert!(
            long.checkpoints() <= MAX_CHAIN + 1,
            "{}",
            long.checkpoints()
        );
    }
}
