//! A deterministic synthetic clickstream: users with browsers and home cities, sessions
//! separated by long gaps, crawlers with bot user agents, a human-looking user who bursts
//! hundreds of events, private and missing IPs, slightly out-of-order delivery and a share of
//! malformed lines of every class.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::geodb::BLOCKS;

/// What to generate.
#[derive(Debug, Clone)]
pub struct ClickstreamSpec {
    /// Random seed; the same seed gives the same lines.
    pub seed: u64,
    /// Number of human users.
    pub users: usize,
    /// Number of crawler users.
    pub crawlers: usize,
    /// Share of malformed lines (0.01 = 1%).
    pub malformed_ratio: f64,
    /// Event time of the first event, ms.
    pub start_ms: i64,
}

impl Default for ClickstreamSpec {
    fn default() -> Self {
        ClickstreamSpec {
            seed: 7,
            users: 120,
            crawlers: 6,
            malformed_ratio: 0.01,
            start_ms: 1_795_680_000_000,
        }
    }
}

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
];

const CRAWLERS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "python-requests/2.32.3",
    "curl/8.5.0",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
];

const PAGES: &[&str] = &[
    "/",
    "/search?q=shoes",
    "/c/shoes",
    "/c/jackets",
    "/p/1042",
    "/p/2210",
    "/p/3307",
    "/p/4471",
    "/cart",
    "/checkout",
    "/account",
    "/help/returns",
];

const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://t.co/x1",
    "",
    "https://news.example.org/deals",
];

struct User {
    id: String,
    user_agent: Option<&'static str>,
    ip: Option<String>,
}

fn ip_in(rng: &mut StdRng, block: usize) -> String {
    let network = BLOCKS[block].network;
    let prefix = network.split('/').next().unwrap_or(network);
    if prefix.contains(':') {
        format!(
            "{}{:x}",
            prefix.trim_end_matches(':').to_string() + ":",
            rng.random_range(1..0xffffu32)
        )
    } else {
        let base: Vec<&str> = prefix.split('.').collect();
        format!(
            "{}.{}.{}.{}",
            base[0],
            base[1],
            base[2],
            rng.random_range(1..255)
        )
    }
}

fn time_string(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn event(
    seq: &mut u64,
    user: &User,
    ts: i64,
    kind: &str,
    page: &str,
    referrer: &str,
) -> serde_json::Value {
    *seq += 1;
    let mut e = json!({
        "event_id": format!("e-{:07}", *seq),
        "user_id": user.id,
        "ts": time_string(ts),
        "type": kind,
        "url": format!("https://shop.example.com{page}"),
        "referrer": referrer,
    });
    if let Some(ua) = user.user_agent {
        e["user_agent"] = json!(ua);
    }
    if let Some(ip) = &user.ip {
        e["ip"] = json!(ip);
    }
    e
}

fn malformed(rng: &mut StdRng, seq: u64, ts: i64) -> String {
    match rng.random_range(0..5) {
        0 => format!(
            "{{\"event_id\":\"e-bad-{seq}\",\"user_id\":\"u-9\",\"ts\":\"{}\",\"type\":\"click\"",
            time_string(ts)
        ),
        1 => format!(
            "{{\"event_id\":\"e-bad-{seq}\",\"ts\":\"{}\",\"type\":\"page_view\"}}",
            time_string(ts)
        ),
        2 => format!(
            "{{\"event_id\":\"e-bad-{seq}\",\"user_id\":\"u-9\",\"ts\":\"not a time\",\"type\":\"click\"}}"
        ),
        3 => format!("[\"e-bad-{seq}\",\"u-9\"]"),
        _ => format!("{{\"event_id\":\"e-bad-{seq}\",\"user_id\":\"u-9\",\"ts\":true}}"),
    }
}

/// The generated events' fields as an Avro record (`ts` as the RFC 3339 text it is).
pub const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "Click", "namespace": "weir.demo",
  "fields": [{"name": "event_id", "type": "string"}, {"name": "user_id", "type": "string"},
    {"name": "ts", "type": "string"}, {"name": "type", "type": "string"},
    {"name": "url", "type": "string"}, {"name": "referrer", "type": "string"},
    {"name": "user_agent", "type": ["null", "string"], "default": null},
    {"name": "ip", "type": ["null", "string"], "default": null}]}"#;

/// The Kafka key of a generated line: its `user_id`, so a user's events share a partition.
/// Malformed lines may have none.
pub fn user_key(line: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("user_id")?
        .as_str()
        .map(str::to_string)
}

