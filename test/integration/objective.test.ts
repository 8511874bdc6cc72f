// InferenceObjectives, default targets and fairness through the real module: the objective header
// sets a request's band, a pool's default targets resolve models it has no entry for, the
// gateway's headers never reach the model server (on every path), and held requests of one band
// are released round-robin over their fairness ids.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateway, DEST, POOL, endpoints } from './harness.ts';
import type { EndpointSpec } from '../fuzz/generators.ts';
import type { HttpStream, HttpCallRequest } from '../host/index.ts';

const GATEWAY_HEADERS = [
  'x-llm-d-inference-objective', 'x-gateway-inference-objective',
  'x-llm-d-inference-fairness-id', 'x-gateway-inference-fairness-id',
  'x-llm-d-model-name-rewrite', 'x-gateway-model-name-rewrite',
];
const ALL_SET = Object.fromEntries(GATEWAY_HEADERS.map((h) => [h, 'premium']));

const MODELS = [
  { name: 'critical', pool: POOL, criticality: 'Critical', targets: [{ name: '/model/qwen', weight: 100 }] },
  { name: 'standard', pool: POOL, criticality: 'Standard', targets: [{ name: '/model/qwen', weight: 100 }] },
  { name: 'batch', pool: POOL, criticality: 'Sheddable', targets: [{ name: '/model/qwen', weight: 100 }] },
];
const OBJECTIVES = [
  { name: 'batch-jobs', pool: POOL, priority: -1, criticality: 'Sheddable' },
  { name: 'premium', pool: POOL, priority: 10, criticality: 'Critical' },
  { name: 'elsewhere', pool: 'default/other-pool', priority: 10, criticality: 'Critical' },
  { name: 'plain', pool: POOL, priority: 0, criticality: 'Standard' },
];

function pods(waiting: number): EndpointSpec[] {
  return endpoints(2).map((e) => ({ ...e, waiting, running: 8, kv_usage: 0.3 }));
}

function pushDoc(g: Gateway, waiting: number, pool: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): void {
  const doc = {
    version: Math.floor(g.now) + 1, generated_at_ms: g.now,
    pools: [{ name: POOL, strategy: 'DEFAULT', runtime: 'vllm', endpoints: pods(waiting), ...pool }],
    models: MODELS, objectives: OBJECTIVES, ...extra,
  };
  const r = g.pushRaw(JSON.stringify(doc));
  assert.equal(r.status, 204, r.kind === 'local' ? r.bodyText : '');
}

function send(g: Gateway, model: string, headers: Record<string, string> = {}, worker = 0, text = 'hello'): HttpStream {
  const s = g.routing.worker(worker).newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', 'content-type': 'application/json', ...headers }, false);
  s.requestBody(JSON.stringify({ model, messages: [{ role: 'user', content: text }] }), true);
  return s;
}

const held = (s: HttpStream) => !s.upstream.endStream && s.localReply === null;
const released = (s: HttpStream) => s.upstream.endStream && s.upstream.header(DEST) !== undefined;
const why = (s: HttpStream) => s.localReply?.headers.find(([k]) => k === 'x-wasm-epp-error')?.[1];

function noGatewayHeaders(s: HttpStream, what: string): void {
  for (const h of GATEWAY_HEADERS) assert.equal(s.upstream.header(h), undefined, `${what}: ${h} reached the upstream`);
}

async function settle(g: Gateway, ms = 10): Promise<void> {
  await g.host.settle();
  g.host.advance(ms);
  await g.host.settle();
}

