//! The pattern each user-agent text matched, remembered: a clickstream repeats a few thousand
//! user agents, and a hash lookup costs far less than scanning the text for every pattern.
//! Bounded: when full it starts over, so a flood of unique user agents costs memory once.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;

/// Most user agents remembered at once.
const CAPACITY: usize = 8_192;

/// The texts of one hash (almost always one) with their verdicts.
type Bucket = Vec<(Box<[u8]>, Option<usize>)>;

/// User agent text → the id of the first bot pattern in it (`None`: no pattern), by hash.
#[derive(Debug, Default)]
pub(crate) struct Verdicts {
    hasher: RandomState,
    known: HashMap<u64, Bucket, RandomState>,
    len: usize,
}

/// Whether two texts are equal, compared eight bytes at a time: inside Wasm, `memcmp` is a
/// byte loop, and user agents run to a hundred bytes and more.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b_words, b_rest) = b.split_at(b.len() / 8 * 8);
    let word = |c: &[u8]| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    a_words
        .chunks_exact(8)
        .zip(b_words.chunks_exact(8))
        .all(|(x, y)| word(x) == word(y))
        && a_rest == b_rest
}

impl Verdicts {
    /// The verdict on `user_agent`, computed with `find` the first time it is seen.
    pub(crate) fn get(
        &mut self,
        user_agent: &str,
        find: impl FnOnce(&str) -> Option<usize>,
    ) -> Option<usize> {
        let text = user_agent.as_bytes();
        let hash = self.hasher.hash_one(text);
        if let Some(found) = self
            .known
            .get(&hash)
            .and_then(|bucket| bucket.iter().find(|(t, _)| same(t, text)))
        {
            return found.1;
        }
        let verdict = find(user_agent);
        if self.len >= CAPACITY {
            self.known.clear();
            self.len = 0;
        }
        self.known
            .entry(hash)
            .or_default()
            .push((text.into(), verdict));
        self.len += 1;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_each_text_and_stays_bounded() {
        let mut verdicts = Verdicts::default();
        let mut calls = 0;
        for _ in 0..3 {
            assert_eq!(
                verdicts.get("curl/8", |_| {
                    calls += 1;
                    Some(4)
                }),
                Some(4)
            );
        }
        assert_eq!(calls, 1);
        for i in 0..CAPACITY * 2 {
            verdicts.get(&format!("agent {i}"), |_| None);
        }
        assert!(verdicts.len <= CAPACITY);
    }

    #[test]
    fn compares_whole_texts() {
        let long = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        assert!(same(long.as_bytes(), long.as_bytes()));
        let mut other = long.as_bytes().to_vec();
        *other.last_mut().unwrap() = b'1';
        assert!(!same(long.as_bytes(), &other));
        other[3] = b'x';
        assert!(!same(&long.as_bytes()[..20], &other[..20]));
        assert!(!same(b"abc", b"abcd"));
    }
}
