// Priority queuing through the real module: requests below the highest band present held while
// the pool is saturated, released from the worker's root context highest band first, answered 429
// when a band is full or their time is up, and forgotten when their client goes away.

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

// Critical traffic on these workers: the bands below it are the ones held.
function critical(g: Gateway, ...workers: number[]): void {
  for (const w of workers.length ? workers : [0]) assert.ok(released(send(g, 'critical', w, 'critical')), 'Critical is never held');
}

test('a saturated pool holds a Standard request while Critical traffic is present, until a state with room arrives', async () => {
  const g = new Gateway();
  push(g, 10);
  critical(g);
  const s = send(g, 'standard');
  assert.ok(held(s), 'held while the pool is saturated');
  assert.equal(g.counter('queue_held_standard'), 1);
  assert.equal(g.host.metric('wasm_epp.queue_size_standard'), 1);
  await settle(g, 50);
  assert.ok(held(s), 'still held: the metrics say saturated');
  g.host.advance(200);
  push(g, 0);
  await settle(g);
  assert.ok(released(s), 'released after the push');
  assert.equal(g.counter('queue_admitted_standard'), 1);
  const line = g.handled().at(-1)!;
  assert.equal(line.criticality, 'Standard');
  assert.ok(Number(line.queued_ms) >= 250, `queued_ms=${line.queued_ms}`);
  assert.equal(g.host.metric('wasm_epp.queue_size_standard'), 0);
  assert.deepEqual(g.host.traps, []);
  assert.deepEqual(g.host.violations, []);
});

test('the highest band present is never held: one band alone goes on as without queuing', () => {
  const g = new Gateway();
  push(g, 10);
  assert.ok(released(send(g, 'standard')), 'Standard alone is the top band');
  assert.ok(released(send(g, 'critical')));
  assert.ok(held(send(g, 'standard')), 'Standard is held once Critical is present');
  assert.equal(g.handled()[0].queued_ms, '0');
});

test('bands below the top are released highest first, and in-flight credits stop releases from overshooting', async () => {
  const g = new Gateway({ workers: 1, config: { queue: { headroom: 0, sheddable: 'queue' } } });
  push(g, 10);
  critical(g);
  const b1 = send(g, 'batch', 0, 'one');
  const s1 = send(g, 'standard', 0, 'two');
  const s2 = send(g, 'standard', 0, 'three');
  assert.ok(held(b1) && held(s1) && held(s2));
  // Room for about two more requests: 4 waiting on each pod (0.8 of the threshold), in metrics
  // taken after the Critical request was sent.
  g.host.advance(100);
  push(g, 4);
  await settle(g);
  assert.ok(released(s1) && released(s2), 'Standard first, oldest first');
  assert.ok(held(b1), 'the credits of the two just released close the pool until the next scrape');
  g.host.advance(100);
  push(g, 0);
  await settle(g);
  assert.ok(released(b1));
  assert.deepEqual(g.handled().slice(1).map((l) => l.criticality), ['Standard', 'Standard', 'Sheddable']);
});

test('a request held past queue.ttl_ms gets 429 queue_timeout with the reason in a header', async () => {
  const g = new Gateway({ config: { queue: { ttl_ms: 500 } } });
  push(g, 10);
  critical(g);
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
  const g = new Gateway({ config: { queue: { max_requests: 1, sheddable: 'queue' } } });
  push(g, 10);
  critical(g);
  const a = send(g, 'standard');
  const b = send(g, 'standard');
  const c = send(g, 'batch');
  assert.ok(held(a));
  assert.equal(b.localReply?.status, 429);
  assert.equal(why(b), 'queue_full');
  assert.ok(held(c));
  assert.equal(g.counter('queue_rejected_standard'), 1);
  const bytes = new Gateway({ config: { queue: { max_bytes: 1024 } } });
  push(bytes, 10);
  critical(bytes);
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
  critical(q);
  const s = send(q, 'batch');
  const st = send(q, 'standard');
  assert.ok(held(s) && held(st));
  await settle(q, 150);
  assert.equal(s.localReply?.status, 429);
  assert.equal(why(s), 'queue_timeout');
  assert.ok(held(st), 'Standard keeps its own TTL');
});

