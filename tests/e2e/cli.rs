//! The `weir` command line as a user runs it: validate, plugin inspect, plugin test.

use crate::harness::{plugin, root, weir};

#[test]
fn validate_accepts_the_example_and_refuses_a_bad_field() {
    let ok = weir(&[
        "validate",
        root()
            .join("examples/clickstream/pipeline.toml")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid (3 stages"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(root().join("examples/clickstream/pipeline.toml")).unwrap();
    std::fs::write(&bad, text.replacen("batch_size = 512", "batch_size = 0", 1)).unwrap();
    let refused = weir(&["validate", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("`source.file.batch_size`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn inspect_shows_world_exports_imports_and_hash() {
    let out = weir(&["plugin", "inspect", plugin("bot-filter").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("world    weir:transform/transform@0.1.0"),
        "{text}"
    );
    for export in ["init", "process", "on-timer"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("exports") && l.contains(export)),
            "{text}"
        );
    }
    assert!(text.contains("weir:transform/state@0.1.0"), "{text}");
    let sha = text
        .lines()
        .find_map(|l| l.strip_prefix("sha256   "))
        .unwrap();
    assert_eq!(sha.len(), 64);
}

#[test]
fn plugin_test_prints_one_json_object_per_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(
        &input,
        "{\"user_id\":\"u1\",\"ts\":1000}\nnot json\n{\"user_id\":\"u2\",\"ts\":2000,\"action\":\"trap\"}\n",
    )
    .unwrap();
    let out = weir(&[
        "plugin",
        "test",
        plugin("add-field").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--set",
        "name=env",
        "--set",
        "value=prod",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let emitted: Vec<_> = lines.iter().filter(|l| l["kind"] == "emit").collect();
    assert_eq!(emitted.len(), 2);
    assert_eq!(emitted[0]["input"], 0);
    assert_eq!(emitted[0]["event"]["env"], "prod");
    let dead = lines.iter().find(|l| l["kind"] == "dead-letter").unwrap();
    assert_eq!(dead["input"], 1);
    assert!(dead["reason"].as_str().unwrap().starts_with("invalid json"));

    let hostile = weir(&[
        "plugin",
        "test",
        plugin("hostile").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&hostile.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let trapped = lines.iter().find(|l| l["input"] == 2).unwrap();
    assert_eq!(trapped["kind"], "dead-letter");
    assert!(
        trapped["reason"].as_str().unwrap().starts_with("trap: "),
        "{trapped}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_plugin_logs_name_the_plugin_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        "{\"user_id\":\"u1\",\"ts\":1700000000000,\"action\":\"log\"}\n",
    )
    .unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[source.file]\npath = {events:?}\n\n[[stages]]\nname = \"hostile\"\nplugin = \"hostile\"\n\n[sinks.out]\ntype = \"ndjson\"\nroutes = [\"main\"]\n\
             path = {:?}\n\n[dead_letter]\npath = {:?}\n",
            dir.path().join("out.ndjson"),
            dir.path().join("dead.ndjson"),
        ),
    )
    .unwrap();
    let run = weir(&[
        "--log",
        "info",
        "--log-format",
        "json",
        "run",
        "--config",
        config.to_str().unwrap(),
        "--plugin-dir",
        crate::harness::plugin_dir().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"].is_object())
    );
    let from_plugin = lines
        .iter()
        .find(|l| l["fields"]["message"] == "hostile plugin says hello")
        .unwrap_or_else(|| panic!("no plugin log line:\n{stderr}"));
    assert_eq!(from_plugin["fields"]["stage"], "hostile");
    assert!(
        from_plugin["fields"]["version"]
            .as_str()
            .is_some_and(|v| v.len() == 12)
    );
}

#[test]
fn plugin_new_scaffolds_a_crate_that_passes_its_tests_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = root().join("sdk");
    let made = weir(&[
        "plugin",
        "new",
        "page-marker",
        "--path",
        dir.path().to_str().unwrap(),
        "--sdk",
        sdk.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let crate_dir = dir.path().join("page-marker");
    // Its own target folder: the outer build may hold the shared one's lock.
    let target = xtask::target_dir().join("scaffolded-plugin");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for args in [
        &["test", "--quiet"][..],
        &["build", "--release", "--target", "wasm32-wasip2"][..],
    ] {
        let run = std::process::Command::new(&cargo)
            .args(args)
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "cargo {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let wasm = target.join("wasm32-wasip2/release/page_marker.wasm");
    let input = dir.path().join("events.ndjson");
    std::fs::write(
        &input,
        "{\"user_id\":\"u1\",\"ts\":0,\"type\":\"page_view\"}\n{\"user_id\":\"u1\",\"ts\":1}\n",
    )
    .unwrap();
    let test = weir(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let outputs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(outputs[0]["event"]["page_marker"], true);
    assert_eq!(outputs[1]["kind"], "dead-letter");
    let again = weir(&[
        "plugin",
        "new",
        "page-marker",
        "--path",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        !again.status.success(),
        "an existing folder is not overwritten"
    );
    let bad = weir(&["plugin", "new", "Bad_Name"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lowercase"));
}
