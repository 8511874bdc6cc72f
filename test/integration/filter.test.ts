// The compiled filter under the proxy-wasm host: push, routing, affinity across workers, every
// error answer, and the destination header a client must never choose.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateway, endpoints, errorCode, DEST, POOL, ROUND1, ROUND2, TOKEN, wasm } from './harness.ts';
import { ProxyWasmHost, WasmLoadError } from '../host/index.ts';

const CHAT = { model: '/model/qwen', max_completion_tokens: 100, temperature: 0, messages: [{ role: 'user', content: 'Write as if you were a critic: San Francisco' }] };

test('the module loads with the routing and push configurations on two workers', () => {
  const g = new Gateway();
  assert.equal(g.routing.workers.length, 2);
  assert.deepEqual(g.host.traps, []);
  assert.ok(g.host.logs.some((e) => e.message.includes('wasm-epp: configured push endpoint')));
});

test('an invalid configuration is refused with a line naming the key', () => {
  const host = new ProxyWasmHost();
  assert.throws(
    () => host.loadPlugin({ wasm: wasm(), rootId: 'wasm-epp', vmId: 'v', configuration: '{"saturation":{"kv_threshold":3}}' }),
    (e: unknown) => e instanceof WasmLoadError && /saturation\.kv_threshold: must be between 0 and 1/.test(host.logs.map((l) => l.message).join('\n')),
  );
  assert.throws(() => host.loadPlugin({ wasm: wasm(), rootId: 'wasm-epp', vmId: 'v2', configuration: '{not json' }), WasmLoadError);
  // accept_push without a token is a configuration error, not an open door.
  assert.throws(() => host.loadPlugin({ wasm: wasm(), rootId: 'wasm-epp', vmId: 'v3', configuration: '{"accept_push":true}' }), WasmLoadError);
  assert.ok(host.logs.some((e) => e.message.includes('accept_push needs a push token')));
  // A root id nobody registered fails configuration with a clear line.
  assert.throws(() => host.loadPlugin({ wasm: wasm(), rootId: 'other', vmId: 'v4', configuration: '{}' }), WasmLoadError);
  assert.ok(host.logs.some((e) => e.message.includes("no root context is registered for root_id 'other'")));
});

test('before any push, requests get 503 no_routing_state', () => {
  const g = new Gateway();
  const r = g.chat(CHAT);
  assert.equal(r.kind, 'local');
  assert.equal(r.status, 503);
  assert.equal(errorCode(r), 'no_routing_state');
  assert.equal(g.counter('no_routing_state'), 1);
});

test('a pushed state is visible to every worker and requests are routed with the header set', () => {
  const g = new Gateway({ workers: 3 });
  const pushed = g.pushState(endpoints(3), {}, 2);
  assert.equal(pushed.status, 204);
  assert.equal(pushed.header('x-wasm-epp-state-version'), '1');
  for (let w = 0; w < 3; w++) {
    const r = g.chat(CHAT, {}, w);
    assert.equal(r.kind, 'upstream', `worker ${w}`);
    assert.match(r.header(DEST) ?? '', /^10\.10\.0\.[123]:8000$/);
  }
  assert.equal(g.counter('requests_routed'), 3);
  const lines = g.handled();
  assert.equal(lines.length, 3);
  for (const l of lines) {
    assert.equal(l.model, '/model/qwen');
    assert.equal(l.target, '/model/qwen');
    assert.match(l.pod, /^qwen-[012]$/);
    assert.match(l.endpoint, /^10\.10\.0\.[123]:8000$/);
    assert.equal(l.strategy, 'DEFAULT');
    assert.equal(l.prefix_blocks, '0/0');
    assert.equal(l.criticality, 'Critical');
  }
  assert.deepEqual(g.host.traps, []);
});

test('the least loaded endpoint wins', () => {
  const g = new Gateway();
  const eps = endpoints(3);
  eps[0].waiting = 4; eps[0].kv_usage = 0.7;
  eps[1].waiting = 0; eps[1].kv_usage = 0.1; eps[1].running = 1;
  eps[2].waiting = 2; eps[2].kv_usage = 0.5;
  g.pushState(eps);
  const r = g.chat(CHAT);
  assert.equal(r.kind === 'upstream' && r.header(DEST), '10.10.0.2:8000');
});

test('a client-supplied destination header is always overwritten', () => {
  const g = new Gateway();
  g.pushState(endpoints(2));
  for (const body of [CHAT, undefined]) {
    const r = body
      ? g.chat(body, { headers: { [DEST]: '169.254.169.254:80' } })
      : g.routing.worker(0).requestSync({ method: 'GET', path: '/v1/models', headers: { [DEST]: '169.254.169.254:80' } });
    assert.equal(r.kind, 'upstream');
    const values = r.headers.filter(([k]) => k === DEST).map(([, v]) => v);
    assert.equal(values.length, 1);
    assert.match(values[0], /^10\.10\.0\.[12]:8000$/);
  }
  assert.equal(g.counter('client_endpoint_header_replaced'), 2);
  // Even when the filter answers itself, the client's value is not forwarded anywhere.
  const bad = g.chat('{', { headers: { [DEST]: '169.254.169.254:80' } });
  assert.equal(bad.kind, 'local');
});

