//! `weir plugin new NAME --lang python|js`: a Python or JavaScript plugin project against the
//! SDK this weir carries, whose tests pass out of the box and which `weir plugin build` turns
//! into a component once the project's install step has fetched its tools.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::embedded_sdk::{self, Guest};
use super::plugin_build::COMPONENTIZE_PY;

/// Where a new project keeps the SDK and WIT it was made with.
const VENDORED_SDK: &str = "weir-sdk";

const PYPROJECT_TOML: &str = r#"[project]
name = "{name}"
version = "0.1.0"
description = "A weir transform."
requires-python = ">=3.11"

# How `weir plugin build` makes the component: componentize-py (from .venv) over `app`'s
# WitWorld, with the weir WIT and these folders on the Python path.
[tool.weir]
app = "app"
wit = "weir-sdk/wit"
python-path = [".", "weir-sdk/python"]

[tool.pytest.ini_options]
pythonpath = [".", "weir-sdk/python"]
"#;

const REQUIREMENTS_TXT: &str = "# The project's tools: the component builder and the test runner.\n{componentize_py}\npytest==8.4.2\n";

const TRANSFORM_PY: &str = r#""""{name}: a weir transform. It marks events of the configured `type` (default
`page_view`) with `{field}: true`, counts them per key in host-owned state, and dead-letters
events without a `type`."""

from weir_sdk import Config, Context, Event, Needs, Transform


class Plugin(Transform):
    def __init__(self, config: Config):
        self.wanted = config.non_empty_or("type", "page_view")

    def needs(self) -> Needs:
        # What the host hands this stage: the `type` field and the `seen` count of each
        # event's key, not whole events (return Needs.whole_values() to get whole events).
        return Needs.of_fields(["type"]).with_state(["seen"])

    def process(self, event: Event, ctx: Context) -> None:
        kind = event.get_str("type")
        if kind is None:
            ctx.dead_letter("missing field `type`", event)
            return
        if kind == self.wanted:
            seen = ctx.state(event.key, "seen", 0) + 1
            ctx.set_state(event.key, "seen", seen)
            event.set("{field}", True)
            event.set("{field}_count", seen)
        ctx.emit(event)
"#;

const APP_PY: &str = r#""""The component's entry module: componentize-py builds the `WitWorld` found here."""

from weir_sdk.guest import export

from {module} import Plugin

WitWorld = export(Plugin)
"#;

const TEST_PY: &str = r#"from weir_sdk.testing import TestHarness

from {module} import Plugin


def test_marks_and_counts_wanted_events_and_dead_letters_untyped_ones():
    h = TestHarness(Plugin)
    [out] = h.process_one("u1", 0, {"user_id": "u1", "type": "page_view"})
    assert out.value["{field}"] is True
    [out] = h.process_one("u1", 1, {"user_id": "u1", "type": "page_view"})
    assert out.value["{field}_count"] == 2
    [out] = h.process_one("u1", 2, {"user_id": "u1", "type": "click"})
    assert "{field}" not in out.value
    [out] = h.process_one("u1", 3, {"user_id": "u1"})
    assert out.dead_letter_reason == "missing field `type`"
"#;

const PYTHON_README_MD: &str = r#"# {name}

A weir transform in Python, made by `weir plugin new {name} --lang python`.

```sh
python3 -m venv .venv && .venv/bin/pip install -r requirements.txt   # the tools, once
.venv/bin/python -m pytest               # the plugin's own tests, natively
weir plugin build                        # the component: target/{name}.wasm (componentize-py)
weir plugin deploy --to PLUGIN_DIR       # build, then install it as PLUGIN_DIR/{name}.wasm
```

Then add a stage to the pipeline, `[[stages]] name = "{name}"`, `plugin = "{name}"`. Try it on
a file first: `weir plugin test target/{name}.wasm --input events.ndjson`.

`weir-sdk/` holds the Python SDK and the WIT contract of weir {version}, which made this
project. The component carries a Python interpreter: it is larger and slower to start than a
Rust one (BENCHMARKS.md of weir has the figures).
"#;

const PACKAGE_JSON: &str = r#"{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "description": "A weir transform.",
  "type": "module",
  "dependencies": {
    "weir-sdk": "file:weir-sdk/js"
  },
  "weir": {
    "entry": "app.js",
    "wit": "weir-sdk/wit"
  },
  "scripts": {
    "test": "weir-js test",
    "build": "weir-js build"
  }
}
"#;

const TRANSFORM_JS: &str = r#"// {name}: a weir transform. It marks events of the configured `type` (default
// `page_view`) with `{field}: true`, counts them per key in host-owned state, and
// dead-letters events without a `type`.

