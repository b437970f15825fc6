//! How the rate rule does on a generated crowd: humans at human pace (with bursts of clicks
//! and page loads) and machine clients that send a human user agent at a steady rate. Prints
//! caught and leaked events per kind of client for the rule, and for the fixed-window rule
//! weir used before 0.2, and checks the rule's promises: no human is ever marked, and every
//! client at 3 events/s or more is caught within seconds.
//!
//! Run: `cargo test --release -p bot-filter rate_report -- --nocapture`.

use crate::rate::{RateRule, RateState};

/// The defaults: 120 events a minute, bursts of 20, marked for an hour.
const RULE: RateRule = RateRule {
    limit: 120,
    window_ms: 60_000,
    burst: 20,
    ttl_ms: 3_600_000,
};

/// A deterministic generator (xorshift), so the figures are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with mean `mean`.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Event times of a human over `span_ms`: page loads (a burst of 3-10 events within ~2 s)
/// separated by think time (mean 20 s), now and then a quick run of clicks.
fn human(rng: &mut Rng, span_ms: i64) -> Vec<i64> {
    let mut t = (rng.unit() * 60_000.0) as i64;
    let mut times = Vec::new();
    while t < span_ms {
        let burst = 3 + (rng.next() % 8) as i64;
        for _ in 0..burst {
            times.push(t);
            t += (rng.unit() * 250.0) as i64;
        }
        t += rng.exp(20_000.0) as i64 + 500;
    }
    times
}

/// Event times of a client sending `per_second` events a second (±20% jitter) for `span_ms`.
fn machine(rng: &mut Rng, per_second: f64, span_ms: i64) -> Vec<i64> {
    let mut t = (rng.unit() * 60_000.0) as i64;
    let mut times = Vec::new();
    let interval = 1000.0 / per_second;
    while t < span_ms {
        times.push(t);
        t += (interval * (0.8 + 0.4 * rng.unit())).max(1.0) as i64;
    }
    times
}

/// The fixed-window rule of weir before 0.2: more than `limit` events in a window anchored at
/// its first event marks the user for `ttl_ms`.
fn fixed_window(times: &[i64]) -> Vec<bool> {
    let (mut start, mut count, mut until) = (i64::MIN, 0u32, i64::MIN);
    times
        .iter()
        .map(|&t| {
            if t.saturating_sub(start) >= RULE.window_ms {
                start = t;
                count = 0;
            }
            count += 1;
            if count > RULE.limit {
                until = until.max(t + RULE.ttl_ms);
            }
            t < until
        })
        .collect()
}

fn token_bucket(times: &[i64]) -> Vec<bool> {
    let mut state: Option<RateState> = None;
    times
        .iter()
        .map(|&t| {
            let next = RULE.observe(state, t);
            state = Some(next);
            next.marks_bot(t)
        })
        .collect()
}

/// Caught and leaked events of a kind of client, and the median time to the first catch.
#[derive(Debug, Default)]
struct Tally {
    clients: usize,
    events: usize,
    caught: usize,
    caught_clients: usize,
    first_catch_ms: Vec<i64>,
}

impl Tally {
    fn add(&mut self, times: &[i64], marks: &[bool]) {
        self.clients += 1;
        self.events += times.len();
        self.caught += marks.iter().filter(|m| **m).count();
        if let Some(first) = marks.iter().position(|m| *m) {
            self.caught_clients += 1;
            self.first_catch_ms.push(times[first] - times[0]);
        }
    }

    fn median_catch_s(&mut self) -> Option<f64> {
        self.first_catch_ms.sort_unstable();
        let n = self.first_catch_ms.len();
        (n > 0).then(|| self.first_catch_ms[n / 2] as f64 / 1000.0)
    }
}

#[test]
fn rate_report() {
    const SPAN_MS: i64 = 20 * 60_000;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let kinds: Vec<(String, Vec<Vec<i64>>)> = std::iter::once((
        "human".to_string(),
        (0..2_000).map(|_| human(&mut rng, SPAN_MS)).collect(),
    ))
    .chain([1.0, 2.5, 3.0, 5.0, 10.0, 50.0].into_iter().map(|rate| {
        (
            format!("machine {rate}/s"),
            (0..50).map(|_| machine(&mut rng, rate, SPAN_MS)).collect(),
        )
    }))
    .collect();
    println!(
        "{:<16} {:>8} {:>9} | {:>24} {:>9} | {:>24} {:>9}",
        "clients (20 min)",
        "clients",
        "events",
        "token bucket: caught",
        "1st catch",
        "fixed window: caught",
        "1st catch"
    );
    for (name, clients) in &kinds {
        let (mut bucket, mut window) = (Tally::default(), Tally::default());
        for times in clients {
            bucket.add(times, &token_bucket(times));
            window.add(times, &fixed_window(times));
        }
        let share = |t: &Tally| 100.0 * t.caught as f64 / t.events.max(1) as f64;
        let catch = |t: &mut Tally| {
            t.median_catch_s()
                .map_or("-".into(), |s| format!("{s:.1} s"))
        };
        let (bucket_catch, window_catch) = (catch(&mut bucket), catch(&mut window));
        println!(
            "{name:<16} {:>8} {:>9} | {:>15} ({:>5.1}%) {:>9} | {:>15} ({:>5.1}%) {:>9}",
            bucket.clients,
            bucket.events,
            bucket.caught,
            share(&bucket),
            bucket_catch,
            window.caught,
            share(&window),
            window_catch,
        );
        if name == "human" {
            assert_eq!(bucket.caught, 0, "a human was marked a bot");
        }
        if let Some(rate) = name
            .strip_prefix("machine ")
            .and_then(|r| r.strip_suffix("/s"))
        {
            let rate: f64 = rate.parse().unwrap();
            if rate >= 3.0 {
                assert_eq!(
                    bucket.caught_clients, bucket.clients,
                    "{name}: a client slipped through"
                );
                assert!(
                    bucket.median_catch_s().unwrap() < 60.0,
                    "{name}: caught too late"
                );
            }
        }
    }
}