test('requests without a JSON body go to a ready endpoint without parsing', () => {
  const g = new Gateway();
  const eps = endpoints(2);
  eps[0].ready = false;
  g.pushState(eps);
  const r = g.routing.worker(1).requestSync({ method: 'GET', path: '/v1/models' });
  assert.equal(r.kind === 'upstream' && r.header(DEST), '10.10.0.2:8000');
  const form = g.routing.worker(0).requestSync({ method: 'POST', path: '/v1/audio/transcriptions', headers: { 'content-type': 'multipart/form-data; boundary=x' }, body: '--x\r\n\r\n--x--' });
  assert.equal(form.kind === 'upstream' && form.header(DEST), '10.10.0.2:8000');
  assert.equal(g.counter('requests_routed_unparsed'), 2);
  assert.equal(g.handled()[0].model, '-');
});

test("the seeds' round 1 and round 2 land on one pod under PREFIX_CACHE, across workers", () => {
  const g = new Gateway({ workers: 2 });
  g.pushState(endpoints(5), { strategy: 'PREFIX_CACHE' });
  for (let trial = 0; trial < 5; trial++) {
    // Unrelated traffic between the rounds.
    g.chat({ model: '/model/qwen', messages: [{ role: 'user', content: `unrelated ${trial} `.repeat(30) }] }, {}, 0);
    const r1 = g.chat(ROUND1, {}, 0);
    const r2 = g.chat(ROUND2, {}, 1);
    assert.equal(r1.kind, 'upstream');
    assert.equal(r2.kind, 'upstream');
    assert.equal(r2.header(DEST), r1.header(DEST), `trial ${trial}`);
  }
  const lines = g.handled().filter((l) => l.model === '/models/Qwen3-32B');
  const round2 = lines.filter((_, i) => i % 2 === 1);
  for (const l of round2) {
    const [matched, total] = l.prefix_blocks.split('/').map(Number);
    assert.equal(l.strategy, 'PREFIX_CACHE');
    assert.ok(matched >= 5 && total >= matched, `prefix_blocks=${l.prefix_blocks}`);
  }
  assert.ok(g.counter('prefix_hits') >= 5);
  assert.deepEqual(g.host.traps, []);
});

// Holds `n` requests open on alternating workers (none finishes before the next is picked);
// returns the streams and how many went to each endpoint.
function burst(g: Gateway, n: number) {
  const open = [];
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const s = g.routing.worker(i % 2).newHttpStream();
    s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', 'content-type': 'application/json' }, false);
    s.requestBody(new TextEncoder().encode(JSON.stringify(CHAT)), true);
    const dest = s.upstream.header(DEST) ?? 'none';
    counts.set(dest, (counts.get(dest) ?? 0) + 1);
    open.push(s);
  }
  return { open, counts };
}

test('a burst between two metric refreshes spreads over full pods, across workers', () => {
  // Forwarded, not held: priority queuing off (with it the saturated pool holds them, queue.test.ts).
  const g = new Gateway({ workers: 2, config: { queue: { enabled: false } } });
  const eps = endpoints(4);
  for (const e of eps) e.kv_usage = 0.9; // requests sent there now will wait
  g.pushState(eps);
  const { open, counts } = burst(g, 12);
  assert.deepEqual([...counts.values()].sort(), [3, 3, 3, 3]);
  // Finishing them releases the in-flight counts.
  for (const s of open) s.responseHeaders({ ':status': '200' }, true);
  const load = g.host.sharedData('wasm-epp').get(`wasm-epp/load/${POOL}`);
  assert.ok(load, 'the shared load record exists');
  const view = Buffer.from(load.value);
  const count = view.readUInt32LE(8);
  // Entries of 32 bytes after a 24-byte header: u32 id, i32 in-flight, ... (assembly/schedule/load.ts).
  for (let i = 0; i < count; i++) assert.equal(view.readInt32LE(24 + i * 32 + 4), 0, 'in-flight back to zero');
});

test('a burst over equal pods with free KV cache is shared at random, not piled on one', () => {
  const g = new Gateway({ workers: 2 });
  g.pushState(endpoints(4));
  const { counts } = burst(g, 40);
  assert.equal(counts.size, 4, `every pod got some: ${JSON.stringify([...counts])}`);
  for (const c of counts.values()) assert.ok(c >= 4 && c <= 18, `no pod takes the burst: ${JSON.stringify([...counts])}`);
});

