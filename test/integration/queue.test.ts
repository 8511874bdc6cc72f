// Priority queuing through the real module: requests held while the pool is saturated, released
// from the worker's root context highest band first, answered 429 when a band is full or their
// time is up, and forgotten when their client goes away.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateway, DEST, endpoints } from './harness.ts';
import type { EndpointSpec } from '../fuzz/generators.ts';
import type { HttpStream } from '../host/index.ts';

const MODELS = [
  { name: 'critical', criticality: 'Critical', targets: [{ name: '/model/qwen', weight: 100 }] },
  { name: 'standard', criticality: 'Standard', targets: [{ name: '/model/qwen', weight: 100 }] },
  { name: 'batch', criticality: 'Sheddable', targets: [{ name: '/model/qwen', weight: 100 }] },
];

// Two pods, each with `waiting` requests queued: saturated (GIE's detector) from 5 up.
function pods(waiting: number): EndpointSpec[] {
  return endpoints(2).map((e) => ({ ...e, waiting, running: 8, kv_usage: 0.3 }));
}

function push(g: Gateway, waiting: number): void {
  const r = g.pushState(pods(waiting), { models: MODELS });
  assert.equal(r.status, 204, r.kind === 'local' ? r.bodyText : '');
}

function send(g: Gateway, model: string, worker = 0, text = 'hello'): HttpStream {
  const s = g.routing.worker(worker).newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', 'content-type': 'application/json' }, false);
  s.requestBody(JSON.stringify({ model, messages: [{ role: 'user', content: text }] }), true);
  return s;
}

// The reason header of the filter's own answer.
const why = (s: HttpStream) => s.localReply?.headers.find(([k]) => k === 'x-wasm-epp-error')?.[1];
const held = (s: HttpStream) => !s.upstream.endStream && s.localReply === null;
const released = (s: HttpStream) => s.upstream.endStream && s.upstream.header(DEST) !== undefined;

// Lets wake-ups (shared queues) and a tick run.
async function settle(g: Gateway, ms = 10): Promise<void> {
  await g.host.settle();
  g.host.advance(ms);
  await g.host.settle();
}

test('a saturated pool holds a request until a state with room arrives; the line shows the time queued', async () => {
  const g = new Gateway();
  push(g, 10);
  const s = send(g, 'critical');
  assert.ok(held(s), 'held while the pool is saturated');
  assert.equal(g.counter('queue_held_critical'), 1);
  assert.equal(g.host.metric('wasm_epp.queue_size_critical'), 1);
  await settle(g, 50);
  assert.ok(held(s), 'still held: the metrics say saturated');
  g.host.advance(200);
  push(g, 0);
  await settle(g);
  assert.ok(released(s), 'released after the push');
  assert.equal(g.counter('queue_admitted_critical'), 1);
  const line = g.handled().at(-1)!;
  assert.ok(Number(line.queued_ms) >= 250, `queued_ms=${line.queued_ms}`);
  assert.equal(g.host.metric('wasm_epp.queue_size_critical'), 0);
  assert.deepEqual(g.host.traps, []);
});

test('requests that find the pool with room go straight on and say queued_ms=0', () => {
  const g = new Gateway();
  push(g, 0);
  const s = send(g, 'standard');
  assert.ok(released(s));
  assert.equal(g.handled().at(-1)!.queued_ms, '0');
  assert.equal(g.counter('queue_held_standard'), 0);
});

test('Critical is released before Standard, and in-flight credits stop releases from overshooting', async () => {
  // No headroom kept for Critical here: every band is released up to the same limit.
  const g = new Gateway({ workers: 1, config: { queue: { critical_headroom: 0 } } });
  push(g, 10);
  const s1 = send(g, 'standard', 0, 'one');
  const c1 = send(g, 'critical', 0, 'two');
  const s2 = send(g, 'standard', 0, 'three');
  assert.ok(held(s1) && held(c1) && held(s2));
  // Room for about two more requests: 4 waiting on each pod (0.8 of the threshold).
  push(g, 4);
  await settle(g);
  assert.ok(released(c1), 'Critical first');
  assert.ok(released(s1), 'then the oldest Standard');
  assert.ok(held(s2), 'the credits of the two just released close the pool until the next scrape');
  assert.equal(g.handled().length, 2);
  assert.equal(g.handled()[0].criticality, 'Critical');
  g.host.advance(100);
  push(g, 0);
  await settle(g);
  assert.ok(released(s2));
});

