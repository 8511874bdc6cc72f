// The local stack's gateway front with requests the filter holds (build/wasm-epp.wasm, priority
// queuing): a held request starts its upstream request only when the worker's root context
// resumes it (here after a state push with room), a held request answered by the root context
// (its time in the queue is up) gets that answer on the client's connection, and a client that
// goes away while its request is held resets the stream, so the filter's on_done takes it out of
// the queue. Real clock, real sockets, a real backend.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { startGateway, type Gateway } from '../../scripts/local-stack/gateway.ts';
import { stateDocument } from '../fuzz/generators.ts';

const TOKEN = 'gateway-hold-token-0123456789';
const POOL = 'default/vllm-qwen-pool';
const TTL_MS = 600;
// Critical traffic makes Standard a band below the top one: the band that is held.
const MODELS = [
  { name: 'standard', criticality: 'Standard', targets: [{ name: '/model/qwen', weight: 100 }] },
  { name: 'critical', criticality: 'Critical', targets: [{ name: '/model/qwen', weight: 100 }] },
];

let gw: Gateway;
let backend: http.Server;
let address = '';
const seen: Array<{ path: string; dest: string | undefined; body: string }> = [];
let pushes = 0;

before(async () => {
  backend = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ path: req.url ?? '', dest: req.headers['x-gateway-destination-endpoint'] as string | undefined, body });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  address = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
  gw = await startGateway({
    wasm: new Uint8Array(readFileSync(new URL('../../build/wasm-epp.wasm', import.meta.url))),
    backends: [address], token: TOKEN, pool: POOL, plainPort: 0, inferencePort: 0, pushPort: 0, workers: 2,
    config: { queue: { ttl_ms: TTL_MS } },
  });
  // A Critical request on each of the gateway's two workers (it takes them in turn); never held.
  await push(10);
  for (let i = 0; i < 2; i++) assert.equal((await chat(`critical ${i}`, 'critical').answer).status, 200);
  seen.length = 0;
});

after(async () => {
  await gw?.close();
  backend?.close();
});

// One pod at `address`, with `waiting` requests queued there: saturated from 5 up.
async function push(waiting: number): Promise<void> {
  const doc = stateDocument({
    version: ++pushes, generatedAtMs: Date.now(), pool: POOL, models: MODELS,
    endpoints: [{ pod: 'qwen-0', address, ready: true, metrics_age_ms: 0, waiting, running: 8, kv_usage: 0.3, score: 0.5, lora_running: [], lora_waiting: [], max_lora: 2 }],
  });
  const r = await fetch(gw.pushUrl, { method: 'POST', body: JSON.stringify(doc), headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 204, await r.text());
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

// A chat completion on its own connection; `req` can be destroyed to drop the connection.
function chat(content: string, model = 'standard'): { req: http.ClientRequest; answer: Promise<Answer> } {
  const url = new URL(`${gw.inferenceUrl}/v1/chat/completions`);
  const body = JSON.stringify({ model, messages: [{ role: 'user', content }] });
  const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
  });
  req.end(body);
  return { req, answer };
}

const metric = (name: string) => gw.host.metric(`wasm_epp.${name}`) ?? 0;


async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('a client that goes away while its request is held resets the stream: the filter\'s on_done takes it out of the queue', async () => {
  await push(10);
  const held = metric('queue_held_standard');
  const c = chat('going away');
  c.answer.catch(() => {});
  await until(() => metric('queue_held_standard') === held + 1, 'the request to be held');
  assert.equal(metric('queue_size_standard'), 1);
  c.req.destroy();
  await until(() => metric('queue_cancelled_standard') === 1, 'the cancellation');
  await until(() => metric('queue_size_standard') === 0, 'the queue to empty');
  assert.equal(seen.length, 0, 'nothing reached the pod');
});

test('a held request answered by the root context (its time in the queue is up): the client gets the 429', async () => {
  await push(10);
  const t0 = Date.now();
  const r = await chat('waiting too long').answer;
  assert.equal(r.status, 429);
  assert.equal(r.headers['x-wasm-epp-error'], 'queue_timeout');
  assert.match(r.body, /request timed out in queue/);
  assert.ok(Date.now() - t0 >= TTL_MS - 20, `answered after ${Date.now() - t0} ms`);
  assert.equal(metric('queue_expired_standard'), 1);
  assert.equal(seen.length, 0, 'nothing reached the pod');
});

test('a held request starts its upstream request when the root context resumes it, after a state with room arrives', async () => {
  await push(10);
  const held = metric('queue_held_standard');
  const c = chat('released later');
  await until(() => metric('queue_held_standard') === held + 1, 'the request to be held');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(seen.length, 0, 'still held: nothing upstream');
  await push(0);
  const r = await c.answer;
  assert.equal(r.status, 200);
  assert.equal(r.body, '{"ok":true}');
  assert.equal(seen.length, 1);
  assert.equal(seen[0].path, '/v1/chat/completions');
  assert.equal(seen[0].dest, address, 'the pod picked at release');
  assert.equal(JSON.parse(seen[0].body).messages[0].content, 'released later');
  assert.equal(metric('queue_admitted_standard'), 1);
  assert.deepEqual(gw.host.traps, []);
  assert.deepEqual(gw.host.violations, []);
});
