//! Harness tests of the sessionizer; helpers here, scenarios in the submodules.

mod closing;
mod edges;

use serde_json::{Value, json};
use weir_sdk::testing::{TestHarness, TestOutput};

use crate::Sessionize;
use crate::session::OpenSession;

pub(super) const T0: i64 = 1_795_000_000_000;
pub(super) const MIN: i64 = 60_000;
/// Default gap plus default allowed lateness: a timer's distance from the session's last.
pub(super) const DEADLINE: i64 = 31 * MIN;

pub(super) fn harness(config: &[(&str, &str)]) -> TestHarness<Sessionize> {
    TestHarness::new(config).unwrap()
}

pub(super) fn page(url: &str) -> Value {
    json!({"event_id": "e", "user_id": "u-42", "type": "page_view", "url": url})
}

pub(super) fn click(url: &str) -> Value {
    json!({"event_id": "e", "user_id": "u-42", "type": "click", "url": url})
}

/// Processes one page view of `u-42` and returns the session id it was emitted with.
pub(super) fn view(h: &mut TestHarness<Sessionize>, t: i64, url: &str) -> String {
    emitted_id(&h.process_one("u-42", t, page(url)))
}

/// The session id of the single emitted output.
pub(super) fn emitted_id(outputs: &[TestOutput]) -> String {
    let emitted: Vec<&TestOutput> = outputs.iter().filter(|o| o.is_emit()).collect();
    assert_eq!(emitted.len(), 1, "{outputs:?}");
    emitted[0].value["session_id"].as_str().unwrap().to_string()
}

pub(super) fn open(h: &TestHarness<Sessionize>, key: &str) -> Vec<OpenSession<'static>> {
    let Some(raw) = h.state_bytes(key, "open") else {
        return Vec::new();
    };
    let open: Vec<OpenSession<'_>> = postcard::from_bytes(&raw).unwrap();
    open.into_iter().map(OpenSession::into_owned).collect()
}

pub(super) fn routed<'a>(outputs: &'a [TestOutput], route: &str) -> Vec<&'a Value> {
    outputs
        .iter()
        .filter(|o| o.route() == Some(route))
        .map(|o| &o.value)
        .collect()
}

pub(super) fn id(key: &str, anchor: i64) -> String {
    crate::session::session_id(key.as_bytes(), anchor)
}

#[test]
fn events_within_gap_share_a_session_and_are_emitted_with_its_id() {
    let mut h = harness(&[]);
    let input = page("/a");
    let out = h.process_one("u-42", T0, input.clone());
    assert_eq!(out.len(), 1);
    let mut expected = input;
    expected["session_id"] = json!(id("u-42", T0));
    assert_eq!(out[0].value, expected);
    assert_eq!(view(&mut h, T0 + 10 * MIN, "/b"), id("u-42", T0));
    assert_eq!(
        emitted_id(&h.process_one("u-42", T0 + 20 * MIN, click("/c"))),
        id("u-42", T0)
    );
    // Another user has sessions of its own.
    assert_eq!(
        emitted_id(&h.process_one("u-7", T0 + 5 * MIN, page("/x"))),
        id("u-7", T0 + 5 * MIN)
    );
    let sessions = open(&h, "u-42");
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!((s.anchor, s.start, s.last), (T0, T0, T0 + 20 * MIN));
    assert_eq!((s.event_count, s.page_views), (3, 2));
    assert_eq!(
        (s.first_url.as_deref(), s.last_url.as_deref()),
        (Some("/a"), Some("/c"))
    );
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[("gap", "half an hour")], "gap"),
        (&[("gap", "0s")], "gap"),
        (&[("max_duration", "0ms")], "max_duration"),
        (&[("allowed_lateness", "-1m")], "allowed_lateness"),
        (&[("late_action", "drop")], "late_action"),
        (&[("late_route", "")], "late_route"),
        (&[("user_field", "session_id")], "user_field"),
        (&[("gap_ms", "1000")], "gap_ms"),
    ];
    for (config, key) in cases {
        let err = TestHarness::<Sessionize>::new(config).err().unwrap();
        assert!(err.contains(key), "{err:?} does not name {key}");
    }
}
