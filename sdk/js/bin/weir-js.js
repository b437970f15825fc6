#!/usr/bin/env node
// `weir-js build [--out FILE]`: bundles a plugin project (its package.json's `weir.entry`,
// with `weir-sdk` and any `.txt` or `.json` files it imports) with esbuild and builds the bundle
// into a `weir:transform@0.2.0` component with componentize-js; prints the component's path.
// `weir-js test`: bundles the project's `*.test.js` files the same way and runs them with
// `node --test`. Both run in the project folder.

import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";

import { componentize } from "@bytecodealliance/componentize-js";
import { build } from "esbuild";

const project = process.cwd();
const manifest = JSON.parse(readFileSync(join(project, "package.json"), "utf8"));
const settings = { entry: "app.js", wit: "wit", ...manifest.weir };
const out = join(project, "target");

/** esbuild options shared by the component and the tests: data files come in as text. */
const bundling = { bundle: true, format: "esm", loader: { ".txt": "text" }, logLevel: "warning" };

async function buildComponent(args) {
  const at = args.indexOf("--out");
  const component = at >= 0 ? resolve(args[at + 1]) : join(out, `${manifest.name}.wasm`);
  mkdirSync(out, { recursive: true });
  const bundle = join(out, `${manifest.name}.bundle.js`);
  await build({
    ...bundling,
    entryPoints: [join(project, settings.entry)],
    outfile: bundle,
    // The contract's imports are the component's: the host provides them.
    external: ["weir:*"],
  });
  const { component: bytes } = await componentize({
    sourcePath: bundle,
    witPath: resolve(project, settings.wit),
    worldName: "transform",
    // weir's sandbox grants no network: a component that imports wasi:http is refused.
    disableFeatures: ["http", "fetch-event"],
  });
  writeFileSync(component, bytes);
  console.log(component);
}

async function runTests() {
  const tests = readdirSync(project, { recursive: true })
    .filter((f) => f.endsWith(".test.js") && !f.includes("node_modules"));
  const bundled = join(out, "tests");
  mkdirSync(bundled, { recursive: true });
  const files = [];
  for (const test of tests) {
    const file = join(bundled, basename(test).replace(/\.js$/, ".mjs"));
    await build({ ...bundling, platform: "node", entryPoints: [join(project, test)], outfile: file,
      external: ["node:*"] });
    files.push(file);
  }
  const run = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
  process.exit(run.status ?? 1);
}

const [command, ...args] = process.argv.slice(2);
if (command === "build") await buildComponent(args);
else if (command === "test") await runTests();
else {
  console.error("usage: weir-js build [--out FILE] | weir-js test");
  process.exit(2);
}
