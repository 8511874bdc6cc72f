// Prefill/decode pools through the real module: pairing, the bootstrap fields, the prefill call
// and what happens when it fails.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateway, DEST, POOL, endpoints, errorCode } from './harness.ts';
import type { HttpCallReply, HttpCallRequest } from '../host/index.ts';

const MODEL = '/models/Qwen3-32B';

function pdState(g: Gateway, opts: { prefill?: number; decode?: number; prefillStrategy?: string; decodeStrategy?: string; tweak?: (eps: Record<string, unknown>[]) => void } = {}) {
  const p = endpoints(opts.prefill ?? 2, 20).map((e, i) => ({ ...e, pod: `prefill-${i}`, role: 'prefill' }));
  const d = endpoints(opts.decode ?? 3, 30).map((e, i) => ({ ...e, pod: `decode-${i}`, role: 'decode' }));
  const eps: Record<string, unknown>[] = [...p, ...d];
  opts.tweak?.(eps);
  const doc = {
    version: 1, generated_at_ms: g.now,
    pools: [{
      name: POOL, strategy: 'DEFAULT', runtime: 'sglang', endpoints: eps,
      pd: { role_label: 'rolebasedgroup.workloads.x-k8s.io/role', bootstrap_port: 34000,
        prefill: { strategy: opts.prefillStrategy ?? 'DEFAULT' }, decode: { strategy: opts.decodeStrategy ?? 'DEFAULT' } },
    }],
    models: [{ name: MODEL, pool: POOL, criticality: 'Critical', targets: [{ name: MODEL, weight: 100 }] }],
  };
  const r = g.pushRaw(JSON.stringify(doc));
  assert.ok(r.status === 200 || r.status === 204, r.kind === 'local' ? r.bodyText : '');
}

const header = (req: HttpCallRequest, name: string) => req.headers.find(([k]) => k === name)?.[1];

test('a P/D request goes to a decode pod with the bootstrap fields, and its prefill copy to a prefill pod with the same room', async () => {
  const calls: HttpCallRequest[] = [];
  const g = new Gateway({ httpCallHandler: (req) => { calls.push(req); return { status: 200, body: '{}' }; } });
  pdState(g);
  const r = await g.routing.worker(0).request({
    method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hello, this is a test' }], max_tokens: 50 }),
  });
  assert.equal(r.kind, 'upstream');
  if (r.kind !== 'upstream') return;
  const decodeAt = r.header(DEST)!;
  assert.match(decodeAt, /^10\.30\.0\.\d:8000$/, 'the request itself goes to a decode pod');
  const sent = JSON.parse(r.bodyText);
  assert.match(sent.bootstrap_host, /^10\.20\.0\.\d$/, 'bootstrap_host is the prefill pod IP');
  assert.equal(sent.bootstrap_port, 34000);
  assert.equal(typeof sent.bootstrap_room, 'number');
  assert.match(sent.rid, /^[0-9a-f]{32}$/);
  assert.equal(sent.model, MODEL);
  assert.equal(r.header('content-length'), String(Buffer.byteLength(r.bodyText)));
  // The room is an integer literal below 2^63, written exactly (not through a double).
  const roomText = /"bootstrap_room":(\d+)/.exec(r.bodyText)![1];
  assert.ok(BigInt(roomText) < 2n ** 63n);

  assert.equal(calls.length, 1, 'one prefill call');
  const c = calls[0];
  assert.equal(c.cluster, 'wasm_epp_original_dst');
  assert.equal(c.method, 'POST');
  assert.equal(c.path, '/v1/chat/completions');
  assert.equal(header(c, DEST), `${sent.bootstrap_host}:8000`, 'the call is routed to the prefill pod named in bootstrap_host');
  assert.equal(c.bodyText, r.bodyText, 'prefill and decode get the same body');
  assert.equal(c.timeoutMs, 300000);

  const line = g.handled().at(-1)!;
  assert.match(line.pod, /^decode-\d$/);
  assert.match(line.prefill, /^prefill-\d$/);
  assert.equal(line.room, roomText);
  assert.equal(g.counter('pd_requests_routed'), 1);
  await g.host.settle();
  assert.equal(g.counter('pd_prefill_ok'), 1);
});

test('a P/D request carries no client-asked retries to the router', () => {
  const g = new Gateway({ httpCallHandler: () => ({ status: 200 }) });
  pdState(g);
  const r = g.chat({ model: MODEL, messages: [] }, { headers: { 'x-envoy-retry-on': '5xx', 'x-envoy-max-retries': '3', 'x-envoy-retry-grpc-on': 'cancelled' } });
  assert.equal(r.kind, 'upstream');
  if (r.kind !== 'upstream') return;
  assert.equal(r.header('x-envoy-retry-on'), undefined);
  assert.equal(r.header('x-envoy-max-retries'), undefined);
  assert.equal(r.header('x-envoy-retry-grpc-on'), undefined);
});

