//! The three bundled plugins as built Wasm components, against a MaxMind database generated
//! by the test: known ranges enrich to known places, bots leave, sessions close.

use serde_json::json;

use crate::harness::{TestPipeline, geo, limits, records, wasm_stage};

#[test]
fn ip_geo_enriches_known_ranges_and_tags_the_rest() {
    let (_dir, db) = geo();
    assert_eq!(db.database_type(), "GeoLite2-City");
    let stage = wasm_stage("ip-geo", &[], limits(), Some(db));
    let mut t = TestPipeline::new(vec![Box::new(stage)], &["main"]);
    let ips = [
        json!("81.2.69.77"),
        json!("2a02:cf40:1::5"),
        json!("41.76.8.9"),
        json!("8.8.8.8"),
        json!("10.1.2.3"),
        json!("127.0.0.1"),
        json!("192.0.2.1"),
        json!("garbage"),
        serde_json::Value::Null,
    ];
    let input: Vec<_> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| json!({"user_id": "u", "ts": 1000 + i, "ip": ip}))
        .collect();
    t.pipeline.process(&records(&input)).unwrap();
    let out = t.route("main");
    let status: Vec<&str> = out
        .iter()
        .map(|v| v["geo_status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        [
            "ok",
            "ok",
            "ok",
            "not_found",
            "private",
            "loopback",
            "reserved",
            "malformed",
            "missing"
        ]
    );
    assert_eq!(
        (
            &out[0]["geo_country"],
            &out[0]["geo_region"],
            &out[0]["geo_city"],
            &out[0]["geo_latitude"],
            &out[0]["geo_longitude"]
        ),
        (
            &json!("GB"),
            &json!("England"),
            &json!("London"),
            &json!(51.5142),
            &json!(-0.0931)
        )
    );
    assert_eq!(
        (&out[1]["geo_country"], &out[1]["geo_city"]),
        (&json!("NL"), &json!("Amsterdam"))
    );
    assert_eq!(out[2]["geo_country"], "ZA");
    assert!(
        out[2].get("geo_city").is_none(),
        "a country-only block adds no city: {}",
        out[2]
    );
    assert!(t.dead.letters().is_empty());
}

