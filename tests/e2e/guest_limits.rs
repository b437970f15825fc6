//! A Python and a JavaScript plugin held to the same limits as a Rust one: a guest language's
//! runtime (CPython, SpiderMonkey) runs inside the sandbox, so an exception is a trap, a busy
//! loop meets the deadline, unbounded allocation meets the memory limit, and floods of
//! outputs, timers and state meet theirs. Each bad record is dead-lettered with its reason,
//! its neighbours are processed once, and the state of failed calls is rolled back.

use std::time::Duration;

use serde_json::json;
use weir::runtime::{InstanceSettings, RuntimeError};

use crate::harness::{TestPipeline, engine, guest_plugin, limits, records, wasm_stage_of};

const PYTHON: &str = "tests/plugins/hostile-py";
const JAVASCRIPT: &str = "tests/plugins/hostile-js";
const TS: i64 = 1_700_000_000_000;

fn input(actions: &[&str]) -> Vec<serde_json::Value> {
    actions
        .iter()
        .enumerate()
        .map(|(i, action)| json!({"user_id": "u1", "ts": TS + i as i64, "action": action, "n": i}))
        .collect()
}

fn pipeline(project: &str, settings: InstanceSettings) -> TestPipeline {
    let stage = wasm_stage_of(&guest_plugin(project), &[], settings, None);
    TestPipeline::new(vec![Box::new(stage)], &["main", "timers"])
}

fn reasons(t: &TestPipeline) -> Vec<String> {
    t.dead.letters().iter().map(|d| d.reason.clone()).collect()
}

/// What came out on `main`: each record's `n` and the state count it saw.
fn seen(t: &TestPipeline) -> Vec<(u64, u64)> {
    t.route("main")
        .iter()
        .map(|v| (v["n"].as_u64().unwrap(), v["count"].as_u64().unwrap()))
        .collect()
}

fn isolates_bad_records(project: &str) {
    let mut t = pipeline(project, limits());
    let actions = ["ok", "trap", "ok", "spin", "ok", "hog", "ok", "dead-letter"];
    t.pipeline.process(&records(&input(&actions))).unwrap();
    assert_eq!(seen(&t), [(0, 1), (2, 2), (4, 3), (6, 4)], "{project}");
    let reasons = reasons(&t);
    assert_eq!(reasons.len(), 4, "{project}: {reasons:?}");
    assert!(reasons[0].starts_with("trap: "), "{project}: {reasons:?}");
    assert_eq!(
        reasons[1..],
        ["timeout", "memory limit", "asked to dead-letter"],
        "{project}"
    );
    // The host survived: the next batch runs on a fresh instance, the state intact.
    let next = json!({"user_id": "u1", "ts": TS + 100, "action": "ok", "n": 100});
    t.pipeline.process(&records(&[next])).unwrap();
    assert_eq!(t.route("main").last().unwrap()["count"], 5, "{project}");
}

fn stops_runaway_outputs_timers_and_state(project: &str) {
    // A deadline long enough for the interpreter to reach each limit first.
    let settings = InstanceSettings {
        output_limit: 256 << 10,
        state_limit: 1 << 20,
        timer_limit: 10_000,
        cpu_limit: Duration::from_secs(5),
        ..limits()
    };
    let mut t = pipeline(project, settings);
    let actions = [
        "ok", "recurse", "ok", "flood", "ok", "timers", "ok", "hoard", "ok",
    ];
    t.pipeline.process(&records(&input(&actions))).unwrap();
    assert_eq!(
        seen(&t),
        [(0, 1), (2, 2), (4, 3), (6, 4), (8, 5)],
        "{project}: state of failed calls was kept"
    );
    let reasons = reasons(&t);
    assert_eq!(reasons.len(), 4, "{project}: {reasons:?}");
    // Unbounded recursion ends in the runtime's own error (RecursionError, InternalError),
    // uncaught: a trap.
    assert!(reasons[0].starts_with("trap: "), "{project}: {reasons:?}");
    assert!(
        reasons[1].starts_with("output limit: 4194"),
        "{project}: {reasons:?}"
    );
    assert_eq!(
        reasons[2..],
        [
            "timer limit: the stage would hold more than 10000 pending timers",
            "state limit: the stage's state would pass 1048576 bytes"
        ],
        "{project}"
    );
    let snapshot = t.pipeline.snapshot().unwrap();
    assert!(
        snapshot.len() < 1024,
        "{project}: {} bytes of state left",
        snapshot.len()
    );
}

fn dead_letters_a_trapping_timer(project: &str) {
    let mut t = pipeline(project, limits());
    let timers = [
        json!({"user_id": "trap-me", "ts": TS, "action": "timer"}),
        json!({"user_id": "fine", "ts": TS, "action": "timer"}),
    ];
    t.pipeline.process(&records(&timers)).unwrap();
    t.pipeline.finish().unwrap();
    assert_eq!(
        t.route("timers"),
        [json!({"timer": TS + 1_000})],
        "{project}"
    );
    let reasons = reasons(&t);
    assert_eq!(reasons.len(), 1, "{project}: {reasons:?}");
    assert!(
        reasons[0].starts_with("timer trap: "),
        "{project}: {reasons:?}"
    );
}

fn refuses_a_failed_init(project: &str) {
    let engine = engine();
    let plugin = engine.load_file(&guest_plugin(project)).unwrap();
    let config = vec![("fail_init".to_string(), "1".to_string())];
    let err = weir::pipeline::WasmStage::new(engine.clone(), "s", plugin, limits(), None, config)
        .err()
        .unwrap();
    assert!(
        matches!(&err, RuntimeError::Init { reason, .. } if reason.contains("init refused: fail_init is set")),
        "{project}: {err}"
    );
}

#[test]
fn python_plugins_are_held_to_every_limit() {
    isolates_bad_records(PYTHON);
    stops_runaway_outputs_timers_and_state(PYTHON);
    dead_letters_a_trapping_timer(PYTHON);
    refuses_a_failed_init(PYTHON);
}

#[test]
fn javascript_plugins_are_held_to_every_limit() {
    isolates_bad_records(JAVASCRIPT);
    stops_runaway_outputs_timers_and_state(JAVASCRIPT);
    dead_letters_a_trapping_timer(JAVASCRIPT);
    refuses_a_failed_init(JAVASCRIPT);
}

#[test]
fn python_plugins_reach_no_environment_filesystem_or_network() {
    let mut t = pipeline(PYTHON, limits());
    let probe = json!({"user_id": "u1", "ts": 1, "action": "sandbox", "n": 0});
    t.pipeline.process(&records(&[probe])).unwrap();
    let out = t.route("main");
    assert_eq!(out.len(), 1, "{:?}", reasons(&t));
    assert_eq!(
        (
            &out[0]["env_vars"],
            &out[0]["fs_read"],
            &out[0]["fs_write"],
            &out[0]["net"]
        ),
        (&json!(0), &json!(false), &json!(false), &json!(false))
    );
}
