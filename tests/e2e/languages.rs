//! Plugins in Python and JavaScript: the SDKs' own tests (pytest, `node --test`, the
//! TypeScript types), the bundled bot filter written three times (Rust, Python, JavaScript)
//! delivering the same records, byte for byte, on the same generated clickstream, a reload
//! from one language to another that keeps the stage's state, and `weir plugin new --lang`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use weir::config::PipelineConfig;
use weir::flow::SourceRecord;
use weir::pipeline::build::PipelineFactory;
use weir::pipeline::plugins::ReloadOutcome;
use weir::runtime::InstanceSettings;

use crate::harness::{
    TestPipeline, guest_plugin, limits, plugin, plugin_status, records, root, run_on_stdin,
    wait_for_answer, wasm_stage_of, weir_ok,
};

/// Runs `program args` in `dir`; fails with its output unless it succeeds. Returns its
/// standard output.
fn run_in(dir: &Path, program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {} in {}: {e}", program.display(), dir.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} in {} failed:\n{stdout}\n{}",
        program.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Fails unless `ours` and `theirs` are the same, naming the first item that differs.
fn assert_same<T: PartialEq>(ours: &[T], theirs: &[T], what: &str) {
    let differ = ours.iter().zip(theirs).position(|(x, y)| x != y);
    assert!(
        differ.is_none() && ours.len() == theirs.len(),
        "{what}: they differ at {differ:?} of {} and {}",
        ours.len(),
        theirs.len()
    );
}

#[test]
fn the_python_sdk_and_plugin_pass_their_own_tests() {
    let python = xtask::python::guest_python().expect("making the Python plugins' venv");
    for dir in ["sdk/python", "plugins/bot-filter/python"] {
        let out = run_in(
            &root().join(dir),
            &python,
            &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
        );
        assert!(out.contains(" passed"), "{dir}: {out}");
    }
}

#[test]
fn the_javascript_sdk_and_plugin_pass_their_own_tests_and_type_checks() {
    let bin = xtask::node::npm_workspace().expect("installing the npm workspace");
    let node = Path::new("node");
    let sdk = run_in(&root().join("sdk/js"), node, &["--test", "test/"]);
    let plugin = run_in(
        &root().join("plugins/bot-filter/js"),
        &bin.join("weir-js"),
        &["test"],
    );
    for out in [sdk, plugin] {
        assert!(
            out.contains("# fail 0") && !out.contains("# pass 0"),
            "{out}"
        );
    }
    // A transform in TypeScript type-checks against the SDK's types.
    run_in(
        &root().join("sdk/js"),
        &bin.join("tsc"),
        &["-p", "tsconfig.json"],
    );
    // The contract's types are what `jco types` makes of the WIT today.
    let fresh = tempfile::tempdir().unwrap();
    let out = fresh.path().to_str().unwrap();
    run_in(
        &root().join("wit"),
        &bin.join("jco"),
        &["types", ".", "--world-name", "transform", "-o", out],
    );
    let committed = root().join("sdk/js/types/wit");
    for file in [
        "transform.d.ts",
        "interfaces/weir-transform-types.d.ts",
        "interfaces/weir-transform-state.d.ts",
        "interfaces/weir-transform-log.d.ts",
        "interfaces/weir-transform-metrics.d.ts",
        "interfaces/weir-transform-geo.d.ts",
    ] {
        assert_eq!(
            std::fs::read_to_string(fresh.path().join(file)).unwrap(),
            std::fs::read_to_string(committed.join(file)).unwrap(),
            "sdk/js/types/wit/{file} is stale: run `npm run types -w weir-sdk`"
        );
    }
}

/// One delivery: the route (or the dead-letter reason), key, time and value bytes.
type Delivery = (String, Vec<u8>, i64, Vec<u8>);

/// Everything a pipeline of `component` with `config` delivers for `input`: each route's
/// records in order, then the dead letters.
fn deliveries(component: &Path, config: &[(&str, &str)], input: &[SourceRecord]) -> Vec<Delivery> {
    let settings = InstanceSettings {
        memory_limit: 64 << 20,
        cpu_limit: Duration::from_secs(5),
        ..limits()
    };
    let stage = wasm_stage_of(component, config, settings, None);
    let mut t = TestPipeline::new(vec![Box::new(stage)], ROUTES);
    for batch in input.chunks(512) {
        t.pipeline.process(batch).unwrap();
    }
    t.pipeline.finish().unwrap();
    delivered(&t)
}

const ROUTES: &[&str] = &["main", "bots", "crawlers"];

/// What `t` delivered: each route's records in order, then the dead letters.
fn delivered(t: &TestPipeline) -> Vec<Delivery> {
    let mut out: Vec<_> = t
        .sinks
        .iter()
        .flat_map(|(route, sink)| {
            sink.records()
                .into_iter()
                .map(move |r| (route.clone(), r.key, r.time, r.value))
        })
        .collect();
    out.extend(t.dead.letters().into_iter().map(|d| {
        let reason = format!("dead letter: {}", d.reason);
        (reason, d.key.unwrap_or_default(), 0, d.value)
    }));
    out
}

/// The generated clickstream of `weir generate events` (11,000 events of 300 users, crawlers
/// and a burst), without its malformed lines: those are the decoder's business, not a stage's.
fn clickstream() -> Vec<SourceRecord> {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    let path = events.to_str().unwrap();
    weir_ok(&[
        "generate", "events", "--seed", "7", "--users", "300", "--out", path,
    ]);
    let values: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    records(&values)
}

#[test]
fn the_bot_filter_gives_the_same_outputs_in_rust_python_and_javascript() {
    let input = clickstream();
    let components = [
        plugin("bot-filter"),
        guest_plugin("plugins/bot-filter/python"),
        guest_plugin("plugins/bot-filter/js"),
    ];
    // The defaults, and settings that change every rule.
    let configs: [&[(&str, &str)]; 2] = [
        &[],
        &[
            ("rate_limit", "30"),
            ("rate_window", "30s"),
            ("burst", "5"),
            ("missing_user_agent", "dead-letter"),
            ("extra_patterns", "Firefox, iPhone"),
            ("route", "crawlers"),
        ],
    ];
    for config in configs {
        let [rust, python, js] = components
            .each_ref()
            .map(|component| deliveries(component, config, &input));
        let reasons: Vec<String> = rust
            .iter()
            .filter_map(|(_, _, _, value)| {
                let value: serde_json::Value = serde_json::from_slice(value).ok()?;
                Some(value["bot_reason"].as_str()?.split(':').next()?.to_string())
            })
            .collect();
        for reason in ["rate", "user_agent"] {
            assert!(
                reasons.iter().any(|r| r == reason),
                "{config:?}: no {reason} verdict"
            );
        }
        assert!(
            rust.iter().any(|(route, ..)| route == "main"),
            "{config:?}: no humans"
        );
        for (language, theirs) in [("Python", python), ("JavaScript", js)] {
            assert_same(
                &rust,
                &theirs,
                &format!("{language} against Rust with {config:?}"),
            );
        }
    }
}

#[test]
fn a_python_plugin_swapped_mid_stream_for_a_javascript_one_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let folder = |name: &str, component: &Path| {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(component, folder.join("bot-filter.wasm")).unwrap();
        folder
    };
    let swapped = folder("swapped", &guest_plugin("plugins/bot-filter/python"));
    let reference = folder("reference", &plugin("bot-filter"));
    // A rate rule tight enough that users are caught across the swap, from state the Python
    // version wrote and the JavaScript one reads.
    let config: PipelineConfig = toml::from_str(
        r#"
        [source.file]
        path = "unused.ndjson"
        [[stages]]
        name = "bots"
        plugin = "bot-filter"
        cpu_limit = "5s"
        [stages.config]
        rate_limit = 30
        rate_window = "30s"
        burst = 5
        [sinks.out]
        type = "ndjson"
        routes = ["main", "bots"]
        path = "unused-out.ndjson"
        [dead_letter]
        path = "unused-dlq.ndjson"
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    let swapping = PipelineFactory::new(&config, &swapped, 1).unwrap();
    let unswapped = PipelineFactory::new(&config, &reference, 1).unwrap();
    let mut a = TestPipeline::new(swapping.stages().unwrap(), ROUTES);
    let mut b = TestPipeline::new(unswapped.stages().unwrap(), ROUTES);
    let input = clickstream();
    let batches: Vec<&[SourceRecord]> = input.chunks(512).collect();
    let (first, second) = batches.split_at(batches.len() / 2);
    for batch in first {
        a.pipeline.process(batch).unwrap();
        b.pipeline.process(batch).unwrap();
    }
    let before = a.pipeline.plugin_versions()[0].to_string();
    // The JavaScript component dropped into the watched folder, as the watcher reloads it.
    let file = swapped.join("bot-filter.wasm");
    std::fs::copy(guest_plugin("plugins/bot-filter/js"), &file).unwrap();
    assert!(matches!(
        swapping.registry().reload_file(&file),
        ReloadOutcome::Loaded { .. }
    ));
    for batch in second {
        a.pipeline.process(batch).unwrap();
        b.pipeline.process(batch).unwrap();
    }
    for t in [&mut a, &mut b] {
        t.pipeline.finish().unwrap();
    }
    assert_ne!(
        a.pipeline.plugin_versions()[0].to_string(),
        before,
        "not swapped"
    );
    let (ours, theirs) = (delivered(&a), delivered(&b));
    assert!(ours.iter().any(|(route, ..)| route == "bots"));
    assert_same(
        &ours,
        &theirs,
        "the swapped run against an unswapped Rust one",
    );
}

#[test]
fn plugin_new_writes_python_and_javascript_projects_that_test_build_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    std::fs::write(
        &input,
        "{\"user_id\":\"u1\",\"ts\":0,\"type\":\"page_view\"}\n{\"user_id\":\"u1\",\"ts\":1}\n",
    )
    .unwrap();
    let weir = Path::new(env!("CARGO_BIN_EXE_weir"));
    for (lang, name) in [("python", "page-marker"), ("js", "page-marker-js")] {
        run_in(dir.path(), weir, &["plugin", "new", name, "--lang", lang]);
        let project = dir.path().join(name);
        // The project's own install step (its README's), then its tests.
        let tested = if lang == "python" {
            run_in(&project, Path::new("python3"), &["-m", "venv", ".venv"]);
            let pip = ["-m", "pip", "install", "--quiet", "-r", "requirements.txt"];
            run_in(&project, &project.join(".venv/bin/python"), &pip);
            run_in(
                &project,
                &project.join(".venv/bin/python"),
                &["-m", "pytest", "-q"],
            )
        } else {
            run_in(
                &project,
                Path::new("npm"),
                &["install", "--no-audit", "--no-fund"],
            );
            run_in(&project, Path::new("npm"), &["test"])
        };
        assert!(
            tested.contains("1 passed") || tested.contains("# pass 1"),
            "{tested}"
        );
        let built = run_in(&project, weir, &["plugin", "build"]);
        let component = built
            .trim()
            .strip_prefix(&format!("built {name}: "))
            .unwrap_or_else(|| panic!("{built}"))
            .to_string();
        let ran = run_in(
            dir.path(),
            weir,
            &[
                "plugin",
                "test",
                &component,
                "--input",
                input.to_str().unwrap(),
            ],
        );
        let outputs: Vec<serde_json::Value> = ran
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let field = name.replace('-', "_");
        assert_eq!(outputs[0]["event"][&field], true, "{lang}: {ran}");
        assert_eq!(
            outputs[1]["reason"], "missing field `type`",
            "{lang}: {ran}"
        );
    }
}