test('a request held past queue.ttl_ms gets 429 queue_timeout with the reason in a header', async () => {
  const g = new Gateway({ config: { queue: { ttl_ms: 500 } } });
  push(g, 10);
  const s = send(g, 'standard');
  assert.ok(held(s));
  await settle(g, 400);
  assert.ok(held(s));
  await settle(g, 200);
  assert.equal(s.localReply?.status, 429);
  assert.equal(why(s), 'queue_timeout');
  const body = JSON.parse(Buffer.from(s.localReply!.body).toString());
  assert.equal(body.error.code, 'queue_timeout');
  assert.match(body.error.message, /request timed out in queue/);
  assert.equal(g.counter('queue_expired_standard'), 1);
  assert.equal(g.host.metric('wasm_epp.queue_size_standard'), 0);
});

test('a full band answers 429 queue_full at once; other bands still queue', () => {
  const g = new Gateway({ config: { queue: { max_requests: 1 } } });
  push(g, 10);
  const a = send(g, 'standard');
  const b = send(g, 'standard');
  const c = send(g, 'critical');
  assert.ok(held(a));
  assert.equal(b.localReply?.status, 429);
  assert.equal(why(b), 'queue_full');
  assert.ok(held(c));
  assert.equal(g.counter('queue_rejected_standard'), 1);
  const bytes = new Gateway({ config: { queue: { max_bytes: 1024 } } });
  push(bytes, 10);
  const big = send(bytes, 'standard', 0, 'x'.repeat(2000));
  assert.equal(big.localReply?.status, 429);
  assert.ok(held(send(bytes, 'standard', 0, 'small')));
});

test('Sheddable is shed at once while saturated, or queued with its short TTL', async () => {
  const g = new Gateway();
  push(g, 10);
  const shed = send(g, 'batch');
  assert.equal(shed.localReply?.status, 429);
  assert.equal(why(shed), 'pool_saturated');
  const q = new Gateway({ config: { queue: { sheddable: 'queue', sheddable_ttl_ms: 100, ttl_ms: 10000 } } });
  push(q, 10);
  const s = send(q, 'batch');
  const c = send(q, 'critical');
  assert.ok(held(s) && held(c));
  await settle(q, 150);
  assert.equal(s.localReply?.status, 429);
  assert.equal(why(s), 'queue_timeout');
  assert.ok(held(c), 'Critical keeps its own TTL');
});

test('a client that disconnects while held leaves the queue at once and is counted; nothing is released for it', async () => {
  const g = new Gateway();
  push(g, 10);
  const gone = send(g, 'critical', 0, 'gone');
  const stays = send(g, 'critical', 0, 'stays');
  gone.reset();
  assert.equal(g.counter('queue_cancelled_critical'), 1);
  assert.equal(g.host.metric('wasm_epp.queue_size_critical'), 1);
  push(g, 0);
  await settle(g);
  assert.ok(released(stays));
  assert.equal(g.counter('queue_admitted_critical'), 1, 'only the request still there');
  assert.equal(g.handled().length, 1);
  assert.deepEqual(g.host.traps, []);
});

test('two workers: a Standard request on one waits while a Critical one waits on the other', async () => {
  const g = new Gateway({ workers: 2 });
  push(g, 10);
  const std = send(g, 'standard', 0);
  const crit = send(g, 'critical', 1);
  assert.ok(held(std) && held(crit));
  // Room for one: whichever worker wakes first, the Critical request goes, the Standard one waits.
  push(g, 4.6);
  await settle(g);
  await settle(g);
  assert.ok(released(crit), 'Critical released on worker 1');
  assert.ok(held(std), 'Standard still held on worker 0');
  assert.equal(g.handled()[0].criticality, 'Critical');
  g.host.advance(100);
  push(g, 0);
  await settle(g);
  assert.ok(released(std));
});

