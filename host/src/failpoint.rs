//! Crash points for tests of exactly-once: `WEIR_FAILPOINT=<name>[:<n>]` makes the process
//! abort (like kill -9: nothing is flushed, no destructor runs) the n-th time (default the
//! first) it reaches the point named `name`. Without the variable, a hit is one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a crash point.
pub const ENV: &str = "WEIR_FAILPOINT";

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let raw = std::env::var(ENV).ok()?;
            let (name, at) = match raw.split_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                None => (raw, 1),
            };
            Some(Armed {
                name,
                at: at.max(1),
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks the point `name`; aborts the process if it is the armed one and its turn has come.
pub fn hit(name: &str) {
    if let Some(armed) = armed()
        && armed.name == name
        && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at
    {
        eprintln!("weir: failpoint {name} reached; aborting");
        std::process::abort();
    }
}
