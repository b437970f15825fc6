//! The plugin registry in process: what a reload does with each kind of file, config reloads
//! that change every stage or none, and a swap mid-stream that leaves a stage's outputs exactly
//! as they are without it (state and pending timers carried over).

use std::path::{Path, PathBuf};

use weir::config::PipelineConfig;
use weir::pipeline::build::PipelineFactory;
use weir::pipeline::plugins::ReloadOutcome;

use crate::harness::{TestPipeline, plugin_dir, records};

const CONFIG: &str = r#"
[source.file]
path = "unused.ndjson"
[[stages]]
name = "bots-a"
plugin = "bot-filter"
[[stages]]
name = "bots-b"
plugin = "bot-filter"
[stages.config]
rate_limit = 5
[[stages]]
name = "sessions"
plugin = "sessionize"
[stages.config]
gap = "10m"
[sinks.out]
type = "ndjson"
routes = ["main"]
path = "unused-out.ndjson"
[dead_letter]
path = "unused-dlq.ndjson"
"#;

fn config(text: &str) -> PipelineConfig {
    let config: PipelineConfig = toml::from_str(text).unwrap();
    config.validate().unwrap();
    config
}

fn plugin_folder(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for name in ["bot-filter", "sessionize"] {
        let file = format!("{name}.wasm");
        std::fs::copy(plugin_dir().join(&file), dir.join(&file)).unwrap();
    }
    dir.to_path_buf()
}

/// The plugin file at `path` with an empty custom section appended: same code, new sha256.
fn rebuild(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, xtask::plugins::with_custom_section(&bytes, "new")).unwrap();
}

#[test]
fn a_reload_reaches_every_stage_of_the_plugin_and_bad_files_and_configs_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&dir.path().join("plugins"));
    let factory = PipelineFactory::new(&config(CONFIG), &plugins, 1).unwrap();
    let registry = factory.registry();
    let generations = || -> Vec<u64> { registry.slots().iter().map(|s| s.generation()).collect() };
    let bot_filter = plugins.join("bot-filter.wasm");

    assert_eq!(registry.reload_file(&bot_filter), ReloadOutcome::Unchanged);
    rebuild(&bot_filter);
    let ReloadOutcome::Loaded { stages, .. } = registry.reload_file(&bot_filter) else {
        panic!("the rebuilt file was not loaded");
    };
    assert_eq!(stages, ["bots-a", "bots-b"]);
    assert_eq!(generations(), [1, 1, 0]);
    // Loaded for both stages; no stage has swapped to it yet, so the old version serves.
    let loaded = registry.statuses()[0].sha256.clone();
    let pending = registry.statuses()[0].pending_sha256.clone().unwrap();
    assert_ne!(pending, loaded);
    assert_eq!(registry.statuses()[1].sha256, loaded);
    assert_eq!(
        registry.statuses()[1].pending_sha256.as_ref(),
        Some(&pending)
    );
    assert_eq!(
        registry.reload_file(&plugins.join("other.wasm")),
        ReloadOutcome::Unused
    );

    std::fs::write(&bot_filter, b"not wasm").unwrap();
    let ReloadOutcome::Rejected(reason) = registry.reload_file(&bot_filter) else {
        panic!("garbage was not rejected");
    };
    assert!(reason.contains("not a valid component"), "{reason}");
    let status = &registry.statuses()[1];
    assert_eq!(status.sha256, loaded);
    assert_eq!(
        status.last_rejection.as_ref().unwrap().sha256,
        weir::runtime::sha256_hex(b"not wasm")
    );
    std::fs::remove_file(&bot_filter).unwrap();
    assert_eq!(registry.reload_file(&bot_filter), ReloadOutcome::Unchanged);

    // One stage refuses its new config: neither changes.
    let both = CONFIG
        .replace("rate_limit = 5", "rate_limit = 0")
        .replace("gap = \"10m\"", "gap = \"20m\"");
    let refused = registry
        .reconfigure(&config_unchecked(&both).stages)
        .unwrap_err();
    assert!(refused.contains("stages[bots-b].config"), "{refused}");
    assert_eq!(generations(), [1, 1, 0]);
    let changed = registry
        .reconfigure(&config(&CONFIG.replace("gap = \"10m\"", "gap = \"20m\"")).stages)
        .unwrap();
    assert_eq!(changed, ["sessions"]);
    assert_eq!(generations(), [1, 1, 1]);
}

/// A config that parses; `rate_limit = 0` is for the plugin's `init` to refuse, not the host.
fn config_unchecked(text: &str) -> PipelineConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn a_stage_swapped_mid_stream_keeps_its_state_and_timers() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_folder(&dir.path().join("swapped"));
    let untouched = plugin_folder(&dir.path().join("untouched"));
    let text = CONFIG.replace("rate_limit = 5", "rate_limit = 500");
    let swapped = PipelineFactory::new(&config(&text), &plugins, 1).unwrap();
    let reference = PipelineFactory::new(&config(&text), &untouched, 1).unwrap();
    let routes = ["main", "bots", "sessions", "features", "late"];
    let mut a = TestPipeline::new(swapped.stages().unwrap(), &routes);
    let mut b = TestPipeline::new(reference.stages().unwrap(), &routes);
    let events: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("e{i}"), "user_id": format!("u{}", i % 4),
                "ts": 1_790_000_000_000i64 + i * 20_000, "type": "page_view",
                "url": format!("/p/{i}"), "user_agent": "Mozilla/5.0 Firefox/133.0",
            })
        })
        .collect();
    let input = records(&events);
    let (first, second) = input.split_at(30);
    let before: Vec<String> = a
        .pipeline
        .plugin_versions()
        .iter()
        .map(|v| v.to_string())
        .collect();
    for pipeline in [&mut a, &mut b] {
        pipeline.pipeline.process(first).unwrap();
    }
    let sessionize = plugins.join("sessionize.wasm");
    rebuild(&sessionize);
    assert!(matches!(
        swapped.registry().reload_file(&sessionize),
        ReloadOutcome::Loaded { .. }
    ));
    for pipeline in [&mut a, &mut b] {
        pipeline.pipeline.process(second).unwrap();
        pipeline.pipeline.finish().unwrap();
    }
    let after = a.pipeline.plugin_versions();
    assert_eq!(after[..2], before[..2]);
    assert_ne!(after[2], before[2], "sessionize was not swapped");
    let sessions = a.route("sessions");
    assert!(!sessions.is_empty());
    assert_eq!(sessions, b.route("sessions"));
    assert_eq!(a.route("features"), b.route("features"));
    assert_eq!(a.route("main"), b.route("main"));
}