/// Generates the clickstream as NDJSON lines in (slightly shuffled) event-time order.
pub fn generate(spec: &ClickstreamSpec) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut events: Vec<(i64, String)> = Vec::new();
    let mut seq = 0u64;
    let horizon = 10 * 3_600_000i64;

    for u in 0..spec.users {
        let ip = match rng.random_range(0..100) {
            0..=3 => Some(format!(
                "10.{}.{}.{}",
                rng.random_range(0..255),
                rng.random_range(0..255),
                rng.random_range(1..255)
            )),
            4..=5 => None,
            _ => {
                let block = rng.random_range(0..BLOCKS.len());
                Some(ip_in(&mut rng, block))
            }
        };
        let user = User {
            id: format!("u-{u:05}"),
            user_agent: Some(BROWSERS[rng.random_range(0..BROWSERS.len())]),
            ip,
        };
        let mut t = spec.start_ms + rng.random_range(0..horizon / 3);
        for _ in 0..rng.random_range(1..=4) {
            let referrer = REFERRERS[rng.random_range(0..REFERRERS.len())];
            for _ in 0..rng.random_range(3..=25) {
                let kind = match rng.random_range(0..100) {
                    0..=59 => "page_view",
                    60..=84 => "click",
                    85..=94 => "add_to_cart",
                    _ => "purchase",
                };
                let page = PAGES[rng.random_range(0..PAGES.len())];
                events.push((
                    t,
                    event(&mut seq, &user, t, kind, page, referrer).to_string(),
                ));
                t += rng.random_range(5_000..480_000);
            }
            // Gap between sessions: well beyond the default 30-minute session gap.
            t += rng.random_range(40 * 60_000..5 * 3_600_000);
        }
    }
    for c in 0..spec.crawlers {
        let block = rng.random_range(0..BLOCKS.len());
        let user = User {
            id: format!("crawler-{c:02}"),
            user_agent: Some(CRAWLERS[c % CRAWLERS.len()]),
            ip: Some(ip_in(&mut rng, block)),
        };
        let mut t = spec.start_ms + rng.random_range(0..horizon / 2);
        for _ in 0..rng.random_range(20..60) {
            let page = PAGES[rng.random_range(0..PAGES.len())];
            events.push((
                t,
                event(&mut seq, &user, t, "page_view", page, "").to_string(),
            ));
            t += rng.random_range(1_000..30_000);
        }
    }
    // A browser user agent, but 300 events in about two minutes: the rate rule catches it.
    let burst = User {
        id: "u-burst".into(),
        user_agent: Some(BROWSERS[0]),
        ip: Some(ip_in(&mut rng, 0)),
    };
    let mut t = spec.start_ms + horizon / 4;
    for _ in 0..300 {
        events.push((
            t,
            event(&mut seq, &burst, t, "click", "/p/1042", "").to_string(),
        ));
        t += rng.random_range(100..700);
    }
    // No user agent at all.
    let headless = User {
        id: "u-no-agent".into(),
        user_agent: None,
        ip: Some(ip_in(&mut rng, 1)),
    };
    for i in 0..5 {
        let t = spec.start_ms + horizon / 5 + i * 20_000;
        events.push((
            t,
            event(&mut seq, &headless, t, "page_view", "/", "").to_string(),
        ));
    }

    events.sort_by_key(|(t, _)| *t);
    // Delivery is not perfectly ordered: swap neighbours now and then (a few seconds apart).
    for i in 1..events.len() {
        if rng.random_bool(0.05) && events[i].0 - events[i - 1].0 < 3_000 {
            events.swap(i - 1, i);
        }
    }
    // Malformed lines go before randomly chosen events, taking their times; merged in one
    // pass so that millions of events cost no more than sorting them.
    let malformed_count = (events.len() as f64 * spec.malformed_ratio).round() as usize;
    let mut before: Vec<usize> = (0..malformed_count)
        .map(|_| rng.random_range(0..events.len()))
        .collect();
    before.sort_unstable();
    let mut lines = Vec::with_capacity(events.len() + malformed_count);
    let mut next_bad = before.iter().peekable();
    for (i, (ts, line)) in events.into_iter().enumerate() {
        while next_bad.next_if(|at| **at == i).is_some() {
            let k = lines.len() as u64;
            lines.push(malformed(&mut rng, k, ts));
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_mostly_valid() {
        let spec = ClickstreamSpec::default();
        let a = generate(&spec);
        assert_eq!(a, generate(&spec));
        assert!(a.len() > 2_000, "{}", a.len());
        let valid = a
            .iter()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|v| v.get("user_id").is_some())
            })
            .count();
        assert!(valid as f64 > a.len() as f64 * 0.98);
    }
}
