//! Failure points for tests of exactly-once and of shutdown: `WEIR_FAILPOINT=<name>[:<n>]`
//! makes the process abort (like kill -9: nothing is flushed, no destructor runs) the n-th
//! time (default the first) it reaches the point named `name`; with the suffix `@hang` the
//! thread hangs there instead, as on a server that never answers, and with `@stop` the process
//! stops itself (SIGSTOP) there, as a paused VM would, until a SIGCONT; with `@fail` the call
//! there fails instead (points checked with [`fails`]), as a store that refuses a write would.
//! Without the variable, a hit is one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a failure point.
pub const ENV: &str = "WEIR_FAILPOINT";

/// What an armed point does when its turn comes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Abort,
    Hang,
    Stop,
    Fail,
}

struct Armed {
    name: String,
    at: u64,
    action: Action,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let raw = std::env::var(ENV).ok()?;
            let (point, action) = if let Some(point) = raw.strip_suffix("@hang") {
                (point.to_string(), Action::Hang)
            } else if let Some(point) = raw.strip_suffix("@stop") {
                (point.to_string(), Action::Stop)
            } else if let Some(point) = raw.strip_suffix("@fail") {
                (point.to_string(), Action::Fail)
            } else {
                (raw, Action::Abort)
            };
            let (name, at) = match point.split_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                None => (point, 1),
            };
            Some(Armed {
                name,
                at: at.max(1),
                action,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Whether the point `name` is the armed one and its turn has come (counting this hit).
fn turn(name: &str) -> Option<Action> {
    let armed = armed()?;
    (armed.name == name && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at)
        .then_some(armed.action)
}

/// Whether the call at the point `name` must fail now (`@fail`).
pub fn fails(name: &str) -> bool {
    let failing = turn(name) == Some(Action::Fail);
    if failing {
        eprintln!("weir: failpoint {name} reached; failing");
    }
    failing
}

/// Marks the point `name`; aborts the process (or hangs the thread) if it is the armed one
/// and its turn has come.
pub fn hit(name: &str) {
    if let Some(action) = turn(name) {
        match action {
            Action::Hang => {
                eprintln!("weir: failpoint {name} reached; hanging");
                loop {
                    std::thread::park();
                }
            }
            Action::Stop => {
                eprintln!("weir: failpoint {name} reached; stopping until SIGCONT");
                // SAFETY: raise only sends a signal to this process.
                unsafe { libc::raise(libc::SIGSTOP) };
            }
            Action::Abort => {
                eprintln!("weir: failpoint {name} reached; aborting");
                std::process::abort();
            }
            // Only a point checked with `fails` can fail.
            Action::Fail => {}
        }
    }
}
