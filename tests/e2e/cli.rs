//! The `weir` command line as a user runs it: validate, plugin inspect, plugin test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{plugin, request, root, wait_for_answer, weir, weir_ok};

#[test]
fn validate_loads_the_plugins_and_the_geo_database_and_refuses_a_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let geo = dir.path().join("geo.mmdb");
    let example =
        std::fs::read_to_string(root().join("examples/clickstream/pipeline.toml")).unwrap();
    let text = example
        .replace(
            "plugin_dir = \"target/plugins\"",
            &format!("plugin_dir = {:?}", crate::harness::plugin_dir()),
        )
        .replace("\"out/clickstream/geo.mmdb\"", &format!("{geo:?}"));
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let validate = |path: &Path| {
        let out = weir(&["validate", path.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    // The geo database is missing: refused, saying how to make one.
    let config = write("pipeline.toml", &text);
    let (ok, message) = validate(&config);
    assert!(!ok && message.contains("weir generate geodb"), "{message}");
    weir::synth::geodb::write(&geo).unwrap();
    let (ok, message) = validate(&config);
    assert!(ok, "{message}");
    assert!(message.contains("valid (3 stages"), "{message}");
    assert!(message.contains("every plugin loads"), "{message}");

    let cases = [
        (
            text.replacen("batch_size = 512", "batch_size = 0", 1),
            "`source.file.batch_size`",
        ),
        (
            text.replacen("plugin = \"ip-geo\"", "plugin = \"no-such-plugin\"", 1),
            "`stages[1].plugin`",
        ),
        (
            text.replacen("rate_limit = 120", "rate_limit = 0", 1),
            "rate_limit",
        ),
    ];
    for (bad, expected) in cases {
        let (ok, message) = validate(&write("bad.toml", &bad));
        assert!(!ok && message.contains(expected), "{expected}: {message}");
    }
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
        text.contains("world    weir:transform/transform@0.2.0"),
        "{text}"
    );
    for export in ["init", "process", "on-timers"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("exports") && l.contains(export)),
            "{text}"
        );
    }
    assert!(text.contains("weir:transform/state@0.2.0"), "{text}");
    let sha = text
        .lines()
        .find_map(|l| l.strip_prefix("sha256   "))
        .unwrap();
    assert_eq!(sha.len(), 64);

    // A file that is not a component is refused in one line, not a multi-line byte dump.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, "not wasm").unwrap();
    let out = weir(&["plugin", "inspect", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad magic number"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
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
    // `--log info` beats RUST_LOG: the plugin's info line below shows.
    let run = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "--log",
            "info",
            "--log-format",
            "json",
            "run",
            "--config",
            config.to_str().unwrap(),
            "--plugin-dir",
            crate::harness::plugin_dir().to_str().unwrap(),
        ])
        .env("RUST_LOG", "error")
        .env("WEIR_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
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

/// `weir` copied out of the checkout, run in `work` with the scaffold's own target folder.
fn installed_weir(bin: &Path, work: &Path, target: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .args(args)
        .current_dir(work)
        .env("CARGO_TARGET_DIR", target)
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn plugin_new_build_and_deploy_work_from_an_installed_binary_outside_a_checkout() {
    let dir = tempfile::tempdir().unwrap();
    // An installed weir: the binary alone, in an empty folder far from any checkout.
    let bin = dir.path().join("bin/weir");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_weir"), &bin).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // Its own target folder: the outer build may hold the shared one's lock.
    let target = xtask::target_dir().join("scaffolded-plugin");
    let weir_here = |args: &[&str]| {
        let out = installed_weir(&bin, &work, &target, args);
        assert!(
            out.status.success(),
            "weir {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    weir_here(&["plugin", "new", "page-marker"]);
    let crate_dir = work.join("page-marker");
    for file in [
        "rust-toolchain.toml",
        ".cargo/config.toml",
        "weir-sdk/sdk/Cargo.toml",
        "weir-sdk/wit/transform.wit",
    ] {
        assert!(crate_dir.join(file).is_file(), "the scaffold has no {file}");
    }
    let toolchain = std::fs::read_to_string(crate_dir.join("rust-toolchain.toml")).unwrap();
    assert!(toolchain.contains("wasm32-wasip2"), "{toolchain}");
    let cargo_config = std::fs::read_to_string(crate_dir.join(".cargo/config.toml")).unwrap();
    assert!(cargo_config.contains("+simd128"), "{cargo_config}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = Command::new(&cargo)
        .args(["test", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "cargo test failed:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    let built = weir_here(&["plugin", "build", "--path", "page-marker"]);
    let wasm = PathBuf::from(
        built
            .trim()
            .strip_prefix("built page-marker: ")
            .unwrap_or_else(|| panic!("{built}")),
    );
    assert!(wasm.is_file(), "{built}");

    let input = dir.path().join("events.ndjson");
    std::fs::write(
        &input,
        "{\"user_id\":\"u1\",\"ts\":0,\"type\":\"page_view\"}\n{\"user_id\":\"u1\",\"ts\":1}\n",
    )
    .unwrap();
    let stdout = weir_here(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    let outputs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(outputs[0]["event"]["page_marker"], true);
    assert_eq!(outputs[1]["kind"], "dead-letter");

    // Deployed to a bucket: one upload of the whole component, read back by another client.
    let s3 = xtask::servers::S3Server::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    s3.create_bucket("plugins").unwrap();
    let mut deploy = Command::new(&bin);
    deploy
        .args([
            "plugin",
            "deploy",
            "--component",
            wasm.to_str().unwrap(),
            "--name",
            "page-marker",
        ])
        .args([
            "--to",
            "s3://plugins/prod",
            "--s3-endpoint",
            &s3.endpoint(),
            "--s3-allow-http",
        ])
        .envs(s3.client_env());
    let deployed = deploy.output().unwrap();
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let bucket =
        weir::storage::Storage::open("s3://plugins/prod", &crate::sinks::s3_options(&s3)).unwrap();
    assert_eq!(
        bucket.get("page-marker.wasm").unwrap().unwrap().as_ref(),
        std::fs::read(&wasm).unwrap().as_slice()
    );
    // What is not a weir plugin is refused, and nothing is deployed.
    let refused = installed_weir(
        &bin,
        &work,
        &target,
        &[
            "plugin",
            "deploy",
            "--component",
            input.to_str().unwrap(),
            "--to",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a weir plugin"));
    assert!(!dir.path().join("events.wasm").exists());

    hot_reload_a_rebuilt_version(dir.path(), &crate_dir, &wasm, &|plugins: &Path| {
        weir_here(&[
            "plugin",
            "deploy",
            "--path",
            "page-marker",
            "--to",
            plugins.to_str().unwrap(),
        ])
    });
    let again = installed_weir(&bin, &work, &target, &["plugin", "new", "page-marker"]);
    assert!(
        !again.status.success(),
        "an existing folder is not overwritten"
    );
    let bad = weir(&["plugin", "new", "Bad_Name"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lowercase"));
}

/// The tutorial's last step: `weir run` reads events from stdin with the scaffolded plugin;
/// the crate is edited, and `weir plugin deploy` rebuilds it and renames the new component
/// over the old one. The events after the swap show the new behaviour, those before the old.
fn hot_reload_a_rebuilt_version(
    dir: &Path,
    crate_dir: &Path,
    wasm: &Path,
    deploy: &dyn Fn(&Path) -> String,
) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(wasm, plugins.join("page-marker.wasm")).unwrap();
    let (out, config) = (dir.join("out.ndjson"), dir.join("pipeline.toml"));
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {plugins:?}\n[source.file]\npath = \"-\"\nbatch_size = 1\n\
             [[stages]]\nname = \"page-marker\"\nplugin = \"page-marker\"\n\
             [sinks.out]\ntype = \"ndjson\"\nroutes = [\"main\"]\npath = {out:?}\n\
             [dead_letter]\npath = {:?}\n",
            dir.join("dlq.ndjson")
        ),
    )
    .unwrap();
    let (mut run, port) = crate::harness::run_on_stdin(&config);
    let mut stdin = run.stdin.take().unwrap();
    let event = |i: u32| format!("{{\"user_id\":\"u{i}\",\"ts\":{i},\"type\":\"page_view\"}}\n");
    let calls = |at_least: u64| {
        wait_for_answer(port, "/plugins", |_, body| {
            serde_json::from_str::<serde_json::Value>(body)
                .is_ok_and(|p| p[0]["calls"].as_u64().is_some_and(|c| c >= at_least))
        })
    };
    for i in 0..3 {
        stdin.write_all(event(i).as_bytes()).unwrap();
    }
    stdin.flush().unwrap();
    calls(3);

    let lib = crate_dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let edited = text.replacen("\"page_marker\", true)", "\"page_marker\", false)", 1);
    assert_ne!(
        edited, text,
        "the scaffold no longer sets page_marker this way"
    );
    std::fs::write(&lib, edited).unwrap();
    let deployed = deploy(&plugins);
    assert!(deployed.starts_with("deployed page-marker: "), "{deployed}");
    let sha = weir::runtime::sha256_hex(&std::fs::read(wasm).unwrap());
    // Loaded, but the stage swaps at its next batch: until then the old version serves.
    let plugins = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap()[0].clone();
    let loaded = plugins(&wait_for_answer(port, "/plugins", |_, body| {
        body.contains(&sha)
    }));
    assert_eq!(loaded["pending_sha256"], sha.as_str(), "{loaded}");
    assert_ne!(loaded["sha256"], sha.as_str(), "{loaded}");

    stdin.write_all(event(3).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let serving = plugins(&wait_for_answer(port, "/plugins", |_, body| {
        plugins(body)["sha256"] == sha.as_str()
    }));
    assert!(serving["pending_sha256"].is_null(), "{serving}");
    for i in 4..6 {
        stdin.write_all(event(i).as_bytes()).unwrap();
    }
    drop(stdin);
    let finished = run.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&finished.stderr);
    assert!(finished.status.success(), "{log}");
    assert!(log.contains("Stage swapped to the new version"), "{log}");
    let markers: Vec<bool> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["page_marker"]
                .as_bool()
                .unwrap()
        })
        .collect();
    assert_eq!(markers, [true, true, true, false, false, false]);
    assert!(
        request(port, "GET", "/plugins").is_none(),
        "the endpoint outlived the run"
    );
}

#[test]
fn dlq_list_and_show_read_a_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        "{\"user_id\":\"u1\",\"ts\":1700000000000}\nnot json\n{\"ts\":1700000000000}\n",
    )
    .unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {:?}\n[source.file]\npath = {events:?}\n[sinks.out]\ntype = \"ndjson\"\n\
             routes = [\"main\"]\npath = {:?}\n[dead_letter]\npath = {:?}\n",
            crate::harness::plugin_dir(),
            dir.path().join("out.ndjson"),
            dir.path().join("dead.ndjson"),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    weir_ok(&["run", "--config", config]);
    let listed = weir_ok(&["dlq", "list", "--config", config]);
    assert!(listed.contains("2 dead letters"), "{listed}");
    assert_eq!(
        listed.lines().filter(|l| l.contains(" decode ")).count(),
        2,
        "{listed}"
    );
    let shown = weir_ok(&[
        "dlq",
        "show",
        "--config",
        config,
        "--reason",
        "^invalid json",
    ]);
    let shown: Vec<serde_json::Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["record"], "not json");
    assert_eq!(shown[0]["class"], "decode");
    assert!(
        shown[0]["at"].as_str().unwrap().ends_with("dead.ndjson:1"),
        "{}",
        shown[0]
    );
}

#[test]
fn top_shows_what_flows_through_a_running_instance() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = crate::harness::plugin_dir().to_str().unwrap();
    let config = crate::harness::stdin_config(dir.path(), plugins, "");
    let (mut run, port) = crate::harness::run_on_stdin(&config);
    let mut stdin = run.stdin.take().unwrap();
    wait_for_answer(port, "/readyz", |code, _| code == 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let line = if n % 10 == 9 {
                    "not json\n".to_string()
                } else {
                    format!("{{\"user_id\":\"u{n}\",\"ts\":{n},\"user_agent\":\"Mozilla/5.0\"}}\n")
                };
                stdin.write_all(line.as_bytes()).unwrap();
                stdin.flush().unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let admin = format!("127.0.0.1:{port}");
    let view = weir_ok(&["top", "--admin", &admin, "--once", "--interval", "500ms"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
    assert!(view.starts_with(&format!("weir at {admin}: ok")), "{view}");
    let rate = |prefix: &str| -> f64 {
        let line = view
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{view}"));
        line[prefix.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches("/s")
            .parse()
            .unwrap()
    };
    assert!(rate("in ") > 10.0, "{view}");
    assert!(view.contains(", out "), "{view}");
    assert!(view.contains("dead letters decode "), "{view}");
    let stage = view
        .lines()
        .find(|l| l.starts_with("bots "))
        .unwrap_or_else(|| panic!("{view}"));
    assert!(stage.contains("closed"), "{stage}");
    // SAFETY: kill only sends a signal to the child.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGTERM) }, 0);
    assert!(run.wait().unwrap().success());

    let gone = weir(&["top", "--admin", &admin, "--once"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no weir admin endpoint answers"));
}

/// The emitted events of `weir plugin test` of `add-field` (env=prod) over `args`.
fn add_field_emits(args: &[&str]) -> Vec<serde_json::Value> {
    let plugin = plugin("add-field");
    let mut all = vec!["plugin", "test", plugin.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--set", "name=env", "--set", "value=prod"]);
    let out = weir(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "emit")
        .map(|l| l["event"].clone())
        .collect()
}

#[test]
fn plugin_test_reads_avro_and_protobuf_input_files_written_by_their_reference_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let avsc = r#"{"type": "record", "name": "Click", "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "ip", "type": ["null", "string"], "default": null}]}"#;
    std::fs::write(path("click.avsc"), avsc).unwrap();
    let proto = "syntax = \"proto3\";\npackage shop;\nmessage Click { string user_id = 1; int64 ts = 2; optional string ip = 3; }\n";
    std::fs::write(path("click.proto"), proto).unwrap();
    // fastavro writes a container file and bare datums; protobuf's own runtime writes
    // length-delimited messages of the same schema.
    crate::harness::python(&format!(
        r#"
import datetime, fastavro, json
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal.encoder import _VarintBytes
schema = fastavro.parse_schema(json.load(open({avsc:?})))
records = [{{"user_id": "u1", "ts": 1000, "ip": None}}, {{"user_id": "u2", "ts": 2000, "ip": "10.0.0.1"}}]
with open({container:?}, "wb") as out:
    fastavro.writer(out, schema, records)
with open({datums:?}, "wb") as out:
    for record in records:
        fastavro.schemaless_writer(out, schema, record)
file = descriptor_pb2.FileDescriptorProto(name="click.proto", package="shop", syntax="proto3")
click = file.message_type.add(name="Click")
click.field.add(name="user_id", number=1, type=9, label=1)
click.field.add(name="ts", number=2, type=3, label=1)
click.field.add(name="ip", number=3, type=9, label=1, proto3_optional=True, oneof_index=0)
click.oneof_decl.add(name="_ip")
pool = descriptor_pool.DescriptorPool()
pool.Add(file)
Click = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Click"))
with open({delimited:?}, "wb") as out:
    for record in records:
        message = Click(user_id=record["user_id"], ts=record["ts"])
        if record["ip"] is not None:
            message.ip = record["ip"]
        data = message.SerializeToString()
        out.write(_VarintBytes(len(data)) + data)
"#,
        avsc = path("click.avsc"),
        container = path("clicks.avro"),
        datums = path("clicks.bin"),
        delimited = path("clicks.pb"),
    ));
    let expected = serde_json::json!([
        {"user_id": "u1", "ts": 1000, "ip": null, "env": "prod"},
        {"user_id": "u2", "ts": 2000, "ip": "10.0.0.1", "env": "prod"}
    ]);
    let container = add_field_emits(&["--input", &path("clicks.avro")]);
    assert_eq!(serde_json::Value::from(container), expected);
    let datums = add_field_emits(&[
        "--input",
        &path("clicks.bin"),
        "--schema",
        &path("click.avsc"),
    ]);
    assert_eq!(serde_json::Value::from(datums), expected);
    // Protobuf leaves an unset optional field out rather than null.
    let mut without_null = expected.clone();
    without_null[0].as_object_mut().unwrap().remove("ip");
    let messages = add_field_emits(&[
        "--input",
        &path("clicks.pb"),
        "--schema",
        &path("click.proto"),
        "--message",
        "shop.Click",
    ]);
    assert_eq!(serde_json::Value::from(messages), without_null);
}

#[test]
fn the_demo_runs_on_avro_with_a_registry_of_its_own() {
    let out = tempfile::tempdir().unwrap();
    let plugins = crate::harness::plugin_dir();
    let stdout = weir_ok(&[
        "demo",
        "--format",
        "avro",
        "--duration",
        "3s",
        "--rate",
        "1000",
        "--out",
        out.path().join("demo").to_str().unwrap(),
        "--plugin-dir",
        plugins.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("as Avro with the schema served by http://127.0.0.1:"),
        "{stdout}"
    );
    let count = |label: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` in {stdout}"));
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert_eq!(count("events in "), 3000, "{stdout}");
    assert!(count("events in the lake") > 2500, "{stdout}");
    assert!(count("sessions closed") > 0, "{stdout}");
    // The generator's malformed lines go out as they are, not Avro.
    assert_eq!(count("dead-lettered"), count("not avro"), "{stdout}");
    let config = std::fs::read_to_string(out.path().join("demo/pipeline.toml")).unwrap();
    assert!(config.contains("format = \"avro\"") && config.contains("[schema_registry]"));
}
