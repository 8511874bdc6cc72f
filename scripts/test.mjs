#!/usr/bin/env node
// npm test: build, then the filter's unit specs (as-pect), then every TypeScript test
// (test/**/*.test.ts: the proxy-wasm host, integration through the host, fuzzing, sidecar,
// end-to-end) with Node's test runner. Extra arguments select test files by substring:
//   npm test -- integration
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
process.chdir(root);
const filters = process.argv.slice(2);

function run(label, cmd, args) {
  console.log(`\n== ${label}`);
  const r = spawnSync(cmd, args, { stdio: "inherit", env: { ...process.env, FORCE_COLOR: process.env.FORCE_COLOR ?? "0" } });
  if (r.status !== 0) {
    console.error(`\n${label} failed`);
    process.exit(r.status ?? 1);
  }
}

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === "node_modules" || name === "fixtures") continue;
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out.sort();
}

run("build", process.execPath, ["scripts/build.mjs"]);
if (filters.length === 0 || filters.includes("unit")) {
  run("unit specs (as-pect)", process.execPath, ["node_modules/@as-pect/cli/bin/asp.js", "--config", "as-pect.config.js", "--no-logo"]);
}
const tests = findTests("test").filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (tests.length > 0) {
  run(`TypeScript tests (${tests.length} files)`, process.execPath, ["--import", "tsx", "--test", "--test-reporter", "spec", ...tests]);
}
