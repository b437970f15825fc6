//! Which dead letters a `weir dlq` command takes: by reason (a regular expression), stage,
//! class and time.

use regex::Regex;

/// A filter over dead letters; an empty one takes them all.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only reasons matching this.
    pub reason: Option<Regex>,
    /// Only dead letters raised at this stage (`decode`, a stage name, `sink:<name>`).
    pub stage: Option<String>,
    /// Only this class (`decode`, `plugin`, `trap`, ...; see `DeadLetterClass`).
    pub class: Option<String>,
    /// Only dead letters written at or after this time (ms).
    pub since_ms: Option<i64>,
}

impl Selection {
    /// Whether a dead letter with this reason, stage and class, written at `at_ms`, is taken.
    pub fn takes(&self, reason: &str, stage: &str, class: &str, at_ms: i64) -> bool {
        self.reason.as_ref().is_none_or(|r| r.is_match(reason))
            && self.stage.as_ref().is_none_or(|s| s == stage)
            && self.class.as_ref().is_none_or(|c| c == class)
            && self.since_ms.is_none_or(|since| at_ms >= since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_matches_every_given_part() {
        assert!(Selection::default().takes("x", "decode", "decode", 0));
        let selection = Selection {
            reason: Some(Regex::new("^invalid").unwrap()),
            stage: Some("decode".into()),
            class: Some("decode".into()),
            since_ms: Some(100),
        };
        assert!(selection.takes("invalid json: x", "decode", "decode", 100));
        assert!(!selection.takes("bad", "decode", "decode", 100));
        assert!(!selection.takes("invalid json", "ip-geo", "decode", 100));
        assert!(!selection.takes("invalid json", "decode", "trap", 100));
        assert!(!selection.takes("invalid json", "decode", "decode", 99));
    }
}