/// `dir/pipeline.toml`: standard input through the folder's `bot-filter` (a rate rule tight
/// enough to catch users across a swap) into `dir/out.ndjson`.
fn stdin_bot_filter(dir: &Path, plugins: &Path) -> PathBuf {
    let config = dir.join("pipeline.toml");
    let text = format!(
        "plugin_dir = {plugins:?}\n\
         [source.file]\npath = \"-\"\nbatch_timeout = \"50ms\"\n\
         [event]\nkey_field = \"user_id\"\ntime_field = \"ts\"\n\
         [[stages]]\nname = \"bots\"\nplugin = \"bot-filter\"\ncpu_limit = \"5s\"\n\
         [stages.config]\nrate_limit = 30\nrate_window = \"30s\"\nburst = 5\n\
         [sinks.out]\ntype = \"ndjson\"\nroutes = [\"main\", \"bots\"]\npath = {:?}\n\
         [dead_letter]\npath = {:?}\n",
        dir.join("out.ndjson"),
        dir.join("dlq.ndjson")
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Runs weir on `config` with `lines` streamed to its standard input in slices, calling
/// `midway(port)` (on this thread) once a quarter of them are written; the second half waits
/// until `midway` returns. Returns the sorted lines of `dir/out.ndjson`.
fn stream_through(dir: &Path, lines: Vec<String>, midway: impl FnOnce(u16)) -> Vec<String> {
    let (mut run, port) = run_on_stdin(&stdin_bot_filter(dir, &dir.join("plugins")));
    let mut stdin = run.stdin.take().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let resume = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, resume) = (written.clone(), resume.clone());
        std::thread::spawn(move || {
            let slices: Vec<&[String]> = lines.chunks(200).collect();
            for (i, slice) in slices.iter().enumerate() {
                while i == slices.len() / 2 && !resume.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                for line in *slice {
                    writeln!(stdin, "{line}").unwrap();
                }
                stdin.flush().unwrap();
                written.store(i + 1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_for_answer(port, "/readyz", |code, _| code == 200);
    while written.load(Ordering::SeqCst) < 14 {
        std::thread::sleep(Duration::from_millis(20));
    }
    midway(port);
    resume.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let finished = run.wait_with_output().unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let mut out: Vec<String> = std::fs::read_to_string(dir.join("out.ndjson"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

#[test]
fn a_javascript_plugin_dropped_into_the_watched_folder_replaces_a_python_one_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    let path = events.to_str().unwrap();
    weir_ok(&[
        "generate", "events", "--seed", "7", "--users", "300", "--out", path,
    ]);
    let lines: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let run_dir = |name: &str, component: &Path| {
        let run = dir.path().join(name);
        std::fs::create_dir_all(run.join("plugins")).unwrap();
        std::fs::copy(component, run.join("plugins/bot-filter.wasm")).unwrap();
        run
    };
    let swapped = run_dir("swapped", &guest_plugin("plugins/bot-filter/python"));
    let reference = run_dir("reference", &plugin("bot-filter"));
    let js = std::fs::read(guest_plugin("plugins/bot-filter/js")).unwrap();
    let js_sha = weir::runtime::sha256_hex(&js);
    let folder = swapped.join("plugins");
    let ours = stream_through(&swapped, lines.clone(), |port| {
        // Written beside it and renamed over it, as `weir plugin deploy` does.
        std::fs::write(folder.join(".bot-filter.wasm.tmp"), &js).unwrap();
        std::fs::rename(
            folder.join(".bot-filter.wasm.tmp"),
            folder.join("bot-filter.wasm"),
        )
        .unwrap();
        wait_for_answer(port, "/plugins", |_, _| {
            let status = plugin_status(port, "bots");
            status["pending_sha256"] == js_sha.as_str() || status["sha256"] == js_sha.as_str()
        });
    });
    let theirs = stream_through(&reference, lines, |_| {});
    assert!(ours.iter().any(|l| l.contains("\"bot_reason\":\"rate\"")));
    assert_same(
        &ours,
        &theirs,
        "the run whose plugin went from Python to JavaScript, against a Rust run",
    );
}
