//! The plugin SDKs this weir was built with, carried in the binary: the Rust SDK's sources
//! with a manifest whose workspace-inherited fields are resolved to the versions this weir was
//! built with, the Python and JavaScript SDKs, and the WIT contract. `weir plugin new` writes
//! them into the new project, so a plugin is made and built from an installed binary, outside
//! any checkout, against the exact contract the binary speaks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The Rust SDK's files, relative to the folder they are written to (the SDK's bindings read
/// the contract from `../wit`).
const FILES: &[(&str, &str)] = &[
    ("sdk/src/abi.rs", include_str!("../../../sdk/src/abi.rs")),
    (
        "sdk/src/config.rs",
        include_str!("../../../sdk/src/config.rs"),
    ),
    (
        "sdk/src/context.rs",
        include_str!("../../../sdk/src/context.rs"),
    ),
    (
        "sdk/src/event.rs",
        include_str!("../../../sdk/src/event.rs"),
    ),
    (
        "sdk/src/guest.rs",
        include_str!("../../../sdk/src/guest.rs"),
    ),
    (
        "sdk/src/host_api.rs",
        include_str!("../../../sdk/src/host_api.rs"),
    ),
    ("sdk/src/json.rs", include_str!("../../../sdk/src/json.rs")),
    ("sdk/src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    (
        "sdk/src/testing.rs",
        include_str!("../../../sdk/src/testing.rs"),
    ),
];

const SDK_MANIFEST: &str = include_str!("../../../sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");

/// The Python SDK's files, relative to the folder they are written to (`python/weir_sdk`).
const PYTHON_FILES: &[(&str, &str)] = &[
    (
        "python/weir_sdk/__init__.py",
        include_str!("../../../sdk/python/weir_sdk/__init__.py"),
    ),
    (
        "python/weir_sdk/abi.py",
        include_str!("../../../sdk/python/weir_sdk/abi.py"),
    ),
    (
        "python/weir_sdk/config.py",
        include_str!("../../../sdk/python/weir_sdk/config.py"),
    ),
    (
        "python/weir_sdk/context.py",
        include_str!("../../../sdk/python/weir_sdk/context.py"),
    ),
    (
        "python/weir_sdk/event.py",
        include_str!("../../../sdk/python/weir_sdk/event.py"),
    ),
    (
        "python/weir_sdk/guest.py",
        include_str!("../../../sdk/python/weir_sdk/guest.py"),
    ),
    (
        "python/weir_sdk/testing.py",
        include_str!("../../../sdk/python/weir_sdk/testing.py"),
    ),
    (
        "python/weir_sdk/transform.py",
        include_str!("../../../sdk/python/weir_sdk/transform.py"),
    ),
];

/// The JavaScript SDK's files, relative to the folder they are written to (`js`, an npm
/// package with its build tool `weir-js` and its types).
const JS_FILES: &[(&str, &str)] = &[
    (
        "js/package.json",
        include_str!("../../../sdk/js/package.json"),
    ),
    (
        "js/bin/weir-js.js",
        include_str!("../../../sdk/js/bin/weir-js.js"),
    ),
    ("js/src/abi.js", include_str!("../../../sdk/js/src/abi.js")),
    (
        "js/src/config.js",
        include_str!("../../../sdk/js/src/config.js"),
    ),
    (
        "js/src/context.js",
        include_str!("../../../sdk/js/src/context.js"),
    ),
    (
        "js/src/event.js",
        include_str!("../../../sdk/js/src/event.js"),
    ),
    (
        "js/src/guest.js",
        include_str!("../../../sdk/js/src/guest.js"),
    ),
    (
        "js/src/index.js",
        include_str!("../../../sdk/js/src/index.js"),
    ),
    (
        "js/src/testing.js",
        include_str!("../../../sdk/js/src/testing.js"),
    ),
    (
        "js/src/transform.js",
        include_str!("../../../sdk/js/src/transform.js"),
    ),
    (
        "js/types/index.d.ts",
        include_str!("../../../sdk/js/types/index.d.ts"),
    ),
    (
        "js/types/guest.d.ts",
        include_str!("../../../sdk/js/types/guest.d.ts"),
    ),
    (
        "js/types/testing.d.ts",
        include_str!("../../../sdk/js/types/testing.d.ts"),
    ),
    (
        "js/types/wit/transform.d.ts",
        include_str!("../../../sdk/js/types/wit/transform.d.ts"),
    ),
    (
        "js/types/wit/interfaces/weir-transform-types.d.ts",
        include_str!("../../../sdk/js/types/wit/interfaces/weir-transform-types.d.ts"),
    ),
    (
        "js/types/wit/interfaces/weir-transform-state.d.ts",
        include_str!("../../../sdk/js/types/wit/interfaces/weir-transform-state.d.ts"),
    ),
    (
        "js/types/wit/interfaces/weir-transform-log.d.ts",
        include_str!("../../../sdk/js/types/wit/interfaces/weir-transform-log.d.ts"),
    ),
    (
        "js/types/wit/interfaces/weir-transform-metrics.d.ts",
        include_str!("../../../sdk/js/types/wit/interfaces/weir-transform-metrics.d.ts"),
    ),
    (
        "js/types/wit/interfaces/weir-transform-geo.d.ts",
        include_str!("../../../sdk/js/types/wit/interfaces/weir-transform-geo.d.ts"),
    ),
];

