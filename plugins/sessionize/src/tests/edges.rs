//! Edge cases of session assignment: the gap boundary, out-of-order and late events, the
//! maximum duration and merging.

use serde_json::json;

use super::*;

#[test]
fn exact_gap_starts_a_new_session_one_ms_less_does_not() {
    let mut h = harness(&[]);
    let first = view(&mut h, T0, "/a");
    let second = view(&mut h, T0 + 30 * MIN, "/b");
    assert_ne!(first, second);
    assert_eq!(second, id("u-42", T0 + 30 * MIN));
    assert_eq!(view(&mut h, T0 + 60 * MIN - 1, "/c"), second);
    assert_eq!(open(&h, "u-42").len(), 2);
    // Backwards the same: exactly one gap before the start is out of reach.
    let mut h = harness(&[]);
    view(&mut h, T0 + 30 * MIN, "/b");
    assert_eq!(view(&mut h, T0, "/a"), id("u-42", T0));
    assert_eq!(view(&mut h, T0 + 1, "/a2"), id("u-42", T0));
}

#[test]
fn out_of_order_within_lateness_joins_the_right_session() {
    let mut h = harness(&[("allowed_lateness", "5m")]);
    let early = view(&mut h, T0, "/early");
    let sid = view(&mut h, T0 + 40 * MIN, "/b");
    view(&mut h, T0 + 45 * MIN, "/c");
    assert!(
        h.advance_watermark(T0 + 34 * MIN).is_empty(),
        "no deadline passed yet"
    );
    // Behind the watermark but within the allowed lateness, before the second session's
    // start and a full gap after the first session.
    assert_eq!(view(&mut h, T0 + 31 * MIN, "/a"), sid);
    assert_eq!(view(&mut h, T0 + 31 * MIN, "/a-again"), sid);
    let sessions = open(&h, "u-42");
    assert_eq!(sessions.len(), 2);
    assert_eq!(id("u-42", sessions[0].anchor), early);
    assert_eq!(sessions[0].event_count, 1);
    let s = &sessions[1];
    assert_eq!(
        (s.anchor, s.start, s.last, s.event_count),
        (T0 + 40 * MIN, T0 + 31 * MIN, T0 + 45 * MIN, 4)
    );
    // The earliest event's URL; a tie at the start keeps the one that arrived first.
    assert_eq!(
        (s.first_url.as_deref(), s.last_url.as_deref()),
        (Some("/a"), Some("/c"))
    );
}

#[test]
fn beyond_lateness_is_routed_late_without_touching_state() {
    let mut h = harness(&[]);
    view(&mut h, T0, "/a");
    view(&mut h, T0 + 10 * MIN, "/b");
    h.advance_watermark(T0 + 20 * MIN);
    let (state, timers) = (open(&h, "u-42"), h.timers());
    let out = h.process_one("u-42", T0 + 19 * MIN - 1, page("/late"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].route(), Some("late"));
    assert_eq!(out[0].value["late"], json!(true));
    assert!(out[0].value.get("session_id").is_none());
    assert_eq!((open(&h, "u-42"), h.timers()), (state, timers));
    assert_eq!(h.host().counters.get("late_events"), Some(&1));
    // Late for a user with no state creates none.
    assert_eq!(
        h.process_one("u-9", T0, page("/x"))[0].route(),
        Some("late")
    );
    assert!(open(&h, "u-9").is_empty());
    // Exactly at watermark - allowed_lateness is not late.
    assert_eq!(view(&mut h, T0 + 19 * MIN, "/on-time"), id("u-42", T0));
    assert_eq!(open(&h, "u-42")[0].event_count, 3);
}

#[test]
fn beyond_lateness_dead_letters_when_configured() {
    let mut h = harness(&[
        ("late_action", "dead-letter"),
        ("allowed_lateness", "30s"),
        ("late_route", "x"),
    ]);
    view(&mut h, T0, "/a");
    h.advance_watermark(T0 + 10 * MIN);
    let before = open(&h, "u-42");
    let t = T0 + 10 * MIN - 30_001;
    let out = h.process_one("u-42", t, page("/late"));
    assert_eq!(out.len(), 1);
    let expected = format!(
        "late event: {t} is behind watermark {} minus allowed lateness 30000",
        T0 + 10 * MIN
    );
    assert_eq!(out[0].dead_letter_reason(), Some(expected.as_str()));
    assert_eq!(open(&h, "u-42"), before);
}

#[test]
fn max_duration_splits_and_closes_the_first_session_at_once() {
    let mut h = harness(&[("max_duration", "1h")]);
    let first = view(&mut h, T0, "/a");
    view(&mut h, T0 + 20 * MIN, "/b");
    view(&mut h, T0 + 40 * MIN, "/c");
    // last - start stays just under an hour.
    assert_eq!(view(&mut h, T0 + 60 * MIN - 1, "/d"), first);
    // Timers are armed lazily: still the one set when the session opened.
    assert_eq!(h.timers(), [(T0 + DEADLINE, "u-42".to_string())]);

    let out = h.process_one("u-42", T0 + 60 * MIN, page("/e"));
    assert_eq!(out.len(), 3);
    let summary = &out[0].value;
    assert_eq!(out[0].route(), Some("sessions"));
    assert_eq!(summary["session_id"], json!(first));
    assert_eq!(
        (summary["end"].as_i64(), summary["event_count"].as_u64()),
        (Some(T0 + 60 * MIN - 1), Some(4))
    );
    assert_eq!(out[1].route(), Some("features"));
    assert_eq!(out[1].value["session_count"], 1);
    let second = emitted_id(&out);
    assert_ne!(second, first);
    assert_eq!(second, id("u-42", T0 + 60 * MIN));
    // The closed session's timer is gone; the new one has its own.
    assert_eq!(h.timers(), [(T0 + 60 * MIN + DEADLINE, "u-42".to_string())]);
    assert_eq!(open(&h, "u-42").len(), 1);
    assert_eq!(view(&mut h, T0 + 61 * MIN, "/f"), second);
    // Nothing is closed twice when the watermark moves on.
    let later = h.advance_watermark(T0 + 61 * MIN + DEADLINE);
    assert_eq!(routed(&later, "sessions").len(), 1);
    assert_eq!(routed(&later, "sessions")[0]["session_id"], json!(second));
}

#[test]
fn bridging_event_merges_into_the_earliest_anchor() {
    let mut h = harness(&[]);
    let later = view(&mut h, T0 + 50 * MIN, "/b");
    let earlier = view(&mut h, T0, "/a");
    assert_ne!(earlier, later);
    let key = "u-42".to_string();
    assert_eq!(
        h.timers(),
        [
            (T0 + DEADLINE, key.clone()),
            (T0 + 50 * MIN + DEADLINE, key.clone())
        ]
    );
    // 25 min after the first and before the second: within the gap of both.
    assert_eq!(
        emitted_id(&h.process_one("u-42", T0 + 25 * MIN, click("/bridge"))),
        earlier
    );
    let sessions = open(&h, "u-42");
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(
        (s.anchor, s.start, s.last, s.event_count, s.page_views),
        (T0, T0, T0 + 50 * MIN, 3, 2)
    );
    assert_eq!(
        (s.first_url.as_deref(), s.last_url.as_deref()),
        (Some("/a"), Some("/b"))
    );
    assert_eq!(h.timers(), [(T0 + 50 * MIN + DEADLINE, key)]);
    assert_eq!(view(&mut h, T0 + 70 * MIN, "/c"), earlier);
}
