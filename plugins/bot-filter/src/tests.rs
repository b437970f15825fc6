//! Harness tests of the bot filter: user-agent patterns, missing user agents, the rate rule
//! and config errors.

use serde_json::{Value, json};
use weir_sdk::testing::{TestHarness, TestOutput};

use crate::BotFilter;

const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91";
const SAMSUNG_INTERNET: &str = "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36";
const CUBOT_CHROME: &str = "Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36";

const T0: i64 = 1_795_000_000_000;

fn harness(config: &[(&str, &str)]) -> TestHarness<BotFilter> {
    TestHarness::new(config).unwrap()
}

fn event(ua: Option<Value>) -> Value {
    let mut e = json!({"event_id": "e-1", "user_id": "u-42", "type": "page_view",
        "url": "https://shop.example.com/p/12", "ip": "81.2.69.10"});
    if let Some(ua) = ua {
        e["user_agent"] = ua;
    }
    e
}

fn one(h: &mut TestHarness<BotFilter>, key: &str, t: i64, ua: &str) -> Vec<TestOutput> {
    h.process_one(key, t, event(Some(json!(ua))))
}

fn counter(h: &TestHarness<BotFilter>, name: &str) -> u64 {
    h.host().counters.get(name).copied().unwrap_or(0)
}

#[test]
fn real_crawlers_are_routed_with_the_matched_pattern() {
    let cases = [
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "googlebot",
        ),
        (
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "bingbot",
        ),
        (
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "ahrefsbot",
        ),
        ("curl/8.4.0", "curl/"),
        ("python-requests/2.31.0", "python-requests"),
        ("MOZILLA/5.0 (COMPATIBLE; GOOGLEBOT/2.1)", "googlebot"),
        ("PYTHON-REQUESTS/2.31.0", "python-requests"),
        (
            "Mozilla/5.0 (compatible; GPTBot/1.1; +https://openai.com/gptbot)",
            "gptbot",
        ),
    ];
    let mut h = harness(&[]);
    for (ua, pattern) in cases {
        let out = one(&mut h, "u-1", T0, ua);
        assert_eq!(out.len(), 1, "{ua}");
        assert_eq!(out[0].route(), Some("bots"), "{ua}");
        assert_eq!(
            out[0].value["bot_reason"],
            format!("user_agent:{pattern}"),
            "{ua}"
        );
        assert_eq!(out[0].value["user_agent"], ua);
    }
    assert_eq!(counter(&h, "bots_user_agent"), cases.len() as u64);
    assert_eq!(
        h.state::<crate::rate::RateState>("u-1", "rate"),
        None,
        "UA bots skip the rate rule"
    );
}

#[test]
fn real_browsers_pass_unchanged() {
    let mut h = harness(&[]);
    for ua in [
        CHROME_WINDOWS,
        SAFARI_IPHONE,
        FIREFOX_LINUX,
        EDGE,
        SAMSUNG_INTERNET,
        CUBOT_CHROME,
    ] {
        let input = event(Some(json!(ua)));
        let out = h.process_one("u-2", T0, input.clone());
        assert_eq!(out.len(), 1, "{ua}");
        assert!(out[0].is_emit(), "{ua}");
        assert_eq!(out[0].value, input, "{ua}");
    }
    assert_eq!(counter(&h, "humans"), 6);
}

#[test]
fn missing_user_agent_defaults_to_bot() {
    let mut h = harness(&[]);
    for ua in [
        None,
        Some(json!(null)),
        Some(json!(42)),
        Some(json!("")),
        Some(json!("  \t")),
    ] {
        let out = h.process_one("u-3", T0, event(ua.clone()));
        assert_eq!(out.len(), 1, "{ua:?}");
        assert_eq!(out[0].route(), Some("bots"));
        assert_eq!(out[0].value["bot_reason"], "missing_user_agent");
    }
    assert_eq!(counter(&h, "bots_missing_user_agent"), 5);
}

#[test]
fn missing_user_agent_allow_treats_event_as_human() {
    let mut h = harness(&[("missing_user_agent", "allow")]);
    let out = h.process_one("u-3", T0, event(None));
    assert!(out[0].is_emit());
    assert!(out[0].value.get("bot_reason").is_none());
    assert_eq!(counter(&h, "humans"), 1);
}

#[test]
fn missing_user_agent_dead_letter() {
    let mut h = harness(&[("missing_user_agent", "dead-letter")]);
    let out = h.process_one("u-3", T0, event(Some(json!(""))));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dead_letter_reason(), Some("missing user agent"));
    assert_eq!(counter(&h, "bots_missing_user_agent"), 1);
}

#[test]
fn custom_user_agent_field() {
    let mut h = harness(&[("user_agent_field", "ua")]);
    let out = h.process_one(
        "u-1",
        T0,
        json!({"ua": "Wget/1.21.4", "user_agent": CHROME_WINDOWS}),
    );
    assert_eq!(out[0].value["bot_reason"], "user_agent:wget/");
}

#[test]
fn rate_rule_trips_after_limit_within_window() {
    let mut h = harness(&[("rate_limit", "3"), ("rate_window", "10s")]);
    let routes: Vec<Option<String>> = (0..5)
        .map(|i| {
            one(&mut h, "u-4", T0 + i * 1_000, CHROME_WINDOWS)[0]
                .route()
                .map(String::from)
        })
        .collect();
    assert_eq!(
        routes,
        [None, None, None, Some("bots".into()), Some("bots".into())]
    );
    let out = one(&mut h, "u-4", T0 + 5_000, CHROME_WINDOWS);
    assert_eq!(out[0].value["bot_reason"], "rate");
    // Another user is not affected.
    assert!(one(&mut h, "u-5", T0 + 5_000, CHROME_WINDOWS)[0].is_emit());
    assert_eq!(counter(&h, "bots_rate"), 3);
    assert_eq!(counter(&h, "humans"), 4);
}