test('an objective of the pool sets the band over the model\'s; the line ends with objective=<name>', () => {
  const g = new Gateway();
  pushDoc(g, 0);
  const up = send(g, 'batch', { 'x-llm-d-inference-objective': 'premium' });
  assert.ok(released(up));
  const down = send(g, 'critical', { 'x-gateway-inference-objective': 'batch-jobs' });
  assert.ok(released(down));
  const [l1, l2] = g.handled();
  assert.equal(l1.criticality, 'Critical');
  assert.equal(l1.objective, 'premium');
  assert.equal(l2.criticality, 'Sheddable');
  assert.equal(l2.objective, 'batch-jobs');
  assert.equal(g.counter('objective_applied'), 2);
  assert.equal(g.counter('objective_unknown'), 0);
  const text = g.host.logs.filter((e) => e.message.startsWith('Request Handled')).map((e) => e.message);
  assert.match(text[0], / state_version=\d+ queued_ms=0 objective=premium$/, 'appended after every existing key');
});

test('x-llm-d-inference-objective wins over x-gateway-inference-objective; an empty one falls back to the alias', () => {
  const g = new Gateway();
  pushDoc(g, 0);
  send(g, 'standard', { 'x-llm-d-inference-objective': 'premium', 'x-gateway-inference-objective': 'batch-jobs' });
  send(g, 'standard', { 'x-llm-d-inference-objective': '', 'x-gateway-inference-objective': 'batch-jobs' });
  const [a, b] = g.handled();
  assert.deepEqual([a.criticality, a.objective], ['Critical', 'premium']);
  assert.deepEqual([b.criticality, b.objective], ['Sheddable', 'batch-jobs']);
});

test('an unknown objective (or one of another pool) changes nothing and is counted; no header counts nothing', () => {
  const g = new Gateway();
  pushDoc(g, 0);
  send(g, 'batch', { 'x-llm-d-inference-objective': 'no-such-objective' });
  send(g, 'batch', { 'x-llm-d-inference-objective': 'elsewhere' });
  send(g, 'critical');
  const lines = g.handled();
  assert.deepEqual(lines.map((l) => l.criticality), ['Sheddable', 'Sheddable', 'Critical']);
  for (const l of lines) assert.equal(l.objective, undefined);
  assert.equal(g.counter('objective_unknown'), 2);
  assert.equal(g.counter('objective_applied'), 0);
  assert.ok(g.host.logs.some((e) => e.levelName === 'warn' && e.message.includes('objective no-such-objective')), 'warned');
});

test('objective_header: false ignores the headers (and still removes them)', () => {
  const g = new Gateway({ config: { objective_header: false } });
  pushDoc(g, 0);
  const s = send(g, 'batch', ALL_SET);
  assert.ok(released(s));
  noGatewayHeaders(s, 'objective_header false');
  const l = g.handled()[0];
  assert.equal(l.criticality, 'Sheddable');
  assert.equal(l.objective, undefined);
  assert.equal(g.counter('objective_applied') + g.counter('objective_unknown'), 0);
});

test('a Sheddable objective is shed while the pool is saturated, a Critical one is not held', () => {
  const g = new Gateway();
  pushDoc(g, 10);
  assert.ok(released(send(g, 'critical')));
  const shed = send(g, 'standard', { 'x-llm-d-inference-objective': 'batch-jobs' });
  assert.equal(shed.localReply?.status, 429);
  assert.equal(why(shed), 'pool_saturated');
  const std = send(g, 'standard');
  assert.ok(held(std), 'Standard is held below Critical');
  assert.ok(released(send(g, 'standard', { 'x-gateway-inference-objective': 'premium' })), 'a Critical objective goes on');
  assert.equal(g.counter('queue_held_standard'), 1);
  assert.equal(g.counter('queue_held_critical'), 0);
});