#[test]
fn bundled_plugins_filter_enrich_and_sessionize_in_one_pipeline() {
    let (_dir, db) = geo();
    let stages: Vec<Box<dyn weir::pipeline::Stage>> = vec![
        Box::new(wasm_stage("bot-filter", &[], limits(), None)),
        Box::new(wasm_stage("ip-geo", &[], limits(), Some(db))),
        Box::new(wasm_stage("sessionize", &[("gap", "30m")], limits(), None)),
    ];
    let mut t = TestPipeline::new(stages, &["main", "bots", "sessions", "features", "late"]);
    let browser = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let t0 = 1_767_225_600_000i64;
    let minute = 60_000;
    let input = [
        json!({"user_id": "u1", "ts": t0, "user_agent": browser, "ip": "81.2.69.1", "type": "page_view", "url": "/a"}),
        json!({"user_id": "u1", "ts": t0 + minute, "user_agent": browser, "ip": "81.2.69.1", "type": "click", "url": "/b"}),
        json!({"user_id": "bot", "ts": t0 + minute, "user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1)", "ip": "8.8.8.8"}),
        json!({"user_id": "u1", "ts": t0 + 2 * minute, "user_agent": browser, "ip": "81.2.69.1", "type": "page_view", "url": "/c"}),
        json!({"user_id": "u1", "ts": t0 + 120 * minute, "user_agent": browser, "ip": "81.2.69.1", "type": "page_view", "url": "/d"}),
    ];
    t.pipeline.process(&records(&input)).unwrap();
    t.pipeline.finish().unwrap();

    let main = t.route("main");
    assert_eq!(main.len(), 4);
    assert!(main.iter().all(|e| e["geo_city"] == "London"));
    let ids: Vec<&str> = main
        .iter()
        .map(|e| e["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_ne!(ids[2], ids[3]);

    let bots = t.route("bots");
    assert_eq!(bots.len(), 1);
    assert!(
        bots[0]["bot_reason"]
            .as_str()
            .unwrap()
            .starts_with("user_agent:")
    );

    let sessions = t.route("sessions");
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["session_id"], ids[0]);
    assert_eq!(
        (&sessions[0]["event_count"], &sessions[0]["page_views"]),
        (&json!(3), &json!(2))
    );
    assert_eq!(
        (&sessions[0]["first_url"], &sessions[0]["last_url"]),
        (&json!("/a"), &json!("/c"))
    );
    assert_eq!(sessions[0]["duration_ms"], 2 * minute);
    // A session's summary and features are timed by its end (what the plugin gave them), so
    // the lake files them in the hour it ended, not the hour it closed.
    for route in ["sessions", "features"] {
        let sink = &t.sinks.iter().find(|(r, _)| r == route).unwrap().1;
        for record in sink.records() {
            let value: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
            let end = value.get("end").unwrap_or(&value["updated_at"]);
            assert_eq!(json!(record.time), *end, "{route}: {value}");
        }
    }
    let features = t.route("features");
    assert_eq!(features.last().unwrap()["session_count"], 2);
    assert!(t.route("late").is_empty());
    assert!(t.dead.letters().is_empty());
}

/// Incremental checkpoints, restored in order into new instances, continue exactly as an
/// uninterrupted pipeline does: a full snapshot and then only what changed, or changes each
/// carrying one of two slices of a rolling snapshot, read from the first of the two slices.
#[test]
fn a_full_snapshot_plus_changes_restores_what_an_uninterrupted_run_has() {
    for rolling in [false, true] {
        full_or_rolling_restore(rolling);
    }
}

fn full_or_rolling_restore(rolling: bool) {
    let new_pipeline = || {
        let stage = wasm_stage("sessionize", &[("gap", "30m")], limits(), None);
        TestPipeline::new(
            vec![Box::new(stage)],
            &["main", "sessions", "features", "late"],
        )
    };
    let t0 = 1_767_225_600_000i64;
    let minute = 60_000;
    // Two users; u2's first session closes (its timer fires) between the checkpoints.
    let event = |user: &str, at: i64| json!({"user_id": user, "ts": t0 + at * minute, "type": "page_view", "url": format!("/{at}")});
    let inputs = [
        vec![event("u1", 0), event("u2", 0)],
        vec![event("u1", 5), event("u2", 1)],
        vec![event("u1", 40), event("u2", 45)],
        vec![event("u1", 41), event("u3", 50)],
    ];

    let mut whole = new_pipeline();
    for batch in &inputs {
        whole.pipeline.process(&records(batch)).unwrap();
    }
    whole.pipeline.finish().unwrap();

    let mut first = new_pipeline();
    let mut chain = Vec::new();
    for (i, batch) in inputs[..3].iter().enumerate() {
        first.pipeline.process(&records(batch)).unwrap();
        let slice = weir::state::Slice {
            index: i as u32 % 2,
            count: 2,
        };
        chain.push(match (i, rolling) {
            (0, false) => first.pipeline.snapshot().unwrap(),
            (_, false) => first.pipeline.changes(None).unwrap().0,
            (_, true) => first.pipeline.changes(Some(slice)).unwrap().0,
        });
    }
    let mut second = new_pipeline();
    if rolling {
        // The last two checkpoints hold both slices; the last alone does not.
        let error = new_pipeline()
            .pipeline
            .restore(None, &chain[2..])
            .unwrap_err();
        assert!(error.to_string().contains("slices 0 of 2"), "{error}");
        second.pipeline.restore(None, &chain[1..]).unwrap();
    } else {
        second
            .pipeline
            .restore(Some(&chain[0][..]), &chain[1..])
            .unwrap();
    }
    assert_eq!(second.pipeline.watermark(), first.pipeline.watermark());
    second.pipeline.process(&records(&inputs[3])).unwrap();
    second.pipeline.finish().unwrap();

    // What the restored pipeline emits after the restore, the uninterrupted one emitted too.
    for route in ["sessions", "features"] {
        let all = whole.route(route);
        let before = first.route(route);
        let after = second.route(route);
        assert_eq!(
            [before.clone(), after].concat(),
            all,
            "{route} differ from the uninterrupted run's"
        );
    }
    assert_eq!(whole.route("sessions").len(), 5);
}

#[test]
fn sessions_continue_after_a_snapshot_is_restored_into_new_instances() {
    let new_pipeline = || {
        let stage = wasm_stage("sessionize", &[("gap", "30m")], limits(), None);
        TestPipeline::new(
            vec![Box::new(stage)],
            &["main", "sessions", "features", "late"],
        )
    };
    let t0 = 1_767_225_600_000i64;
    let event = |n: i64| json!({"user_id": "u1", "ts": t0 + n * 60_000, "type": "page_view", "url": format!("/{n}")});

    let mut first = new_pipeline();
    first
        .pipeline
        .process(&records(&[event(0), event(1)]))
        .unwrap();
    let snapshot = first.pipeline.snapshot().unwrap();

    let mut second = new_pipeline();
    second
        .pipeline
        .restore(Some(&snapshot[..]), &[] as &[Vec<u8>])
        .unwrap();
    assert_eq!(second.pipeline.watermark(), first.pipeline.watermark());
    second.pipeline.process(&records(&[event(2)])).unwrap();
    second.pipeline.finish().unwrap();

    let before = first.route("main")[0]["session_id"].clone();
    assert_eq!(
        second.route("main")[0]["session_id"],
        before,
        "the open session continued"
    );
    let sessions = second.route("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["event_count"], 3);
    assert_eq!(sessions[0]["first_url"], "/0");
}
