//! Heartbeats of the threads that move records: the Kafka driver and the file workers beat
//! once per turn of their loops (a turn ends at least every poll timeout, with input or not),
//! and `/healthz` fails once one of them has not beaten for `[admin] stall_timeout`, so a
//! wedged thread gets its process restarted by Kubernetes or systemd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A registered thread's last beat, in ms since [`epoch`].
struct Beat {
    name: String,
    id: u64,
    at: Arc<AtomicU64>,
}

fn hearts() -> MutexGuard<'static, Vec<Beat>> {
    static HEARTS: Mutex<Vec<Beat>> = Mutex::new(Vec::new());
    HEARTS.lock().unwrap_or_else(|p| p.into_inner())
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// One thread's heartbeat; dropping it (the thread's loop ended) unregisters it.
pub struct Heart {
    id: u64,
    at: Arc<AtomicU64>,
}

impl Heart {
    /// Registers a thread named `name` (as `/healthz` will name it), beating now.
    pub fn new(name: &str) -> Heart {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let at = Arc::new(AtomicU64::new(now_ms()));
        hearts().push(Beat {
            name: name.to_string(),
            id,
            at: at.clone(),
        });
        Heart { id, at }
    }

    /// A turn of the loop ended.
    pub fn beat(&self) {
        self.at.store(now_ms(), Ordering::Relaxed);
    }
}

impl Drop for Heart {
    fn drop(&mut self) {
        hearts().retain(|b| b.id != self.id);
    }
}

/// The registered threads that have not beaten for longer than `timeout`, with how long,
/// longest first.
pub fn stalled(timeout: Duration) -> Vec<(String, Duration)> {
    let now = now_ms();
    let mut stalled: Vec<_> = hearts()
        .iter()
        .map(|b| {
            let silent = now.saturating_sub(b.at.load(Ordering::Relaxed));
            (b.name.clone(), Duration::from_millis(silent))
        })
        .filter(|(_, silent)| *silent > timeout)
        .collect();
    stalled.sort_by_key(|(_, silent)| std::cmp::Reverse(*silent));
    stalled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_stops_beating_is_named_once_past_the_timeout_and_forgotten_when_dropped() {
        let heart = Heart::new("liveness-test-driver");
        let named = |timeout| {
            stalled(timeout)
                .iter()
                .any(|(name, _)| name == "liveness-test-driver")
        };
        std::thread::sleep(Duration::from_millis(60));
        assert!(named(Duration::from_millis(30)));
        assert!(!named(Duration::from_secs(60)));
        heart.beat();
        assert!(!named(Duration::from_millis(30)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(named(Duration::from_millis(30)));
        drop(heart);
        assert!(!named(Duration::from_millis(30)));
    }
}