#[test]
fn rate_rule_does_not_trip_when_spread_out() {
    let mut h = harness(&[("rate_limit", "3"), ("rate_window", "10s")]);
    // Three events (the limit) per 10 s, in bursts of three 3 s apart.
    for i in 0..12 {
        let t = T0 + (i / 3) * 10_000 + (i % 3) * 3_000;
        assert!(
            one(&mut h, "u-4", t, CHROME_WINDOWS)[0].is_emit(),
            "event {i}"
        );
    }
    let state: crate::rate::RateState = h.state("u-4", "rate").unwrap();
    // Three events in 6 s, every 10 s: at the limit on average, never marked.
    assert_eq!((state.tat, state.bot_until), (T0 + 39_999, i64::MIN));
}

#[test]
fn bot_ttl_expires_in_event_time() {
    let mut h = harness(&[
        ("rate_limit", "2"),
        ("rate_window", "1m"),
        ("bot_ttl", "5m"),
    ]);
    for i in 0..3 {
        one(&mut h, "u-6", T0 + i, CHROME_WINDOWS);
    }
    let tripped_at = T0 + 2;
    // Quiet but still marked, in a later window.
    assert_eq!(
        one(&mut h, "u-6", tripped_at + 299_999, CHROME_WINDOWS)[0].route(),
        Some("bots")
    );
    // Marked for exactly bot_ttl after the tripping event.
    assert!(one(&mut h, "u-6", tripped_at + 300_000, CHROME_WINDOWS)[0].is_emit());
}

#[test]
fn a_quiet_users_rate_state_expires_after_the_longer_of_window_and_mark() {
    let mut h = harness(&[("rate_window", "1m"), ("bot_ttl", "5m")]);
    let ttl = &h.needs().ttls;
    assert_eq!((ttl.len(), ttl[0].name.as_str()), (1, "rate"));
    assert_eq!(ttl[0].ttl_ms, 300_000);
    one(&mut h, "u-10", T0, CHROME_WINDOWS);
    one(&mut h, "u-11", T0 + 200_000, CHROME_WINDOWS);
    h.advance_watermark(T0 + 299_999);
    assert!(h.state_bytes("u-10", "rate").is_some(), "not yet");
    h.advance_watermark(T0 + 300_000);
    assert!(h.state_bytes("u-10", "rate").is_none(), "quiet for bot_ttl");
    assert!(
        h.state_bytes("u-11", "rate").is_some(),
        "still within its lifetime"
    );
}

#[test]
fn user_agent_bots_do_not_feed_the_rate_rule() {
    let mut h = harness(&[("rate_limit", "1")]);
    for i in 0..5 {
        one(&mut h, "u-7", T0 + i, "curl/8.4.0");
    }
    assert!(one(&mut h, "u-7", T0 + 5, FIREFOX_LINUX)[0].is_emit());
}

#[test]
fn drop_action_outputs_nothing_for_bots() {
    let mut h = harness(&[("action", "drop"), ("rate_limit", "1")]);
    assert!(one(&mut h, "u-8", T0, "Googlebot/2.1").is_empty());
    assert!(h.process_one("u-8", T0, event(None)).is_empty());
    assert!(one(&mut h, "u-9", T0, EDGE)[0].is_emit());
    assert!(one(&mut h, "u-9", T0 + 1, EDGE).is_empty());
    assert_eq!(counter(&h, "bots_user_agent"), 1);
    assert_eq!(counter(&h, "bots_missing_user_agent"), 1);
    assert_eq!(counter(&h, "bots_rate"), 1);
}

#[test]
fn custom_route() {
    let mut h = harness(&[("route", "crawlers")]);
    assert_eq!(
        one(&mut h, "u-1", T0, "bingbot/2.0")[0].route(),
        Some("crawlers")
    );
}

#[test]
fn extra_patterns_extend_the_list() {
    let mut h = harness(&[("extra_patterns", "InternalMonitor, acme-probe ,")]);
    let out = one(&mut h, "u-1", T0, "Mozilla/5.0 (internalmonitor 2.0)");
    assert_eq!(out[0].value["bot_reason"], "user_agent:InternalMonitor");
    let out = one(&mut h, "u-1", T0, "ACME-Probe/1");
    assert_eq!(out[0].value["bot_reason"], "user_agent:acme-probe");
    let out = one(&mut h, "u-1", T0, "Googlebot/2.1");
    assert_eq!(out[0].value["bot_reason"], "user_agent:googlebot");
    assert!(one(&mut h, "u-1", T0, SAFARI_IPHONE)[0].is_emit());
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 9] = [
        (&[("rate_limit", "many")], "rate_limit"),
        (&[("rate_limit", "0")], "rate_limit"),
        (&[("rate_window", "soon")], "rate_window"),
        (&[("rate_window", "0s")], "rate_window"),
        (&[("bot_ttl", "-1h")], "bot_ttl"),
        (&[("action", "block")], "action"),
        (&[("missing_user_agent", "maybe")], "missing_user_agent"),
        (&[("route", " ")], "route"),
        (&[("rate_limt", "10")], "rate_limt"),
    ];
    for (config, key) in cases {
        let err = TestHarness::<BotFilter>::new(config).err().unwrap();
        assert!(err.contains(key), "{err:?} does not name {key}");
    }
}
