//! Closing sessions: summaries, features, timers and deterministic ids.

use serde_json::{Value, json};
use weir_sdk::testing::TestEvent;

use super::*;
use crate::output::Features;

#[test]
fn summary_and_features_after_the_watermark_passes() {
    let mut h = harness(&[]);
    h.process_one("u-42", T0, page("/a"));
    h.process_one("u-42", T0 + 5 * MIN, click("/b"));
    h.process_one("u-42", T0 + 10 * MIN, page("/c"));
    assert!(h.advance_watermark(T0 + 10 * MIN + DEADLINE - 1).is_empty());
    let out = h.advance_watermark(T0 + 10 * MIN + DEADLINE);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].route(), Some("sessions"));
    assert_eq!(
        out[0].value,
        json!({"user_id": "u-42", "session_id": id("u-42", T0), "start": T0, "end": T0 + 10 * MIN,
            "duration_ms": 10 * MIN, "event_count": 3, "page_views": 2, "first_url": "/a", "last_url": "/c"})
    );
    assert_eq!(out[1].route(), Some("features"));
    assert_eq!(
        out[1].value,
        json!({"user_id": "u-42", "session_count": 1, "last_session_duration_ms": 10 * MIN,
            "last_session_events": 3, "total_events": 3, "updated_at": T0 + 10 * MIN})
    );
    assert!(
        h.state_bytes("u-42", "open").is_none(),
        "open state deleted"
    );
    assert!(h.timers().is_empty());

    h.process_one("u-42", T0 + 2 * 60 * MIN, json!({"type": "page_view"}));
    h.process_one("u-42", T0 + 2 * 60 * MIN + MIN, page("/z"));
    let out = h.advance_watermark(T0 + 5 * 60 * MIN);
    let summary = routed(&out, "sessions")[0];
    assert_eq!(
        (summary["first_url"].clone(), summary["last_url"].clone()),
        (Value::Null, json!("/z"))
    );
    assert_eq!(
        *routed(&out, "features")[0],
        json!({"user_id": "u-42", "session_count": 2, "last_session_duration_ms": MIN,
            "last_session_events": 2, "total_events": 5, "updated_at": T0 + 2 * 60 * MIN + MIN})
    );
    let features: Features = h.state("u-42", "features").unwrap();
    assert_eq!(features.last_session_end, T0 + 2 * 60 * MIN + MIN);
    assert_eq!(h.host().counters.get("sessions_closed"), Some(&2));
}

#[test]
fn timers_are_armed_lazily_and_move_to_the_deadline_when_they_fire_early() {
    let mut h = harness(&[]);
    let key = || "u-42".to_string();
    view(&mut h, T0, "/a");
    assert_eq!(h.timers(), [(T0 + DEADLINE, key())]);
    // A later event moves the deadline but not the timer: no host call per event.
    view(&mut h, T0 + 5 * MIN, "/b");
    view(&mut h, T0 + 2 * MIN, "/a2");
    assert_eq!(h.timers(), [(T0 + DEADLINE, key())]);
    // The early timer fires, closes nothing, and re-arms at the real deadline.
    let out = h.advance_watermark(T0 + DEADLINE);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.timers(), [(T0 + 5 * MIN + DEADLINE, key())]);
    view(&mut h, T0 + 3 * 60 * MIN, "/next");
    assert_eq!(
        h.timers(),
        [
            (T0 + 5 * MIN + DEADLINE, key()),
            (T0 + 3 * 60 * MIN + DEADLINE, key())
        ]
    );
    let out = h.advance_watermark(T0 + 5 * MIN + DEADLINE);
    assert_eq!(routed(&out, "sessions").len(), 1);
    assert_eq!(routed(&out, "sessions")[0]["event_count"], json!(3));
}

#[test]
fn timer_closes_only_the_sessions_past_their_deadline() {
    let mut h = harness(&[("user_field", "uid")]);
    let first = view(&mut h, T0, "/a");
    let second = view(&mut h, T0 + 2 * 60 * MIN, "/b");
    let out = h.advance_watermark(T0 + DEADLINE);
    let summaries = routed(&out, "sessions");
    assert_eq!(summaries.len(), 1);
    assert_eq!(
        (
            summaries[0]["uid"].clone(),
            summaries[0]["session_id"].clone()
        ),
        (json!("u-42"), json!(first))
    );
    assert_eq!(routed(&out, "features")[0]["uid"], "u-42");
    let remaining = open(&h, "u-42");
    assert_eq!(remaining.len(), 1);
    assert_eq!(id("u-42", remaining[0].anchor), second);
}

#[test]
fn session_ids_are_deterministic() {
    let input = [
        TestEvent::new("u-1", T0 + 50 * MIN, page("/b")),
        TestEvent::new("u-2", T0, page("/x")),
        TestEvent::new("u-1", T0, page("/a")),
        TestEvent::new("u-1", T0 + 25 * MIN, page("/bridge")),
        TestEvent::new("u-1", T0 + 3 * 60 * MIN, page("/c")),
    ];
    let run = || {
        let mut h = harness(&[]);
        let mut ids: Vec<Value> = h
            .process(&input)
            .into_iter()
            .map(|o| o.value["session_id"].clone())
            .collect();
        let closed = h.advance_watermark(T0 + 24 * 60 * MIN);
        ids.extend(
            routed(&closed, "sessions")
                .into_iter()
                .map(|s| s["session_id"].clone()),
        );
        ids
    };
    let ids = run();
    assert_eq!(ids, run());
    let expected: Vec<Value> = [
        id("u-1", T0 + 50 * MIN),
        id("u-2", T0),
        id("u-1", T0),
        id("u-1", T0),
        id("u-1", T0 + 3 * 60 * MIN),
        // Closed in deadline order.
        id("u-2", T0),
        id("u-1", T0),
        id("u-1", T0 + 3 * 60 * MIN),
    ]
    .into_iter()
    .map(Value::from)
    .collect();
    assert_eq!(ids, expected);
}