test('client-sent bootstrap fields never reach a pod, escaped keys included', async () => {
  const calls: HttpCallRequest[] = [];
  const g = new Gateway({ httpCallHandler: (req) => { calls.push(req); return { status: 200 }; } });
  pdState(g);
  const body = `{"bootstrap_host":"6.6.6.6","model":"${MODEL}","bootstrap_port":1,"messages":[{"role":"user","content":"x"}],"bootstrap\\u005froom":7,"bootstrap_room":8}`;
  const r = g.chat(body);
  assert.equal(r.kind, 'upstream');
  if (r.kind !== 'upstream') return;
  assert.doesNotMatch(r.bodyText, /6\.6\.6\.6|"bootstrap_port":1,|bootstrap\\u005froom|"bootstrap_room":[78][,}]/);
  const sent = JSON.parse(r.bodyText);
  assert.match(sent.bootstrap_host, /^10\.20\./);
  assert.equal((r.bodyText.match(/bootstrap_room/g) ?? []).length, 1);
  assert.equal(g.counter('pd_client_bootstrap_removed'), 4);
  await g.host.settle();
  assert.equal(calls[0].bodyText, r.bodyText);
});

test('rooms and rids differ on every request, across workers', async () => {
  const g = new Gateway({ workers: 2, httpCallHandler: () => ({ status: 200 }) });
  pdState(g);
  const rooms = new Set<string>();
  const rids = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const r = g.chat({ model: MODEL, messages: [{ role: 'user', content: `q${i}` }] }, {}, i % 2);
    assert.equal(r.kind, 'upstream');
    if (r.kind !== 'upstream') continue;
    rooms.add(/"bootstrap_room":(\d+)/.exec(r.bodyText)![1]);
    rids.add(JSON.parse(r.bodyText).rid);
  }
  assert.equal(rooms.size, 40);
  assert.equal(rids.size, 40);
  await g.host.settle();
});

test("a client's string rid is kept and used; batches get no scalar rid", async () => {
  const g = new Gateway({ httpCallHandler: () => ({ status: 200 }) });
  pdState(g);
  const a = g.chat({ model: MODEL, rid: 'my-request', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(a.kind === 'upstream' && JSON.parse(a.bodyText).rid, 'my-request');
  const b = g.routing.worker(0).requestSync({ method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: ['a', 'b'] }) });
  assert.equal(b.kind === 'upstream' && JSON.parse(b.bodyText).rid, undefined);
  const c = g.chat({ model: MODEL, n: 2, messages: [{ role: 'user', content: 'x' }] });
  assert.equal(c.kind === 'upstream' && JSON.parse(c.bodyText).rid, undefined);
  const d = g.routing.worker(0).requestSync({ method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: [1, 2, 3] }) });
  assert.match(d.kind === 'upstream' ? JSON.parse(d.bodyText).rid : '', /^[0-9a-f]{32}$/, 'a token-id prompt is one prompt');
  await g.host.settle();
});

test('no ready prefill pod or no ready decode pod: 503 naming the role', () => {
  const g = new Gateway({ httpCallHandler: () => ({ status: 200 }) });
  pdState(g, { tweak: (eps) => eps.forEach((e) => { if (e.role === 'prefill') e.ready = false; }) });
  const r = g.chat({ model: MODEL, messages: [] });
  assert.equal(r.kind, 'local');
  assert.equal(r.status, 503);
  assert.match(r.bodyText, /no ready prefill endpoint/);
  assert.equal(g.host.httpCalls.made.length, 0);
  pdState(g, { tweak: (eps) => eps.forEach((e) => { if (e.role === 'decode') e.ready = false; }) });
  const s = g.chat({ model: MODEL, messages: [] });
  assert.equal(s.status, 503);
  assert.match(s.kind === 'local' ? s.bodyText : '', /no ready decode endpoint/);
});

test('endpoints without a role are never picked in a P/D pool; GET requests go to decode pods', () => {
  const g = new Gateway({ httpCallHandler: () => ({ status: 200 }) });
  pdState(g, { tweak: (eps) => eps.push({ ...endpoints(1, 40)[0], pod: 'norole', waiting: 0, running: 0 }) });
  for (let i = 0; i < 20; i++) {
    const r = g.chat({ model: MODEL, messages: [{ role: 'user', content: `${i}` }] });
    assert.match(r.kind === 'upstream' ? r.header(DEST)! : '', /^10\.30\./);
  }
  for (let i = 0; i < 10; i++) {
    const r = g.routing.worker(0).requestSync({ method: 'GET', path: '/v1/models' });
    assert.match(r.kind === 'upstream' ? r.header(DEST)! : '', /^10\.30\./);
  }
  assert.ok(g.host.httpCalls.made.every((c) => header(c, DEST)!.startsWith('10.20.')));
});

