//! Failure points for tests of exactly-once and of shutdown: `WEIR_FAILPOINT=<name>[:<n>]`
//! makes the process abort (like kill -9: nothing is flushed, no destructor runs) the n-th
//! time (default the first) it reaches the point named `name`; with the suffix `@hang` the
//! thread hangs there instead, as on a server that never answers. Without the variable, a
//! hit is one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a failure point.
pub const ENV: &str = "WEIR_FAILPOINT";

struct Armed {
    name: String,
    at: u64,
    hang: bool,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let raw = std::env::var(ENV).ok()?;
            let (point, hang) = match raw.strip_suffix("@hang") {
                Some(point) => (point.to_string(), true),
                None => (raw, false),
            };
            let (name, at) = match point.split_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                None => (point, 1),
            };
            Some(Armed {
                name,
                at: at.max(1),
                hang,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks the point `name`; aborts the process (or hangs the thread) if it is the armed one
/// and its turn has come.
pub fn hit(name: &str) {
    if let Some(armed) = armed()
        && armed.name == name
        && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at
    {
        if armed.hang {
            eprintln!("weir: failpoint {name} reached; hanging");
            loop {
                std::thread::park();
            }
        }
        eprintln!("weir: failpoint {name} reached; aborting");
        std::process::abort();
    }
}