/// The WIT contract, for the Python and JavaScript builders.
const WIT: (&str, &str) = (
    "wit/transform.wit",
    include_str!("../../../wit/transform.wit"),
);

/// A plugin language other than Rust.
#[derive(Debug, Clone, Copy)]
pub enum Guest {
    /// The Python SDK (`python/weir_sdk`).
    Python,
    /// The JavaScript SDK (`js`, the `weir-sdk` npm package).
    JavaScript,
}

/// Writes the SDK of `language` and the WIT contract into `dir`.
pub fn write_guest_to(dir: &Path, language: Guest) -> Result<()> {
    let files = match language {
        Guest::Python => PYTHON_FILES,
        Guest::JavaScript => JS_FILES,
    };
    write_files(dir, files.iter().chain([&WIT]))
}

fn write_files<'a>(dir: &Path, files: impl Iterator<Item = &'a (&'a str, &'a str)>) -> Result<()> {
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Writes the SDK into `dir` (`dir/sdk`, `dir/wit`); returns the SDK crate's folder.
pub fn write_to(dir: &Path) -> Result<PathBuf> {
    write_files(dir, FILES.iter().chain([&WIT]))?;
    let manifest = dir.join("sdk/Cargo.toml");
    std::fs::write(&manifest, standalone_manifest()?)
        .with_context(|| format!("writing {}", manifest.display()))?;
    Ok(dir.join("sdk"))
}

/// The SDK's manifest with every `workspace = true` replaced by the workspace's value, and
/// without the workspace's lints.
fn standalone_manifest() -> Result<String> {
    let workspace: toml::Table = toml::from_str(WORKSPACE_MANIFEST)?;
    let workspace = workspace
        .get("workspace")
        .and_then(toml::Value::as_table)
        .context("the workspace manifest has no [workspace]")?;
    let package_values = workspace.get("package").and_then(toml::Value::as_table);
    let dependency_values = workspace
        .get("dependencies")
        .and_then(toml::Value::as_table);
    let mut sdk: toml::Table = toml::from_str(SDK_MANIFEST)?;
    sdk.remove("lints");
    if let Some(package) = sdk.get_mut("package").and_then(toml::Value::as_table_mut) {
        inherit(package, package_values, false)?;
    }
    if let Some(dependencies) = sdk
        .get_mut("dependencies")
        .and_then(toml::Value::as_table_mut)
    {
        inherit(dependencies, dependency_values, true)?;
    }
    if let Some(targets) = sdk.get_mut("target").and_then(toml::Value::as_table_mut) {
        for (_, target) in targets.iter_mut() {
            let Some(target) = target.as_table_mut() else {
                continue;
            };
            if let Some(deps) = target
                .get_mut("dependencies")
                .and_then(toml::Value::as_table_mut)
            {
                inherit(deps, dependency_values, true)?;
            }
        }
    }
    Ok(toml::to_string(&sdk)?)
}

/// Replaces each `key.workspace = true` of `table` by the workspace's `key`. A dependency's
/// own keys (`features`, `optional`) are kept beside the inherited ones.
fn inherit(
    table: &mut toml::Table,
    values: Option<&toml::Table>,
    dependencies: bool,
) -> Result<()> {
    for (key, value) in table.iter_mut() {
        let Some(own) = value
            .as_table()
            .filter(|t| t.get("workspace") == Some(&true.into()))
        else {
            continue;
        };
        let Some(inherited) = values.and_then(|v| v.get(key)) else {
            bail!("the workspace manifest has no `{key}` to inherit");
        };
        if !dependencies {
            *value = inherited.clone();
            continue;
        }
        let mut merged = match inherited {
            toml::Value::String(version) => {
                toml::Table::from_iter([("version".to_string(), version.clone().into())])
            }
            toml::Value::Table(t) => t.clone(),
            other => bail!("workspace dependency `{key}` is {other}"),
        };
        for (k, v) in own.iter().filter(|(k, _)| *k != "workspace") {
            merged.insert(k.clone(), v.clone());
        }
        *value = toml::Value::Table(merged);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to the SDK is carried too.
    #[test]
    fn every_sdk_source_file_is_carried() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/src");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let path = format!("sdk/src/{name}");
            assert!(
                FILES.iter().any(|(f, _)| *f == path),
                "{path} is not in embedded_sdk::FILES"
            );
        }
    }

    #[test]
    fn the_manifest_stands_alone_with_the_workspace_versions() {
        let manifest: toml::Table = toml::from_str(&standalone_manifest().unwrap()).unwrap();
        assert!(!standalone_manifest().unwrap().contains("workspace"));
        assert_eq!(manifest["package"]["name"].as_str(), Some("weir-sdk"));
        assert_eq!(
            manifest["package"]["version"].as_str(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(manifest["package"]["rust-version"].as_str(), Some("1.95"));
        let serde = &manifest["dependencies"]["serde"];
        assert_eq!(serde["version"].as_str(), Some("1"));
        assert!(
            serde["features"]
                .as_array()
                .unwrap()
                .contains(&"derive".into())
        );
        let wasm = &manifest["target"]["cfg(target_arch = \"wasm32\")"]["dependencies"];
        assert!(wasm["wit-bindgen"]["version"].as_str().is_some());
    }
}
