//! `weir plugin new NAME`: a plugin crate against the SDK that builds with one command and
//! passes its own tests out of the box.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where a new crate keeps the SDK it was made with (the sources this weir carries).
const VENDORED_SDK: &str = "weir-sdk";

/// The toolchain file: the wasm target comes with the toolchain.
const RUST_TOOLCHAIN_TOML: &str = r#"[toolchain]
channel = "stable"
targets = ["wasm32-wasip2"]
"#;

/// Cargo settings: wasm SIMD, which wasmtime enables, so byte scans run 16 bytes at a time.
const CARGO_CONFIG_TOML: &str = r#"[target.wasm32-wasip2]
rustflags = ["-C", "target-feature=+simd128"]
"#;

const CARGO_TOML: &str = r#"[package]
name = "{name}"
description = "A weir transform."
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-sdk = { path = "{sdk}" }

[dev-dependencies]
serde_json = "1"

[profile.release]
lto = true
codegen-units = 1
opt-level = 3
strip = "debuginfo"

# Not part of any enclosing workspace.
[workspace]
"#;

const LIB_RS: &str = r#"//! {name}: a weir transform. It marks events of the configured `type` (default `page_view`)
//! with `{field}: true`, counts them per key in host-owned state, and dead-letters events
//! without a `type`.

use weir_sdk::{Config, Context, Event, Needs, Transform};

/// The transform's settings, read once in `init`.
pub struct Plugin {
    wanted: String,
}

impl Transform for Plugin {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Plugin {
            wanted: config.get("type").unwrap_or("page_view").to_string(),
        })
    }

    /// What the host hands this stage: the `type` field and the `seen` count of each
    /// event's key, not whole events (remove this to get whole events).
    fn needs(&self) -> Needs {
        Needs::fields(&["type"]).with_state(&["seen"])
    }

    fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
        let Some(kind) = event.get_str("type") else {
            ctx.dead_letter("missing field `type`", &event);
            return;
        };
        if kind == self.wanted {
            let seen: u64 = ctx.state(event.key(), "seen").unwrap_or(0) + 1;
            ctx.set_state(event.key(), "seen", &seen);
            event.set_bool("{field}", true);
            event.set_i64("{field}_count", seen as i64);
        }
        ctx.emit(&event);
    }
}

weir_sdk::export_transform!(Plugin);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_sdk::testing::TestHarness;

    use super::Plugin;

    #[test]
    fn marks_and_counts_wanted_events_and_dead_letters_untyped_ones() {
        let mut h = TestHarness::<Plugin>::new(&[]).unwrap();
        let out = h.process_one("u1", 0, json!({"user_id": "u1", "type": "page_view"}));
        assert_eq!(out[0].value["{field}"], json!(true));
        let out = h.process_one("u1", 1, json!({"user_id": "u1", "type": "page_view"}));
        assert_eq!(out[0].value["{field}_count"], json!(2));
        let out = h.process_one("u1", 2, json!({"user_id": "u1", "type": "click"}));
        assert!(out[0].value.get("{field}").is_none());
        let out = h.process_one("u1", 3, json!({"user_id": "u1"}));
        assert_eq!(out[0].dead_letter_reason(), Some("missing field `type`"));
    }
}
"#;

const README_MD: &str = r#"# {name}

A weir transform, made by `weir plugin new {name}`.

```sh
cargo test                            # the plugin's own tests, natively
weir plugin build                     # the component (cargo build --release --target wasm32-wasip2)
weir plugin deploy --to PLUGIN_DIR    # build, then install it as PLUGIN_DIR/{name}.wasm (or --to s3://bucket/dir)
```

Then add a stage to the pipeline, `[[stages]] name = "{name}"`, `plugin = "{name}"`
(`[stages.config] type = "..."` picks the events to mark). Try it on a file first:
`weir plugin test target/wasm32-wasip2/release/{crate}.wasm --input events.ndjson`.
A running weir swaps a deployed version in at its next batch.

`{sdk_note}`
"#;

/// Refuses a plugin name that is not lowercase letters, digits and `-`, starting with a letter.
pub(super) fn check_name(name: &str) -> Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits and `-`, starting with a letter"
        );
    }
    Ok(())
}

/// Writes the crate `name` under `parent`; `sdk` is the `weir-sdk` folder it depends on
/// (default: the SDK this weir carries, written into the crate's `weir-sdk` folder).
pub fn new_plugin(name: &str, parent: &Path, sdk: Option<PathBuf>) -> Result<PathBuf> {
    check_name(name)?;
    let sdk = sdk
        .map(|sdk| {
            sdk.canonicalize().with_context(|| {
                format!(
                    "the weir SDK is not at {}: pass --sdk PATH (the `sdk` folder of a weir \
                     checkout), or leave --sdk out to use the SDK this weir carries",
                    sdk.display()
                )
            })
        })
        .transpose()?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let (sdk_path, sdk_note) = match &sdk {
        Some(sdk) => (
            sdk.display().to_string(),
            format!("The crate uses the SDK at {}.", sdk.display()),
        ),
        None => (
            format!("{VENDORED_SDK}/sdk"),
            format!(
                "`{VENDORED_SDK}/` holds the SDK and the WIT contract of weir {}, which made \
                 this crate; a newer weir's `weir plugin new` carries newer ones.",
                env!("CARGO_PKG_VERSION")
            ),
        ),
    };
    let crate_name = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{crate}", &crate_name)
            .replace("{field}", &crate_name)
            .replace("{sdk}", &sdk_path)
            .replace("`{sdk_note}`", &sdk_note)
    };
    for folder in ["src", ".cargo"] {
        std::fs::create_dir_all(dir.join(folder))
            .with_context(|| format!("creating {}", dir.join(folder).display()))?;
    }
    for (file, template) in [
        ("Cargo.toml", CARGO_TOML),
        ("src/lib.rs", LIB_RS),
        ("README.md", README_MD),
        (".gitignore", "/target\n"),
        ("rust-toolchain.toml", RUST_TOOLCHAIN_TOML),
        (".cargo/config.toml", CARGO_CONFIG_TOML),
    ] {
        std::fs::write(dir.join(file), fill(template))
            .with_context(|| format!("writing {file}"))?;
    }
    if sdk.is_none() {
        super::embedded_sdk::write_to(&dir.join(VENDORED_SDK))?;
    }
    Ok(dir)
}