test('the prefill call is refused by the proxy (unknown cluster): 503, nothing sent to decode', () => {
  const g = new Gateway({ config: { pd: { cluster: 'no_such_cluster' } } });
  g.host.options.clusters = ['wasm_epp_original_dst'];
  pdState(g);
  const r = g.chat({ model: MODEL, messages: [] });
  assert.equal(r.kind, 'local');
  assert.equal(r.status, 503);
  assert.equal(errorCode(r), 'prefill_dispatch_failed');
  assert.equal(g.counter('pd_prefill_dispatch_failed'), 1);
});

// A request held open at the decode pod while its prefill answers `reply`.
async function failingPrefill(reply: HttpCallReply | Error, started = false) {
  const calls: HttpCallRequest[] = [];
  let answer!: (r: HttpCallReply | Error) => void;
  const g = new Gateway({
    httpCallHandler: (req) => {
      calls.push(req);
      if (req.path === '/abort_request') return { status: 200, body: '{}' };
      return new Promise<HttpCallReply>((resolve, reject) => { answer = (r) => (r instanceof Error ? reject(r) : resolve(r)); });
    },
  });
  pdState(g);
  const s = g.routing.worker(0).newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', 'content-type': 'application/json' }, false);
  s.requestBody(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hello' }], stream: true }), true);
  assert.ok(s.upstream.endStream, 'the request went on to the decode pod');
  const sent = JSON.parse(s.upstream.bodyText);
  if (started) s.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
  await new Promise((r) => setImmediate(r));
  g.host.drain();
  answer(reply);
  await g.host.settle();
  g.host.drain();
  await g.host.settle();
  return { g, s, sent, calls };
}

test('a prefill reset aborts the decode request by rid and answers the client 502 prefill_failed; the pod is avoided next', async () => {
  const { g, s, sent, calls } = await failingPrefill(new Error('connection reset'));
  const abort = calls.find((c) => c.path === '/abort_request');
  assert.ok(abort, 'the decode side was aborted');
  assert.equal(header(abort!, DEST), s.upstream.header(DEST), 'on the decode pod');
  assert.deepEqual(JSON.parse(abort!.bodyText), { rid: sent.rid });
  assert.ok(s.localReply, 'the client got an answer from the gateway');
  assert.equal(s.localReply!.status, 502);
  assert.equal(JSON.parse(Buffer.from(s.localReply!.body).toString()).error.code, 'prefill_failed');
  assert.equal(g.counter('pd_prefill_failed'), 1);
  assert.equal(g.counter('pd_decode_abort_sent'), 1);
  assert.ok(g.host.logs.some((e) => e.levelName === 'warn' && /prefill failed on pod prefill-\d \(connection reset\)/.test(e.message)));
  // The failed prefill pod is passed over while the other is ready.
  const failed = sent.bootstrap_host;
  for (let i = 0; i < 10; i++) {
    const r = g.chat({ model: MODEL, messages: [{ role: 'user', content: `${i}` }] });
    assert.notEqual(r.kind === 'upstream' ? JSON.parse(r.bodyText).bootstrap_host : failed, failed);
  }
});

test('a prefill 5xx after the decode stream started: abort only, the stream is left to the decode pod', async () => {
  const { g, s, calls } = await failingPrefill({ status: 503, body: 'overloaded' }, true);
  assert.ok(calls.some((c) => c.path === '/abort_request'));
  assert.equal(s.localReply, null);
  assert.equal(g.counter('pd_client_answered'), 0);
});

test("a prefill 4xx is passed to the client as the prefill's answer", async () => {
  const err = JSON.stringify({ object: 'error', message: 'bad request', type: 'BadRequestError', code: 400 });
  const { s } = await failingPrefill({ status: 400, headers: { 'content-type': 'application/json' }, body: err });
  assert.equal(s.localReply!.status, 400);
  assert.equal(Buffer.from(s.localReply!.body).toString(), err);
});

test('a prefill timeout answers 504 prefill_timeout', async () => {
  const { s, g } = await failingPrefill({ status: 504, body: 'upstream request timeout' });
  assert.equal(s.localReply!.status, 504);
  assert.equal(errorCode({ kind: 'local', bodyText: Buffer.from(s.localReply!.body).toString() } as never), 'prefill_timeout');
  assert.equal(g.counter('pd_prefill_timeout'), 1);
});

test('the prefill call outlives a client that went away; its answer then only counts', async () => {
  let answer!: (r: HttpCallReply) => void;
  const g = new Gateway({ httpCallHandler: (req) => (req.path === '/abort_request' ? { status: 200 } : new Promise((r) => { answer = r; })) });
  pdState(g);
  const s = g.routing.worker(0).newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', 'content-type': 'application/json' }, false);
  s.requestBody(JSON.stringify({ model: MODEL, messages: [] }), true);
  await new Promise((r) => setImmediate(r));
  g.host.drain();
  s.reset();
  answer({ status: 500 });
  await g.host.settle();
  g.host.drain();
  await g.host.settle();
  assert.equal(g.counter('pd_prefill_failed'), 1);
  assert.equal(g.counter('pd_client_answered'), 0);
  assert.deepEqual(g.host.traps, []);
});
