import { test } from "node:test";
import assert from "node:assert/strict";
import { freshness, kvTerm, loadScore, queueTerm } from "../../sidecar/state/score.ts";

const STALE = 1000;

test("an idle pod with fresh metrics scores 1, a full one near 0", () => {
  assert.equal(loadScore({ waiting: 0, kvUsage: 0, ageMs: 10 }, STALE), 1);
  assert.ok(loadScore({ waiting: 1000, kvUsage: 1, ageMs: 10 }, STALE) < 0.01, "loadScore({ waiting: 1000, kvUsage: 1, ageMs: 10 }, STALE) < 0.01");
});

test("the score falls as the queue grows and as the KV cache fills", () => {
  let prev = 2;
  for (const waiting of [0, 1, 2, 5, 10, 50]) {
    const s = loadScore({ waiting, kvUsage: 0.3, ageMs: 0 }, STALE);
    assert.ok(s < prev, `waiting ${waiting}: ${s} < ${prev}`);
    prev = s;
  }
  prev = 2;
  for (const kv of [0, 0.2, 0.5, 0.8, 0.99]) {
    const s = loadScore({ waiting: 2, kvUsage: kv, ageMs: 0 }, STALE);
    assert.ok(s < prev, `kv ${kv}: ${s} < ${prev}`);
    prev = s;
  }
  // A queue as long as the saturation threshold (5) halves the queue term.
  assert.equal(queueTerm(5), 0.5);
  assert.equal(kvTerm(0.25), 0.75);
});

test("staleness: full weight up to a quarter of --metrics-stale, then linear to 0", () => {
  assert.equal(freshness(0, STALE), 1);
  assert.equal(freshness(250, STALE), 1);
  assert.equal(freshness(625, STALE), 0.5);
  assert.equal(freshness(1000, STALE), 0);
  assert.equal(freshness(5000, STALE), 0);
  const fresh = loadScore({ waiting: 1, kvUsage: 0.2, ageMs: 100 }, STALE);
  const aging = loadScore({ waiting: 1, kvUsage: 0.2, ageMs: 700 }, STALE);
  assert.ok(aging < fresh, "aging < fresh");
  assert.equal(loadScore({ waiting: 0, kvUsage: 0, ageMs: 1000 }, STALE), 0);
});

test("scores stay in [0, 1] for any input and are rounded to 0.001", () => {
  for (const waiting of [-5, 0, 0.5, 3, 1e9, NaN, Infinity]) {
    for (const kvUsage of [-1, 0, 0.123456, 1, 2, NaN]) {
      for (const ageMs of [-10, 0, 300, 999, NaN]) {
        const s = loadScore({ waiting, kvUsage, ageMs }, STALE);
        assert.ok(s >= 0 && s <= 1, `${waiting} ${kvUsage} ${ageMs}: ${s}`);
        assert.equal(Math.round(s * 1000) / 1000, s);
      }
    }
  }
});