test('malformed JSON, a missing model and an oversized body get 400 / 400 / 413', () => {
  const g = new Gateway({ config: { max_body_bytes: 4096 } });
  g.pushState(endpoints(2));
  const bad = g.chat('{"model": "/model/qwen", "messages": [}');
  assert.equal(bad.status, 400);
  assert.equal(errorCode(bad), 'invalid_request_body');
  assert.match(JSON.parse(bad.kind === 'local' ? bad.bodyText : '{}').error.message, /at byte/);
  assert.equal(bad.kind === 'local' && bad.header('content-type'), 'application/json');
  const noModel = g.chat({ messages: [] });
  assert.equal(noModel.status, 400);
  assert.equal(errorCode(noModel), 'missing_model');
  const big = g.chat({ model: '/model/qwen', prompt: 'x'.repeat(5000) });
  assert.equal(big.status, 413);
  assert.equal(errorCode(big), 'request_too_large');
  // Chunked (no content-length): detected while buffering.
  const s = g.routing.worker(0).newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/completions', ':authority': 'gw', 'content-type': 'application/json' }, false);
  s.requestBody(new Uint8Array(3000).fill(0x20), false);
  s.requestBody(new Uint8Array(3000).fill(0x20), false);
  assert.equal(s.localReply?.status, 413);
  assert.equal(g.counter('invalid_body'), 2);
  assert.equal(g.counter('body_too_large'), 2);
});

test('unknown models pass through as Standard, or get 404 with unknown_model: reject', () => {
  const g = new Gateway();
  g.pushState(endpoints(2));
  const r = g.chat({ model: 'llama-3', prompt: 'hi' });
  assert.equal(r.kind, 'upstream');
  assert.equal(r.kind === 'upstream' && JSON.parse(r.bodyText).model, 'llama-3');
  const line = g.handled().at(-1)!;
  assert.equal(line.criticality, 'Standard');
  assert.equal(line.unknown_model, 'true');
  const strict = new Gateway({ config: { unknown_model: 'reject' } });
  strict.pushState(endpoints(2));
  const nf = strict.chat({ model: 'llama-3', prompt: 'hi' });
  assert.equal(nf.status, 404);
  assert.equal(errorCode(nf), 'model_not_found');
});

test('no ready endpoint gives 503, a saturated pool sheds Sheddable requests with 429', () => {
  // Critical goes straight on while the pool is saturated only without priority queuing.
  const g = new Gateway({ config: { queue: { enabled: false } } });
  const eps = endpoints(2);
  for (const e of eps) e.ready = false;
  g.pushState(eps);
  const r = g.chat(CHAT);
  assert.equal(r.status, 503);
  assert.equal(errorCode(r), 'no_ready_endpoint');

  const busy = endpoints(2);
  busy[0].waiting = 9;
  busy[1].kv_usage = 0.95;
  g.pushState(busy, { models: [{ name: 'batch', criticality: 'Sheddable' }, { name: '/model/qwen', criticality: 'Critical' }] });
  const shed = g.chat({ model: 'batch', prompt: 'x' });
  assert.equal(shed.status, 429);
  assert.equal(errorCode(shed), 'pool_saturated');
  const critical = g.chat(CHAT);
  assert.equal(critical.kind, 'upstream');
  assert.equal(g.counter('requests_shed'), 1);
});

test('a weighted target rewrites "model" and keeps content-length right', () => {
  const g = new Gateway();
  const eps = endpoints(2);
  eps[1].lora_running = ['travel-helper-v2'];
  g.pushState(eps, { models: [{ name: 'travel', criticality: 'Standard', targets: [{ name: 'travel-helper-v2', weight: 100 }, { name: 'travel-helper-v1', weight: 0 }] }] });
  const body = JSON.stringify({ model: 'travel', messages: [{ role: 'user', content: 'Plan a trip to Hangzhou' }] });
  const r = g.chat(body);
  assert.equal(r.kind, 'upstream');
  if (r.kind !== 'upstream') return;
  const sent = JSON.parse(r.bodyText);
  assert.equal(sent.model, 'travel-helper-v2');
  assert.deepEqual(sent.messages, JSON.parse(body).messages);
  assert.equal(r.header('content-length'), String(r.body.length));
  // The adapter is loaded on the second endpoint: LoRA affinity sends it there.
  assert.equal(r.header(DEST), '10.10.0.2:8000');
  assert.equal(g.handled().at(-1)!.target, 'travel-helper-v2');
  assert.equal(g.counter('model_rewritten'), 1);
});