test('the gateway\'s headers are removed on every path: routed, without a body, held and released', async () => {
  const g = new Gateway({ workers: 1 });
  pushDoc(g, 0);
  const routed = send(g, 'critical', ALL_SET);
  assert.ok(released(routed));
  noGatewayHeaders(routed, 'routed');
  const get = g.routing.worker(0).requestSync({ method: 'GET', path: '/v1/models', headers: ALL_SET });
  assert.equal(get.kind, 'upstream');
  for (const h of GATEWAY_HEADERS) assert.equal(get.header(h), undefined, `GET: ${h}`);
  pushDoc(g, 10);
  assert.ok(released(send(g, 'critical')));
  const s = send(g, 'standard', { ...ALL_SET, 'x-llm-d-inference-objective': 'plain', 'x-keep': 'yes' });
  assert.ok(held(s));
  g.host.advance(100);
  pushDoc(g, 0);
  await settle(g);
  assert.ok(released(s));
  noGatewayHeaders(s, 'held');
  assert.equal(s.upstream.header('x-keep'), 'yes', 'other headers pass');
  assert.equal(g.handled().at(-1)!.objective, 'plain');
  assert.equal(JSON.parse(s.upstream.bodyText).model, '/model/qwen', 'the rewrite headers are not honoured: the target is the model\'s');
});

test('the gateway\'s headers are removed on the prefill/decode path, and the prefill call carries none', async () => {
  const calls: HttpCallRequest[] = [];
  const g = new Gateway({ httpCallHandler: (req) => { calls.push(req); return { status: 200, body: '{}' }; } });
  const eps = [
    ...endpoints(2, 20).map((e, i) => ({ ...e, pod: `prefill-${i}`, role: 'prefill' })),
    ...endpoints(2, 30).map((e, i) => ({ ...e, pod: `decode-${i}`, role: 'decode' })),
  ];
  const doc = {
    version: 1, generated_at_ms: g.now,
    pools: [{ name: POOL, runtime: 'sglang', endpoints: eps, pd: { bootstrap_port: 34000 } }],
    models: MODELS, objectives: OBJECTIVES,
  };
  assert.equal(g.pushRaw(JSON.stringify(doc)).status, 204);
  const s = send(g, 'batch', { ...ALL_SET, 'x-llm-d-inference-objective': 'premium' });
  assert.ok(released(s));
  assert.match(s.upstream.header(DEST)!, /^10\.30\./);
  noGatewayHeaders(s, 'decode');
  await g.host.settle();
  assert.equal(calls.length, 1);
  for (const h of GATEWAY_HEADERS) assert.equal(calls[0].headers.find(([k]) => k === h), undefined, `prefill call: ${h}`);
  const line = g.handled().at(-1)!;
  assert.equal(line.criticality, 'Critical');
  assert.equal(line.objective, 'premium');
  assert.match(line.prefill, /^prefill-/);
});

test('default_targets: a model the pool has no entry for goes to a default target, known and Standard', () => {
  const g = new Gateway({ config: { unknown_model: 'reject' } });
  pushDoc(g, 0, { default_targets: [{ name: 'base-model' }] });
  const s = send(g, 'anything-else', { 'x-gateway-model-name-rewrite': 'evil' });
  assert.ok(released(s), 'known through the defaults: not rejected');
  assert.equal(JSON.parse(s.upstream.bodyText).model, 'base-model');
  const l = g.handled()[0];
  assert.deepEqual([l.model, l.target, l.criticality, l.unknown_model], ['anything-else', 'base-model', 'Standard', undefined]);
  assert.equal(g.counter('model_rewritten'), 1);
  assert.equal(g.counter('model_not_found'), 0);
  const own = send(g, 'standard');
  assert.equal(JSON.parse(own.upstream.bodyText).model, '/model/qwen', 'a model\'s own entry comes first');
  // Without defaults, the same model is unknown (and rejected here).
  const plain = new Gateway({ config: { unknown_model: 'reject' } });
  pushDoc(plain, 0);
  assert.equal(send(plain, 'anything-else').localReply?.status, 404);
});

