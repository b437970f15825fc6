//! [`CheckpointChain`]: a partition's committed checkpoint and the earlier checkpoints its
//! state builds on (a full snapshot, then changes), and when the next checkpoint should be a
//! full snapshot again.

/// At most this many checkpoints in a chain (the full snapshot and its changes), so a restore
/// reads a bounded number of objects.
pub const MAX_CHAIN: usize = 64;

/// The committed checkpoint of one partition and the ones it builds on.
#[derive(Debug, Clone)]
pub struct CheckpointChain {
    prefix: String,
    /// Names under `prefix`, oldest (the full snapshot) first; the last is the committed one.
    names: Vec<String>,
    /// Bytes of the changes after the full snapshot.
    change_bytes: usize,
    /// Whether the next checkpoint must be a full snapshot whatever the sizes.
    full_next: bool,
}

impl CheckpointChain {
    /// A chain ending in `name`, whose state builds on `base` (empty: `name` is a full
    /// snapshot), with no changes counted yet.
    pub fn new(prefix: &str, base: Vec<String>, name: String) -> Self {
        let mut names = base;
        names.push(name);
        CheckpointChain {
            prefix: prefix.to_string(),
            names,
            change_bytes: 0,
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
        self.names.iter().map(|n| format!("{}/{n}", self.prefix))
    }

    /// Whether `key` is one of the chain's checkpoints.
    pub fn contains(&self, key: &str) -> bool {
        self.keys().any(|k| k == key)
    }

    /// The names of the checkpoints the committed one builds on, oldest first.
    pub fn base(&self) -> &[String] {
        &self.names[..self.names.len() - 1]
    }

    /// The chain a checkpoint of `change_bytes` of changes on top of this one makes.
    pub fn extended(&self, name: String, change_bytes: usize) -> CheckpointChain {
        CheckpointChain {
            change_bytes: self.change_bytes + change_bytes,
            ..CheckpointChain::new(&self.prefix, self.names.clone(), name)
        }
    }

    /// Whether the next checkpoint should be a full snapshot: the chain is at its longest,
    /// or its changes already outweigh twice the state (`state_bytes`), so a restore reads
    /// at most about three times the state, and the store keeps at most about that plus the
    /// next full snapshot.
    pub fn full_due(&self, state_bytes: usize) -> bool {
        self.full_next
            || self.names.len() >= MAX_CHAIN
            || self.change_bytes > state_bytes.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_grow_until_a_full_snapshot_is_due() {
        let full = CheckpointChain::new("g/t/0", Vec::new(), "a.ckpt".into());
        assert_eq!(full.key(), "g/t/0/a.ckpt");
        assert!(!full.full_due(100));
        let next = full.extended("b.ckpt".into(), 60);
        assert_eq!(next.base(), ["a.ckpt"]);
        assert!(full.base().is_empty());
        assert_eq!(next.key(), "g/t/0/b.ckpt");
        assert!(next.contains("g/t/0/a.ckpt") && !next.contains("g/t/0/c.ckpt"));
        assert!(!next.full_due(100));
        let longer = next.extended("c.ckpt".into(), 100);
        assert!(
            !longer.full_due(100),
            "160 bytes of changes on 100 of state"
        );
        assert!(
            longer.extended("d.ckpt".into(), 41).full_due(100),
            "201 bytes of changes on 100 of state"
        );
        let mut long = full;
        for i in 1..MAX_CHAIN {
            assert!(!long.full_due(usize::MAX));
            long = long.extended(format!("{i}.ckpt"), 0);
        }
        assert!(long.full_due(usize::MAX), "{MAX_CHAIN} checkpoints");
        assert!(next.restored().full_due(usize::MAX), "after a restore");
    }
}