test('a stale state degrades to in-flight balancing with a warning and a counter', () => {
  const g = new Gateway({ config: { stale_after_ms: 2000 } });
  g.pushState(endpoints(3));
  g.host.advance(10_000);
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const r = g.chat(CHAT);
    assert.equal(r.kind, 'upstream');
    if (r.kind === 'upstream') seen.add(r.header(DEST)!);
  }
  assert.ok(seen.size >= 2, 'spread over the last known endpoints');
  assert.equal(g.counter('requests_routed_degraded'), 6);
  assert.equal(g.host.logs.filter((e) => e.message.includes('routing state is') && e.levelName === 'warn').length, 1);
  assert.equal(g.handled().at(-1)!.degraded, 'true');
});

test('push endpoint: 401, 400, 413, 409, 404, 405 and GET', () => {
  const g = new Gateway({ pushConfig: { max_state_bytes: 8192 } });
  const doc = JSON.stringify({ version: 5, generated_at_ms: g.now, pools: [], models: [] });
  assert.equal(g.pushRaw(doc, { authorization: '' }).status, 401);
  const wrong = g.pushRaw(doc, { authorization: `Bearer ${TOKEN}x` });
  assert.equal(wrong.status, 401);
  assert.equal(errorCode(wrong), 'invalid_push_token');
  assert.equal(wrong.kind === 'local' && wrong.header('www-authenticate'), 'Bearer realm="wasm-epp"');
  const invalid = g.pushRaw(JSON.stringify({ version: 1, generated_at_ms: 1, pools: [{ name: POOL, endpoints: [{ pod: 'a', address: 'not-an-address' }] }], models: [] }));
  assert.equal(invalid.status, 400);
  assert.match(invalid.kind === 'local' ? invalid.bodyText : '', /pools\[0\]\.endpoints\[0\]\.address: must be ip:port/);
  assert.equal(g.pushRaw('{"version":1,').status, 400);
  assert.equal(g.pushRaw('x'.repeat(9000)).status, 413);
  assert.equal(g.pushRaw(doc).status, 204);
  const older = g.pushRaw(JSON.stringify({ version: 6, generated_at_ms: g.now - 1, pools: [], models: [] }));
  assert.equal(older.status, 409);
  assert.equal(errorCode(older), 'stale_state');
  assert.equal(g.pushRaw(doc, {}, 1, 'GET').kind === 'local' ? g.pushRaw(doc, {}, 1, 'GET').bodyText : '', doc);
  assert.equal(g.pushRaw(doc, {}, 0, 'POST', '/other').status, 404);
  assert.equal(g.pushRaw(doc, {}, 0, 'DELETE').status, 405);
  assert.equal(g.counter('push_accepted'), 1);
  assert.equal(g.counter('push_unauthorized'), 2);
  assert.equal(g.counter('push_conflict'), 1);
  assert.deepEqual(g.host.traps, []);
});

test('the push path is an ordinary request where accept_push is false', () => {
  const g = new Gateway();
  g.pushState(endpoints(1));
  const r = g.routing.worker(0).requestSync({ method: 'POST', path: '/wasm-epp/v1/state', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ model: '/model/qwen', prompt: 'x' }) });
  assert.equal(r.kind, 'upstream');
  assert.equal(r.kind === 'upstream' && r.header(DEST), '10.10.0.1:8000');
});

test('the push token can come from the plugin configuration', () => {
  const g = new Gateway({ pushConfig: { push_token: 'configured-token-abcdefgh' }, env: {} });
  const r = g.push.worker(0).requestSync({ method: 'POST', path: '/wasm-epp/v1/state', headers: { authorization: 'Bearer configured-token-abcdefgh' }, body: JSON.stringify({ version: 1, generated_at_ms: 1, pools: [], models: [] }) });
  assert.equal(r.status, 204);
});

test('a pool missing from the state is a 503 with the pool named', () => {
  const g = new Gateway({ config: { pool: 'other/pool' } });
  g.pushState(endpoints(1));
  const r = g.chat(CHAT);
  assert.equal(r.status, 503);
  assert.match(r.kind === 'local' ? r.bodyText : '', /other\/pool/);
});

test('request trailers end the body too', () => {
  const g = new Gateway();
  g.pushState(endpoints(1));
  const r = g.routing.worker(0).requestSync({ method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: '/model/qwen', prompt: 'x' }), trailers: { 'x-checksum': '1' } });
  assert.equal(r.kind, 'upstream');
  assert.equal(r.kind === 'upstream' && r.header(DEST), '10.10.0.1:8000');
});

test('bodies arriving in many chunks are read whole', () => {
  const g = new Gateway();
  g.pushState(endpoints(2), { strategy: 'PREFIX_CACHE' });
  const r = g.chat(ROUND2, { chunkSize: 7 });
  assert.equal(r.kind, 'upstream');
  assert.equal(r.kind === 'upstream' && r.bodyText, ROUND2);
});
