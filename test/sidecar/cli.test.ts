import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_PUSH_URL, flagNames, helpText, parseOptions } from "../../sidecar/cli.ts";
import { ERROR_CODES } from "../../sidecar/errors.ts";
import { parseBytes, parseDuration } from "../../sidecar/util/units.ts";

const DOCS = new URL("../../docs/sidecar.md", import.meta.url);

test("defaults", () => {
  const o = parseOptions([]);
  assert.equal(o.manifests, undefined);
  assert.deepEqual(o.pools, []);
  assert.deepEqual(o.pushUrls, [DEFAULT_PUSH_URL]);
  assert.equal(o.scrapeIntervalMs, 100);
  assert.equal(o.scrapeJitter, 0.5);
  assert.equal(o.scrapeTimeoutMs, 500);
  assert.equal(o.unreachableAfter, 2);
  assert.equal(o.scrapeMaxBytes, 4 * 1024 * 1024);
  assert.equal(o.pushIntervalMs, 1000);
  assert.equal(o.metricsPort, 9090);
  assert.equal(o.logLevel, "info");
});

test("repeatable flags, durations and sizes", () => {
  const o = parseOptions([
    "--pool", "default/a", "--pool", "team-b/b",
    "--push-url", "http://127.0.0.1:19100/wasm-epp/v1/state", "--push-url", "http://127.0.0.1:19101/wasm-epp/v1/state",
    "--scrape-interval", "75ms", "--scrape-timeout", "1s", "--scrape-max-bytes", "512KiB", "--push-interval", "2s", "--unreachable-after", "3",
    "--manifests", "deploy/examples", "--namespace", "team-b",
  ]);
  assert.deepEqual(o.pools, ["default/a", "team-b/b"]);
  assert.equal(o.pushUrls.length, 2);
  assert.equal(o.scrapeIntervalMs, 75);
  assert.equal(o.scrapeTimeoutMs, 1000);
  assert.equal(o.scrapeMaxBytes, 512 * 1024);
  assert.equal(o.pushIntervalMs, 2000);
  assert.equal(o.unreachableAfter, 3);
  assert.equal(o.namespace, "team-b");
  assert.equal(o.scrapeNameFilter, true, "name[] filtering is on by default");
  assert.equal(parseOptions(["--scrape-name-filter", "off"]).scrapeNameFilter, false);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("soon"), undefined);
  assert.equal(parseBytes("4MiB"), 4 * 1024 * 1024);
  assert.equal(parseBytes("2MB"), 2_000_000);
  assert.equal(parseBytes("lots"), undefined);
});

test("usage errors name the flag", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--unknown"], /unknown/i],
    [["--pool", "nonamespace"], /--pool nonamespace: must be namespace\/name/],
    [["--push-url", "https://x/wasm-epp/v1/state"], /only http:\/\//],
    [["--push-url", "not a url"], /not a URL/],
    [["--scrape-interval", "1ms"], /--scrape-interval 1ms: must be between 10ms and 1m/],
    [["--scrape-jitter", "2"], /--scrape-jitter 2: must be between/],
    [["--unreachable-after", "0"], /--unreachable-after 0/],
    [["--metrics-port", "70000"], /--metrics-port 70000/],
    [["--log-level", "loud"], /--log-level/],
    [["--scrape-name-filter", "maybe"], /--scrape-name-filter must be on or off/],
    [["--manifests", "d", "--kubeconfig", "k"], /exclude each other/],
    [["--scrape-interval"], /argument missing|value/i],
  ];
  for (const [args, re] of cases) {
    assert.throws(() => parseOptions(args), (e: Error & { code?: string }) => e.code === "usage" && re.test(e.message), args.join(" "));
  }
});

test("--help lists every flag with its default", () => {
  const help = helpText("test");
  for (const f of flagNames()) assert.ok(help.includes(`--${f}`), `--${f}`);
  assert.match(help, /--scrape-interval DURATION[\s\S]*\(default 100ms\)/);
  assert.match(help, /WASM_EPP_PUSH_TOKEN/);
});

test("docs/sidecar.md documents every flag and every error code", async () => {
  const docs = await readFile(DOCS, "utf8");
  for (const f of flagNames()) assert.ok(docs.includes(`--${f}`), `--${f} in docs/sidecar.md`);
  for (const code of Object.keys(ERROR_CODES)) assert.ok(docs.includes(`\`${code}\``), `error code ${code} in docs/sidecar.md`);
});

test("docs/sidecar.md documents every log event the sidecar emits", async () => {
  const root = fileURLToPath(new URL("../../sidecar/", import.meta.url));
  const files = (await readdir(root, { recursive: true })).filter((f) => f.endsWith(".ts"));
  const events = new Set<string>();
  for (const f of files) {
    const text = await readFile(join(root, f), "utf8");
    for (const m of text.matchAll(/log(?:\.(?:debug|info|warn|error)|\[level\])\("([a-z_]+)"/g)) events.add(m[1]);
  }
  assert.ok(events.size >= 15, `found ${events.size} events`);
  const docs = await readFile(DOCS, "utf8");
  for (const e of events) assert.ok(docs.includes(`\`${e}\``), `event ${e} in docs/sidecar.md`);
});
