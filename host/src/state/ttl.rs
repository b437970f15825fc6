//! State lifetimes in event time: which state names of a stage expire, after how long, and
//! what restarts the count (from the plugin's declarations and the stage's `state_ttl`).

use std::time::Duration;

use weir_sdk::abi::{StateTtl, TtlRefresh};

/// How long the entries of one state name live untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Event-time ms after the last touch.
    pub ms: i64,
    /// What touches an entry.
    pub refresh: TtlRefresh,
}

/// The lifetimes of a stage's state names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TtlPolicy {
    names: Vec<(Box<[u8]>, Lifetime)>,
    default: Option<Lifetime>,
}

impl TtlPolicy {
    /// The plugin's `declared` lifetimes, and `default` (refreshed on write) for every other
    /// name.
    pub fn new(declared: &[StateTtl], default: Option<Duration>) -> Self {
        let ms = |ms: u128| i64::try_from(ms).unwrap_or(i64::MAX).max(1);
        TtlPolicy {
            names: declared
                .iter()
                .map(|t| {
                    let lifetime = Lifetime {
                        ms: ms(u128::from(t.ttl_ms)),
                        refresh: t.refresh,
                    };
                    (t.name.as_bytes().into(), lifetime)
                })
                .collect(),
            default: default.map(|d| Lifetime {
                ms: ms(d.as_millis()),
                refresh: TtlRefresh::OnWrite,
            }),
        }
    }

    /// Whether nothing expires.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.default.is_none()
    }

    /// The lifetime of entries under `name`; `None`: they live until deleted.
    pub fn of(&self, name: &[u8]) -> Option<Lifetime> {
        self.names
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, l)| *l)
            .or(self.default)
    }

    /// The shortest lifetime, ms.
    pub fn shortest(&self) -> Option<i64> {
        self.names
            .iter()
            .map(|(_, l)| l.ms)
            .chain(self.default.map(|l| l.ms))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_names_win_over_the_stage_default() {
        let declared = [StateTtl {
            name: "rate".into(),
            ttl_ms: 60_000,
            refresh: TtlRefresh::OnReadAndWrite,
        }];
        let policy = TtlPolicy::new(&declared, Some(Duration::from_secs(3600)));
        assert_eq!(policy.of(b"rate").map(|l| l.ms), Some(60_000));
        assert_eq!(
            policy.of(b"rate").map(|l| l.refresh),
            Some(TtlRefresh::OnReadAndWrite)
        );
        assert_eq!(policy.of(b"other").map(|l| l.ms), Some(3_600_000));
        assert_eq!(policy.shortest(), Some(60_000));
        let none = TtlPolicy::new(&[], None);
        assert!(none.is_empty() && none.of(b"rate").is_none());
    }
}
