import { test } from "node:test";
import assert from "node:assert/strict";
import { verdict, verdicts } from "../../scripts/bench/verdict.ts";

const ALL = { "round-robin": 5000, random: 6000, "least-request": 1000, gie: 800, "sglang-cache-aware": 900, precise: 700 };

test("wasm-epp passes at or below every peer, with ties within 3%, and fails above", () => {
  assert.equal(verdict({ ...ALL, "wasm-epp": 790 }).beats_peers.pass, true);
  const tie = verdict({ ...ALL, "wasm-epp": 823 }).beats_peers;
  assert.equal(tie.pass, true);
  assert.equal(tie.best_peer, "gie");
  assert.equal(tie.ratio, 1.0288);
  assert.equal(verdict({ ...ALL, "wasm-epp": 825 }).beats_peers.pass, false);
  // precise is not a peer: beating it is not required here.
  assert.equal(verdict({ ...ALL, precise: 100, "wasm-epp": 800 }).beats_peers.pass, true);
});

test("wasm-epp within 1.1x of precise; wasm-epp-default at or below least-request", () => {
  const v = verdict({ ...ALL, "wasm-epp": 770, "wasm-epp-default": 1030 });
  assert.deepEqual(v.near_precise, { pass: true, ratio: 1.1 });
  assert.deepEqual(v.default_vs_least_request, { pass: true, ratio: 1.03 });
  const w = verdict({ ...ALL, "wasm-epp": 771, "wasm-epp-default": 1031 });
  assert.equal(w.near_precise.pass, false);
  assert.equal(w.default_vs_least_request.pass, false);
});

test("checks whose strategies did not run are n/a (null), per workload", () => {
  const v = verdicts([
    { workload: "a", strategy: "round-robin", ttft_p90_ms: 100 },
    { workload: "a", strategy: "wasm-epp", ttft_p90_ms: 90 },
    { workload: "b", strategy: "least-request", ttft_p90_ms: 100 },
  ]);
  assert.equal(v.a.beats_peers.pass, true);
  assert.equal(v.a.near_precise.pass, null);
  assert.equal(v.a.default_vs_least_request.pass, null);
  assert.equal(v.b.beats_peers.pass, null);
  assert.equal(v.b.beats_peers.best_peer, "least-request");
  assert.deepEqual(Object.keys(v), ["a", "b"]);
});

test("on a P/D workload the peers are the P/D strategies, and least-request is pd-least-request", () => {
  const v = verdict({ "sglang-pd-random": 3000, "sglang-pd-cache-aware": 2000, "pd-least-request": 1300, "pd-round-robin": 1500, "wasm-epp": 1200, "wasm-epp-default": 1400 });
  assert.equal(v.beats_peers.best_peer, "pd-least-request");
  assert.equal(v.beats_peers.pass, true);
  assert.equal(v.default_vs_least_request.pass, false);
  assert.equal(v.near_precise.pass, null);
});
