//! The built-in list of user-agent substrings that only automated clients send (in
//! `patterns.txt`, which the Python and JavaScript versions read too), and the matcher that
//! finds the first one in a user agent.
//!
//! Sources: the crawler documentation of the search engines and AI companies named below,
//! the community list github.com/monperrus/crawler-user-agents and the bot list of Matomo's
//! device-detector. Criteria for an entry: it names a crawler, fetcher, monitor, scanner,
//! headless browser or HTTP library, and it does not occur in the user agent of any browser
//! or in-app browser that people use. That is why, for example, Yandex, Sogou and Daum are
//! listed by their robots' names ("yandexbot", "sogou web spider", "daumoa") and not by the
//! brand, whose apps and browsers humans use, and why Flutter's "dart:io" and iOS's
//! "CFNetwork" (app traffic) are not listed.
//!
//! Matching is ASCII case-insensitive and leftmost-first: the match starting earliest in the
//! user agent wins, so "Googlebot/2.1" reports "googlebot" rather than the generic "bot".

use aho_corasick::{AhoCorasick, MatchKind};

/// The pattern list shared with the Python and JavaScript versions of the filter.
const PATTERNS_FILE: &str = include_str!("../patterns.txt");

/// Known automated user-agent substrings, lowercase, in the order of `patterns.txt`: specific
/// names first, generic catch-alls last, so that a specific name sharing a start position
/// with a generic one wins.
pub(crate) fn builtin() -> impl Iterator<Item = &'static str> {
    entries().filter(|p| !p.starts_with('!'))
}

/// Substrings of human user agents that contain a generic pattern (`!` lines). Matched like
/// patterns, but a match is skipped: leftmost-first lets "cubot" (a phone brand in Android
/// user agents) start before the "bot" inside it and so hide it.
pub(crate) fn exemptions() -> impl Iterator<Item = &'static str> {
    entries().filter_map(|p| p.strip_prefix('!'))
}

/// The file's lines that are neither blank nor comments.
fn entries() -> impl Iterator<Item = &'static str> {
    PATTERNS_FILE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Finds the first bot pattern in a user agent.
#[derive(Debug)]
pub(crate) struct UaMatcher {
    automaton: AhoCorasick,
    /// Pattern names by pattern id; ids from `exempt_from` on are exemptions.
    names: Vec<String>,
    exempt_from: usize,
}

impl UaMatcher {
    /// Compiles the built-in list, `extra` (from config `extra_patterns`) and the exemptions.
    pub(crate) fn new(extra: &[String]) -> Result<Self, String> {
        let mut names: Vec<String> = builtin().map(str::to_string).collect();
        names.extend(extra.iter().cloned());
        let exempt_from = names.len();
        names.extend(exemptions().map(str::to_string));
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(&names)
            .map_err(|e| format!("config `extra_patterns`: cannot build the matcher: {e}"))?;
        Ok(UaMatcher {
            automaton,
            names,
            exempt_from,
        })
    }

    /// The id of the first bot pattern in `user_agent` (see [`Self::name`]).
    pub(crate) fn find(&self, user_agent: &str) -> Option<usize> {
        self.automaton
            .find_iter(user_agent)
            .map(|m| m.pattern().as_usize())
            .find(|id| *id < self.exempt_from)
    }

    /// The pattern with id `id`, as listed.
    pub(crate) fn name(&self, id: usize) -> &str {
        self.names.get(id).map_or("", String::as_str)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builtin_patterns_are_lowercase_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in builtin().chain(exemptions()) {
            assert_eq!(p, p.to_ascii_lowercase(), "{p} is not lowercase");
            assert!(seen.insert(p), "{p} is listed twice");
        }
        let count = builtin().count();
        assert!((80..=150).contains(&count), "{count} patterns");
        assert_eq!(exemptions().collect::<Vec<_>>(), ["cubot"]);
    }

    #[test]
    fn specific_name_wins_over_generic() {
        let m = UaMatcher::new(&[]).unwrap();
        assert_eq!(
            m.find_name("Mozilla/5.0 (compatible; YandexBot/3.0)"),
            Some("yandexbot")
        );
        assert_eq!(
            m.find_name("Mozilla/5.0 (compatible; SomeNewBot/1.0)"),
            Some("bot")
        );
    }

    #[test]
    fn exemption_hides_generic_but_not_later_matches() {
        let m = UaMatcher::new(&[]).unwrap();
        assert_eq!(
            m.find_name("Mozilla/5.0 (Linux; Android 10; CUBOT_X30) Chrome/120.0 Mobile"),
            None
        );
        assert_eq!(
            m.find_name("Mozilla/5.0 (Linux; Android 10; CUBOT_X30) curl/8.0"),
            Some("curl/")
        );
    }

    impl UaMatcher {
        fn find_name(&self, user_agent: &str) -> Option<&str> {
            self.find(user_agent).map(|id| self.name(id))
        }
    }
}