test('a client that disconnects while held leaves the queue at once and is counted; nothing is released for it', async () => {
  const g = new Gateway();
  push(g, 10);
  critical(g);
  const gone = send(g, 'standard', 0, 'gone');
  const stays = send(g, 'standard', 0, 'stays');
  gone.reset();
  assert.equal(g.counter('queue_cancelled_standard'), 1);
  assert.equal(g.host.metric('wasm_epp.queue_size_standard'), 1);
  push(g, 0);
  await settle(g);
  assert.ok(released(stays));
  assert.equal(g.counter('queue_admitted_standard'), 1, 'only the request still there');
  assert.equal(g.handled().length, 2);
  assert.deepEqual(g.host.traps, []);
  assert.deepEqual(g.host.violations, []);
});

test('two workers: a Sheddable request on one waits while a Standard one waits on the other', async () => {
  const g = new Gateway({ workers: 2, config: { queue: { headroom: 0, sheddable: 'queue' } } });
  push(g, 10);
  critical(g, 0, 1);
  const low = send(g, 'batch', 0);
  const std = send(g, 'standard', 1);
  assert.ok(held(low) && held(std));
  // Room for one: whichever worker wakes first, the Standard request goes, the Sheddable one waits.
  g.host.advance(100);
  push(g, 4.6);
  await settle(g);
  await settle(g);
  assert.ok(released(std), 'Standard released on worker 1');
  assert.ok(held(low), 'Sheddable still held on worker 0');
  g.host.advance(100);
  push(g, 0);
  await settle(g);
  assert.ok(released(low));
});

test('a new Standard request queues behind a held one even when the metrics show room', async () => {
  const g = new Gateway({ workers: 2, config: { queue: { headroom: 0 } } });
  push(g, 10);
  critical(g, 0, 1);
  const a = send(g, 'standard', 0, 'a');
  const b = send(g, 'standard', 0, 'b');
  // Room for one: the push wakes worker 0, which releases a; b's turn waits for the next scrape.
  g.host.advance(100);
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
});

test('with queuing off, a saturated pool forwards every band at once', () => {
  const g = new Gateway({ config: { queue: { enabled: false } } });
  push(g, 10);
  assert.ok(released(send(g, 'critical')));
  assert.ok(released(send(g, 'standard')));
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
  critical(g);
  await g.host.settle();
  const before = calls.length;
  const s = send(g, 'standard');
  assert.ok(held(s));
  assert.equal(calls.length, before, 'no prefill call while held');
  g.host.advance(100);
  pdPush(0);
  await settle(g);
  assert.ok(released(s));
  assert.match(s.upstream.header(DEST)!, /^10\.30\./, 'to a decode pod');
  const sent = JSON.parse(s.upstream.bodyText);
  assert.match(sent.bootstrap_host, /^10\.20\./);
  await g.host.settle();
  assert.equal(calls.length, before + 1);
  assert.equal(calls.at(-1), s.upstream.bodyText, 'the prefill copy is the released body');
  const line = g.handled().at(-1)!;
  assert.match(line.prefill, /^prefill-/);
  assert.ok(Number(line.queued_ms) >= 100);
  assert.deepEqual(g.host.violations, []);
});

test('the lower bands leave headroom for the top band, and get it back when it is gone', async () => {
  const g = new Gateway({ config: { queue: { headroom: 0.3, window_ms: 60000 } } });
  push(g, 4); // saturation 0.8: room by the detector
  critical(g);
  const std = send(g, 'standard', 0, 'after');
  assert.ok(held(std), 'Standard is held at 0.8: it leaves 0.3 of headroom to Critical');
  assert.ok(released(send(g, 'critical', 0, 'critical 2')), 'Critical goes straight on');
  // A minute without Critical requests: Standard is the top band, and goes on.
  g.host.advance(61000);
  push(g, 4);
  await settle(g);
  assert.ok(released(std));
  assert.ok(released(send(g, 'standard', 0, 'later')));
});

test('a Sheddable request never overtakes held ones: with Standard waiting it is shed', () => {
  const g = new Gateway();
  push(g, 10);
  critical(g);
  const std = send(g, 'standard');
  assert.ok(held(std));
  g.host.advance(100);
  push(g, 4); // 0.8: below the limit, but above it less the headroom, and Standard waits
  const shed = send(g, 'batch');
  assert.equal(shed.localReply?.status, 429);
  assert.equal(why(shed), 'pool_saturated');
});
