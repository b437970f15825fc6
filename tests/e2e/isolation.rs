//! A plugin that traps, spins forever or allocates past its limit: each bad record is
//! dead-lettered with its reason, its neighbours are processed exactly once, and the host
//! keeps going.

use serde_json::json;
use weir::runtime::RuntimeError;

use crate::harness::{TestPipeline, engine, limits, plugin, records, wasm_stage};

fn hostile_pipeline() -> TestPipeline {
    let stage = wasm_stage("hostile", &[], limits(), None);
    TestPipeline::new(vec![Box::new(stage)], &["main", "timers"])
}

#[test]
fn bad_records_are_isolated_and_neighbours_processed_once() {
    let mut t = hostile_pipeline();
    let ts = 1_700_000_000_000i64;
    let input: Vec<_> = ["ok", "trap", "ok", "spin", "ok", "hog", "ok", "dead-letter"]
        .iter()
        .enumerate()
        .map(|(i, action)| json!({"user_id": "u1", "ts": ts + i as i64, "action": action, "n": i}))
        .collect();
    t.pipeline.process(&records(&input)).unwrap();

    let main = t.route("main");
    assert_eq!(
        main.iter()
            .map(|v| v["n"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 2, 4, 6]
    );
    // State written by the failed batch attempts was rolled back: the counter counts each
    // good record once.
    assert_eq!(
        main.iter()
            .map(|v| v["count"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    let dead = t.dead.letters();
    let reasons: Vec<(&str, u64)> = dead
        .iter()
        .map(|d| {
            (
                d.reason.as_str(),
                serde_json::from_slice::<serde_json::Value>(&d.value).unwrap()["n"]
                    .as_u64()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].0.starts_with("trap: ") && reasons[0].1 == 1,
        "{reasons:?}"
    );
    assert_eq!(reasons[1], ("timeout", 3));
    assert_eq!(reasons[2], ("memory limit", 5));
    assert_eq!(reasons[3], ("asked to dead-letter", 7));
    for d in &dead {
        assert_eq!(d.stage, "hostile");
        let (name, sha) = d.plugin.clone().unwrap();
        assert_eq!(name, "hostile");
        assert_eq!(sha.len(), 64);
        assert_eq!(d.provenance.as_ref().unwrap().source.as_ref(), "test");
    }

    // The host survived: the next batch runs on a fresh instance.
    t.pipeline
        .process(&records(&[
            json!({"user_id": "u1", "ts": ts + 100, "action": "ok", "n": 100}),
        ]))
        .unwrap();
    assert_eq!(t.route("main").last().unwrap()["count"], 5);
}

#[test]
fn a_trapping_timer_is_dead_lettered_and_others_fire() {
    let mut t = hostile_pipeline();
    let ts = 1_700_000_000_000i64;
    let input = [
        json!({"user_id": "trap-me", "ts": ts, "action": "timer"}),
        json!({"user_id": "fine", "ts": ts, "action": "timer"}),
    ];
    t.pipeline.process(&records(&input)).unwrap();
    t.pipeline.finish().unwrap();
    assert_eq!(t.route("timers"), [json!({"timer": ts + 1_000})]);
    let dead = t.dead.letters();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.starts_with("timer trap: "),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].key.as_deref(), Some(&b"trap-me"[..]));
}

#[test]
fn init_errors_and_invalid_files_are_rejected_with_reasons() {
    let engine = engine();
    let plugin_file = engine.load_file(&plugin("hostile")).unwrap();
    let config = vec![("fail_init".to_string(), "1".to_string())];
    let err =
        weir::pipeline::WasmStage::new(engine.clone(), "s", plugin_file, limits(), None, config)
            .err()
            .unwrap();
    assert!(
        matches!(&err, RuntimeError::Init { reason, .. } if reason.contains("fail_init")),
        "{err}"
    );

    let err = engine
        .load_bytes("garbage", b"not wasm at all")
        .unwrap_err();
    assert!(err.to_string().contains("not a valid component"), "{err}");
    // A core module is not a component.
    let err = engine.load_bytes("core", b"\0asm\x01\0\0\0").unwrap_err();
    assert!(err.to_string().contains("plugin core rejected"), "{err}");
    // A truncated component (a partially copied file).
    let bytes = std::fs::read(plugin("hostile")).unwrap();
    let err = engine
        .load_bytes("partial", &bytes[..bytes.len() / 2])
        .unwrap_err();
    assert!(err.to_string().contains("not a valid component"), "{err}");
    // A plugin built against the first contract names both versions.
    let err = engine
        .load_file(&plugin("legacy-v1"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weir:transform@0.1.0") && err.contains("weir:transform@0.2.0"),
        "{err}"
    );
}

#[test]
fn plugins_reach_no_environment_filesystem_or_network() {
    let mut t = hostile_pipeline();
    let input = [json!({"user_id": "u1", "ts": 1, "action": "sandbox"})];
    t.pipeline.process(&records(&input)).unwrap();
    let out = t.route("main");
    assert_eq!(out.len(), 1, "{:?}", t.dead.letters());
    assert_eq!(out[0]["env_vars"], 0);
    assert_eq!(out[0]["fs_read"], false);
    assert_eq!(out[0]["fs_write"], false);
    assert_eq!(out[0]["net"], false);
}

#[test]
fn each_kind_of_runaway_record_is_stopped_by_its_limit_and_rolled_back() {
    let settings = weir::runtime::InstanceSettings {
        output_limit: 256 << 10,
        state_limit: 1 << 20,
        timer_limit: 10_000,
        ..limits()
    };
    let stage = wasm_stage("hostile", &[], settings, None);
    let mut t = TestPipeline::new(vec![Box::new(stage)], &["main", "timers"]);
    let ts = 1_700_000_000_000i64;
    let actions = [
        "ok", "recurse", "ok", "flood", "ok", "timers", "ok", "hoard", "ok",
    ];
    let input: Vec<_> = actions
        .iter()
        .enumerate()
        .map(|(i, action)| json!({"user_id": "u1", "ts": ts + i as i64, "action": action, "n": i}))
        .collect();
    t.pipeline.process(&records(&input)).unwrap();

    let main = t.route("main");
    let seen =
        |field: &str| -> Vec<u64> { main.iter().map(|v| v[field].as_u64().unwrap()).collect() };
    assert_eq!(seen("n"), [0, 2, 4, 6, 8]);
    assert_eq!(
        seen("count"),
        [1, 2, 3, 4, 5],
        "state of failed calls was kept"
    );
    let reasons: Vec<String> = t.dead.letters().iter().map(|d| d.reason.clone()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    // Rust's stack lives in linear memory: overflowing it is an out-of-bounds access there
    // (or, for deep frames without locals, wasm's own call stack running out).
    assert!(
        reasons[0].starts_with("trap: ") && reasons[0].contains("depth"),
        "{reasons:?}"
    );
    assert!(reasons[1].starts_with("output limit: 4194"), "{reasons:?}");
    assert_eq!(
        reasons[2],
        "timer limit: the stage would hold more than 10000 pending timers"
    );
    assert_eq!(
        reasons[3],
        "state limit: the stage's state would pass 1048576 bytes"
    );
    // Nothing the refused calls stored or scheduled survived: one counter, no timers.
    let snapshot = t.pipeline.snapshot().unwrap();
    assert!(
        snapshot.len() < 1024,
        "{} bytes of state left",
        snapshot.len()
    );
}

#[test]
fn a_stage_whose_records_mostly_fail_opens_its_breaker_for_every_partition() {
    let config: weir::config::PipelineConfig = toml::from_str(&format!(
        r#"
        plugin_dir = {dir:?}
        [source.file]
        path = "unused.ndjson"
        [[stages]]
        name = "hostile"
        plugin = "hostile"
        cpu_limit = "100ms"
        breaker_open = "1s"
        [sinks.out]
        type = "ndjson"
        routes = ["main"]
        path = "unused-out.ndjson"
        [dead_letter]
        path = "unused-dlq.ndjson"
        "#,
        dir = plugin("hostile").parent().unwrap()
    ))
    .unwrap();
    config.validate().unwrap();
    let factory =
        weir::pipeline::build::PipelineFactory::new(&config, &config.plugin_dir, 2).unwrap();
    let routes = ["main", "timers"];
    let mut first = TestPipeline::new(factory.stages().unwrap(), &routes);
    let mut second = TestPipeline::new(factory.stages().unwrap(), &routes);
    let ts = 1_700_000_000_000i64;
    let batch = |action: &str, from: i64| -> Vec<serde_json::Value> {
        (0..20)
            .map(|i| json!({"user_id": format!("u{i}"), "ts": ts + from + i, "action": action}))
            .collect()
    };
    let status = || factory.registry().statuses().remove(0);

    // One batch call and three records alone time out; the other 17 records are not tried.
    first.pipeline.process(&records(&batch("spin", 0))).unwrap();
    let calls = status();
    assert_eq!((calls.calls.calls, calls.calls.timeouts), (4, 4));
    assert_eq!(calls.breaker, "open");
    let reasons: Vec<String> = first
        .dead
        .letters()
        .iter()
        .map(|d| d.reason.clone())
        .collect();
    assert_eq!(reasons.len(), 20);
    assert_eq!(reasons[..3], ["timeout", "timeout", "timeout"]);
    assert!(
        reasons[3..]
            .iter()
            .all(|r| r == "stage breaker open: timeout"),
        "{reasons:?}"
    );

    // Another partition's records skip the stage while it is open: no call at all.
    second
        .pipeline
        .process(&records(&batch("ok", 100)))
        .unwrap();
    assert_eq!(status().calls.calls, 4);
    assert!(second.route("main").is_empty());
    assert_eq!(second.dead.letters().len(), 20);

    // Once open time is over, a good batch is the trial that closes it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    second
        .pipeline
        .process(&records(&batch("ok", 200)))
        .unwrap();
    assert_eq!(second.route("main").len(), 20);
    assert_eq!(status().breaker, "closed");
}