test('a document with bad objectives or default targets is refused whole, naming the path', () => {
  const g = new Gateway();
  const bad = (pool: Record<string, unknown>, extra: Record<string, unknown>) => {
    const doc = { version: 1, generated_at_ms: g.now, pools: [{ name: POOL, endpoints: pods(0), ...pool }], models: [], ...extra };
    return g.pushRaw(JSON.stringify(doc));
  };
  const r1 = bad({}, { objectives: [{ name: 'o', pool: POOL, priority: 1.5 }] });
  assert.equal(r1.status, 400);
  assert.match(r1.kind === 'local' ? r1.bodyText : '', /objectives\[0\]\.priority: must be an integer/);
  const r2 = bad({ default_targets: [] }, {});
  assert.equal(r2.status, 400);
  assert.match(r2.kind === 'local' ? r2.bodyText : '', /pools\[0\]\.default_targets: must have 1 to 256 entries/);
});

// Saturated with Critical traffic present: Standard requests are held; a push with room releases
// them all in one pass, and the Request Handled lines show the release order.
async function releaseOrder(g: Gateway, sends: Array<[string, string | null]>): Promise<string[]> {
  pushDoc(g, 10, { default_targets: [{ name: '/model/qwen' }] });
  assert.ok(released(send(g, 'critical')));
  const streams = sends.map(([model, id]) => send(g, model, id === null ? {} : { 'x-llm-d-inference-fairness-id': id }));
  for (const s of streams) assert.ok(held(s));
  g.host.advance(100);
  pushDoc(g, 0, { default_targets: [{ name: '/model/qwen' }] });
  await settle(g);
  for (const s of streams) assert.ok(released(s));
  for (const s of streams) noGatewayHeaders(s, 'released');
  return g.handled().slice(1).map((l) => l.model);
}

test('held requests of one band are released round-robin over fairness ids, first in first out within each', async () => {
  const g = new Gateway({ workers: 1, config: { queue: { headroom: 0 } } });
  const order = await releaseOrder(g, [['a1', 'tenant-a'], ['a2', 'tenant-a'], ['a3', 'tenant-a'], ['b1', 'tenant-b'], ['d1', null], ['b2', 'tenant-b']]);
  assert.deepEqual(order, ['a1', 'b1', 'd1', 'a2', 'b2', 'a3']);
});

test('the alias fairness header counts when x-llm-d-inference-fairness-id is absent; an empty id is default-flow', async () => {
  const g = new Gateway({ workers: 1, config: { queue: { headroom: 0 } } });
  pushDoc(g, 10, { default_targets: [{ name: '/model/qwen' }] });
  assert.ok(released(send(g, 'critical')));
  const a1 = send(g, 'a1', { 'x-llm-d-inference-fairness-id': 'tenant-a', 'x-gateway-inference-fairness-id': 'tenant-b' });
  const a2 = send(g, 'a2', { 'x-gateway-inference-fairness-id': 'tenant-a' });
  const d1 = send(g, 'd1', { 'x-llm-d-inference-fairness-id': '' });
  const d2 = send(g, 'd2');
  for (const s of [a1, a2, d1, d2]) assert.ok(held(s));
  g.host.advance(100);
  pushDoc(g, 0, { default_targets: [{ name: '/model/qwen' }] });
  await settle(g);
  assert.deepEqual(g.handled().slice(1).map((l) => l.model), ['a1', 'd1', 'a2', 'd2']);
});

test('queue.fairness "fcfs" releases a band oldest first across fairness ids', async () => {
  const g = new Gateway({ workers: 1, config: { queue: { headroom: 0, fairness: 'fcfs' } } });
  const order = await releaseOrder(g, [['a1', 'tenant-a'], ['a2', 'tenant-a'], ['a3', 'tenant-a'], ['b1', 'tenant-b'], ['d1', null], ['b2', 'tenant-b']]);
  assert.deepEqual(order, ['a1', 'a2', 'a3', 'b1', 'd1', 'b2']);
});

test('without fairness ids, one band is first in first out as before', async () => {
  const g = new Gateway({ workers: 1, config: { queue: { headroom: 0 } } });
  const order = await releaseOrder(g, [['s1', null], ['s2', null], ['s3', null], ['s4', null]]);
  assert.deepEqual(order, ['s1', 's2', 's3', 's4']);
});
