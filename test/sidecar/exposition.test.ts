import { test } from "node:test";
import assert from "node:assert/strict";
import { MetricSelector, parseSampleLine, parseValue, scanExposition, type Sample } from "../../sidecar/metrics/exposition.ts";
import { defaultState, sglangExposition, vllmV0Exposition, vllmV1Exposition } from "../fakes/model-metrics.ts";

test("parseSampleLine reads names, labels, values and timestamps", () => {
  assert.deepEqual(parseSampleLine('vllm:num_requests_waiting{engine="0",model_name="qwen"} 2.0'), {
    name: "vllm:num_requests_waiting",
    labels: { engine: "0", model_name: "qwen" },
    value: 2,
  });
  assert.deepEqual(parseSampleLine("up 1 1700000000000"), { name: "up", labels: {}, value: 1, timestampMs: 1700000000000 });
  assert.deepEqual(parseSampleLine("  x{a=\"b\",} -3.5e-2   "), { name: "x", labels: { a: "b" }, value: -0.035 });
  assert.deepEqual(parseSampleLine("x{ a = \"b\" , c=\"\" } 7\r"), { name: "x", labels: { a: "b", c: "" }, value: 7 });
  assert.deepEqual(parseSampleLine("x{} 7"), { name: "x", labels: {}, value: 7 });
  assert.deepEqual(parseSampleLine("x 5 -12"), { name: "x", labels: {}, value: 5, timestampMs: -12 });
});

test("label values keep their escapes decoded", () => {
  const s = parseSampleLine('m{path="C:\\\\dir",msg="say \\"hi\\"\\nbye",odd="a\\qb"} 1');
  assert.ok(s, "s");
  assert.equal(s.labels.path, "C:\\dir");
  assert.equal(s.labels.msg, 'say "hi"\nbye');
  assert.equal(s.labels.odd, "a\\qb");
  // A brace, comma or equals sign inside a quoted value is part of the value.
  assert.deepEqual(parseSampleLine('m{a="x}y,z=w"} 2')?.labels, { a: "x}y,z=w" });
});

test("special values: NaN and infinities in any case", () => {
  assert.ok(Number.isNaN(parseSampleLine("m NaN")!.value), "Number.isNaN(parseSampleLine(\"m NaN\")!.value)");
  assert.equal(parseSampleLine("m +Inf")!.value, Infinity);
  assert.equal(parseSampleLine("m -Inf")!.value, -Infinity);
  assert.equal(parseSampleLine("m inf")!.value, Infinity);
  assert.equal(parseValue("1e3"), 1000);
  assert.equal(parseValue(".5"), 0.5);
  assert.equal(parseValue(""), undefined);
  assert.equal(parseValue("abc"), undefined);
  assert.equal(parseValue("1.2.3"), undefined);
  assert.equal(parseValue("-"), undefined);
});

test("malformed lines are rejected, never thrown", () => {
  const bad = [
    "",
    "   ",
    "# HELP m help",
    "m",
    "m{",
    'm{a="b"',
    'm{a="b} 1',
    "m{a=b} 1",
    'm{a="b" c="d"} 1',
    'm{1a="b"} 1',
    "m{a=\"b\\",
    "m 1 2 3",
    "m 1 1.5",
    "m one",
    "1m 3",
    '{__name__="m"} 1',
    "m{a=\"x\ny\"} 1",
  ];
  for (const line of bad) assert.equal(parseSampleLine(line), undefined, JSON.stringify(line));
});

test("scanExposition walks comments, blank lines, CRLF and counts bad lines", () => {
  const text = "# HELP a x\r\n# TYPE a gauge\r\na 1\r\n\r\nb{x=\"1\"} 2\r\nnot valid {\r\n  # indented comment\nc 3";
  const seen: Sample[] = [];
  const r = scanExposition(text, (s) => seen.push(s));
  assert.deepEqual(seen.map((s) => [s.name, s.value]), [["a", 1], ["b", 2], ["c", 3]]);
  assert.deepEqual(r, { samples: 3, invalid: 1 });
});

test("MetricSelector finds exactly the samples a full scan finds, on every exposition flavour", () => {
  const state = defaultState({ waiting: 3, running: 7, kvUsage: 0.41, engines: 2, loraRunning: ["a"] });
  for (const text of [vllmV1Exposition(state), vllmV0Exposition(state), sglangExposition(state)]) {
    const all: Sample[] = [];
    scanExposition(text, (s) => all.push(s));
    const names = [...new Set(all.map((s) => s.name))];
    const sel = new MetricSelector(names).select(Buffer.from(text));
    assert.equal(sel.invalid, 0);
    for (const n of names) {
      assert.deepEqual(sel.samples.get(n), all.filter((s) => s.name === n), n);
    }
  }
});

test("MetricSelector does not confuse a name with a longer one or with comments", () => {
  const text = [
    "# HELP vllm:num_requests_waiting waiting",
    "vllm:num_requests_waiting_total 99",
    "vllm:num_requests_waiting{model_name=\"a\"} 1",
    "xvllm:num_requests_waiting 50",
    "vllm:num_requests_waiting 2",
    "vllm:num_requests_waiting\t4",
  ].join("\n");
  const sel = new MetricSelector(["vllm:num_requests_waiting"]).select(Buffer.from(text));
  assert.deepEqual(sel.samples.get("vllm:num_requests_waiting")!.map((s) => s.value), [1, 2, 4]);
  // The very first line counts too, with or without a trailing newline.
  const first = new MetricSelector(["m"]).select(Buffer.from("m 5"));
  assert.equal(first.samples.get("m")![0].value, 5);
});

test("MetricSelector counts a wanted line it cannot parse and keeps going", () => {
  const text = 'm{a="unterminated} 1\nm{a="ok"} 2\nm 3 4 5\n';
  const sel = new MetricSelector(["m"]).select(Buffer.from(text));
  assert.deepEqual(sel.samples.get("m")!.map((s) => s.value), [2]);
  assert.equal(sel.invalid, 2);
});

test("garbage, truncation and binary input never throw", () => {
  const full = Buffer.from(vllmV1Exposition(defaultState({ waiting: 3 })));
  const sel = new MetricSelector(["vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:lora_requests_info"]);
  // Every truncation point: the result only ever contains correctly parsed samples.
  for (let cut = 0; cut < full.length; cut += 97) {
    const r = sel.select(full.subarray(0, cut));
    for (const list of r.samples.values()) for (const s of list) assert.ok(Number.isFinite(s.value) || Number.isNaN(s.value), "Number.isFinite(s.value) || Number.isNaN(s.value)");
  }
  // Pseudo-random bytes, with and without sprinkled metric names.
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let round = 0; round < 200; round++) {
    const len = Math.floor(rnd() * 4000);
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = rnd() < 0.1 ? 0x0a : rnd() < 0.3 ? "vllm:num_requests_waiting{=\" }1".charCodeAt(Math.floor(rnd() * 31)) : Math.floor(rnd() * 256);
    sel.select(b);
    scanExposition(b.toString("latin1"), () => {});
  }
});

test("a large page with many histogram series parses in well under a millisecond per page", () => {
  const text = Buffer.from(vllmV1Exposition(defaultState({ engines: 4 })));
  const sel = new MetricSelector(["vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:lora_requests_info", "vllm:cache_config_info"]);
  sel.select(text);
  const n = 200;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sel.select(text);
  const perPageMs = (performance.now() - t0) / n;
  assert.ok(text.length > 100_000, `page is ${text.length} bytes`);
  assert.ok(perPageMs < 1, `${perPageMs.toFixed(3)} ms per ${text.length}-byte page`);
});
