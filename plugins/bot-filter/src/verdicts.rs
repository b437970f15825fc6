//! The pattern each user-agent text matched, remembered: a clickstream repeats a few thousand
//! user agents, and a hash lookup costs far less than scanning the text for every pattern.
//! Bounded: when full it starts over, so a flood of unique user agents costs memory once.

use std::collections::HashMap;

use foldhash::fast::RandomState;

/// Most user agents remembered at once.
const CAPACITY: usize = 8_192;

/// User agent text → the id of the first bot pattern in it (`None`: no pattern).
#[derive(Debug, Default)]
pub(crate) struct Verdicts {
    known: HashMap<Box<str>, Option<usize>, RandomState>,
}

impl Verdicts {
    /// The verdict on `user_agent`, computed with `find` the first time it is seen.
    pub(crate) fn get(
        &mut self,
        user_agent: &str,
        find: impl FnOnce(&str) -> Option<usize>,
    ) -> Option<usize> {
        if let Some(verdict) = self.known.get(user_agent) {
            return *verdict;
        }
        let verdict = find(user_agent);
        if self.known.len() >= CAPACITY {
            self.known.clear();
        }
        self.known.insert(user_agent.into(), verdict);
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
        assert!(verdicts.known.len() <= CAPACITY);
    }
}