import { Needs, Transform } from "weir-sdk";

export class Plugin extends Transform {
  constructor(config) {
    super(config);
    this.wanted = config.nonEmptyOr("type", "page_view");
  }

  // What the host hands this stage: the `type` field and the `seen` count of each event's
  // key, not whole events (return Needs.wholeValues() to get whole events).
  needs() {
    return Needs.fields(["type"]).withState(["seen"]);
  }

  process(event, ctx) {
    const kind = event.getString("type");
    if (kind === undefined) {
      ctx.deadLetter("missing field `type`", event);
      return;
    }
    if (kind === this.wanted) {
      const seen = ctx.state(event.key, "seen", 0) + 1;
      ctx.setState(event.key, "seen", seen);
      event.set("{field}", true);
      event.set("{field}_count", seen);
    }
    ctx.emit(event);
  }
}
"#;

const APP_JS: &str = r#"// The component's entry module: componentize-js builds its `init`, `process` and `onTimers`.
import { exportTransform } from "weir-sdk/guest";

import { Plugin } from "./{name}.js";

export const { init, process, onTimers } = exportTransform(Plugin);
"#;

const TEST_JS: &str = r#"import assert from "node:assert/strict";
import { test } from "node:test";

import { TestHarness } from "weir-sdk/testing";

import { Plugin } from "./{name}.js";

test("marks and counts wanted events and dead-letters untyped ones", () => {
  const h = new TestHarness(Plugin);
  assert.equal(h.processOne("u1", 0, { user_id: "u1", type: "page_view" })[0].value.{field}, true);
  assert.equal(h.processOne("u1", 1, { user_id: "u1", type: "page_view" })[0].value.{field}_count, 2);
  assert.equal(h.processOne("u1", 2, { user_id: "u1", type: "click" })[0].value.{field}, undefined);
  assert.equal(h.processOne("u1", 3, { user_id: "u1" })[0].deadLetterReason, "missing field `type`");
});
"#;

const JS_README_MD: &str = r#"# {name}

A weir transform in JavaScript, made by `weir plugin new {name} --lang js`.

```sh
npm install                              # the tools (componentize-js, esbuild), once
npm test                                 # the plugin's own tests, under node
weir plugin build                        # the component: target/{name}.wasm (weir-js build)
weir plugin deploy --to PLUGIN_DIR       # build, then install it as PLUGIN_DIR/{name}.wasm
```

Then add a stage to the pipeline, `[[stages]] name = "{name}"`, `plugin = "{name}"`. Try it on
a file first: `weir plugin test target/{name}.wasm --input events.ndjson`. Modules and `.txt`
files the entry imports are bundled in (esbuild).

`weir-sdk/` holds the JavaScript SDK (with TypeScript types) and the WIT contract of weir
{version}, which made this project. The component carries a JavaScript engine: it is larger
and slower to start than a Rust one (BENCHMARKS.md of weir has the figures).
"#;

/// Writes the `language` project `name` under `parent`; returns its folder.
pub fn new_plugin(name: &str, parent: &Path, language: Guest) -> Result<PathBuf> {
    super::scaffold::check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let module = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{module}", &module)
            .replace("{field}", &module)
            .replace("{componentize_py}", COMPONENTIZE_PY)
            .replace("{version}", env!("CARGO_PKG_VERSION"))
    };
    let files: Vec<(String, &str)> = match language {
        Guest::Python => vec![
            ("pyproject.toml".into(), PYPROJECT_TOML),
            ("requirements.txt".into(), REQUIREMENTS_TXT),
            (format!("{module}.py"), TRANSFORM_PY),
            ("app.py".into(), APP_PY),
            (format!("test_{module}.py"), TEST_PY),
            ("README.md".into(), PYTHON_README_MD),
            (".gitignore".into(), "/.venv\n/target\n__pycache__/\n"),
        ],
        Guest::JavaScript => vec![
            ("package.json".into(), PACKAGE_JSON),
            (format!("{name}.js"), TRANSFORM_JS),
            ("app.js".into(), APP_JS),
            (format!("{name}.test.js"), TEST_JS),
            ("README.md".into(), JS_README_MD),
            (".gitignore".into(), "/node_modules\n/target\n"),
        ],
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, template) in files {
        std::fs::write(dir.join(&file), fill(template))
            .with_context(|| format!("writing {file}"))?;
    }
    embedded_sdk::write_guest_to(&dir.join(VENDORED_SDK), language)?;
    Ok(dir)
}