test('a new Standard request queues behind a held one even when the metrics show room', async () => {
  const g = new Gateway({ workers: 2 });
  push(g, 10);
  const a = send(g, 'standard', 0, 'a');
  const b = send(g, 'standard', 0, 'b');
  // Room for one: the push wakes worker 0, which releases a; b's turn waits for the next scrape.
  push(g, 4.6);
  await settle(g);
  assert.ok(released(a));
  assert.ok(held(b));
  // The metrics alone would let c through, but b was first (FIFO across workers).
  const c = send(g, 'standard', 1, 'c');
  assert.ok(held(c));
  g.host.advance(100);
  push(g, 0);
  await settle(g);
  await settle(g);
  assert.ok(released(b) && released(c));
  const order = g.handled().map((l) => l.queued_ms);
  assert.equal(order.length, 3);
});

test('with queuing off, a saturated pool forwards Critical requests at once', () => {
  const g = new Gateway({ config: { queue: { enabled: false } } });
  push(g, 10);
  assert.ok(released(send(g, 'critical')));
});

test('a held request for a prefill/decode pool gets its pair, its bootstrap fields and its prefill call when released', async () => {
  const calls: string[] = [];
  const g = new Gateway({ httpCallHandler: (req) => { calls.push(req.bodyText); return { status: 200 }; } });
  const pdPush = (waiting: number) => {
    const eps = [
      ...endpoints(2, 20).map((e, i) => ({ ...e, pod: `prefill-${i}`, role: 'prefill', waiting })),
      ...endpoints(2, 30).map((e, i) => ({ ...e, pod: `decode-${i}`, role: 'decode', waiting })),
    ];
    const doc = {
      version: Math.floor(g.now), generated_at_ms: g.now,
      pools: [{ name: 'default/vllm-qwen-pool', runtime: 'sglang', endpoints: eps, pd: { bootstrap_port: 34000 } }],
      models: MODELS.map((m) => ({ ...m, pool: 'default/vllm-qwen-pool' })),
    };
    const r = g.pushRaw(JSON.stringify(doc));
    assert.equal(r.status, 204, r.kind === 'local' ? r.bodyText : '');
  };
  pdPush(10);
  const s = send(g, 'critical');
  assert.ok(held(s));
  assert.equal(calls.length, 0, 'no prefill call while held');
  g.host.advance(100);
  pdPush(0);
  await settle(g);
  assert.ok(released(s));
  assert.match(s.upstream.header(DEST)!, /^10\.30\./, 'to a decode pod');
  const sent = JSON.parse(s.upstream.bodyText);
  assert.match(sent.bootstrap_host, /^10\.20\./);
  await g.host.settle();
  assert.equal(calls.length, 1);
  assert.equal(calls[0], s.upstream.bodyText, 'the prefill copy is the released body');
  const line = g.handled().at(-1)!;
  assert.match(line.prefill, /^prefill-/);
  assert.ok(Number(line.queued_ms) >= 100);
  assert.deepEqual(g.host.violations, []);
});

test('while Critical requests keep coming, the lower bands leave headroom for them', async () => {
  const g = new Gateway({ config: { queue: { critical_headroom: 0.3, critical_window_ms: 60000 } } });
  push(g, 4); // saturation 0.8: room by the detector
  assert.ok(released(send(g, 'standard', 0, 'before')), 'no Critical seen yet: Standard goes on at 0.8');
  assert.ok(released(send(g, 'critical', 0, 'critical')), 'Critical goes on below the limit');
  g.host.advance(100);
  push(g, 4);
  const std = send(g, 'standard', 0, 'after');
  assert.ok(held(std), 'Standard is held at 0.8 now: it leaves 0.3 of headroom to Critical');
  assert.ok(released(send(g, 'critical', 0, 'critical 2')), 'Critical still goes straight on');
  // A minute without Critical requests: the headroom is given back.
  g.host.advance(61000);
  push(g, 4);
  await settle(g);
  assert.ok(released(std));
});
