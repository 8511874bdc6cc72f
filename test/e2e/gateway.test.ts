// The local stack's gateway front (scripts/local-stack/gateway.ts) with plain HTTP backends:
// requests pass the compiled filter and reach the pod it picked, bodies stream both ways.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type Gateway } from '../../scripts/local-stack/gateway.ts';
import { wasm } from '../integration/harness.ts';
import { stateDocument } from '../fuzz/generators.ts';

const TOKEN = 'gateway-test-token-0123456789';

interface Backend { server: http.Server; address: string; hits: number; lastBody: string; lastHeaders: http.IncomingHttpHeaders }

async function backend(name: string): Promise<Backend> {
  const b: Backend = { server: http.createServer(), address: '', hits: 0, lastBody: '', lastHeaders: {} };
  b.server.on('request', (req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      b.hits++;
      b.lastBody = body;
      b.lastHeaders = req.headers;
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let n = 0;
        const t = setInterval(() => {
          res.write(`data: {"n":${n}}\n\n`);
          if (++n === 3) {
            clearInterval(t);
            res.end('data: [DONE]\n\n');
          }
        }, 5);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name });
      res.end(JSON.stringify({ served_by: name }));
    });
  });
  await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', () => r()));
  b.address = `127.0.0.1:${(b.server.address() as AddressInfo).port}`;
  return b;
}

async function send(url: string, method: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Headers }> {
  const r = await fetch(url, { method, body, headers: { 'content-type': 'application/json', ...headers } });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

const backends: Backend[] = [];
let gw: Gateway;

after(async () => {
  await gw?.close();
  for (const b of backends) b.server.close();
});

test('the gateway routes through the filter, streams responses and keeps the push listener apart', async () => {
  backends.push(await backend('a'), await backend('b'));
  const lines: string[] = [];
  gw = await startGateway({
    wasm: wasm(), backends: backends.map((b) => b.address), token: TOKEN, pool: 'default/vllm-qwen-pool',
    plainPort: 0, inferencePort: 0, pushPort: 0, onLog: (e) => lines.push(e.message),
  });
  // Before any push: the filter answers 503 itself.
  const early = await send(`${gw.inferenceUrl}/v1/completions`, 'POST', JSON.stringify({ model: '/model/qwen', prompt: 'hi' }));
  assert.equal(early.status, 503);
  assert.equal(JSON.parse(early.text).error.code, 'no_routing_state');

  const eps = backends.map((b, i) => ({ pod: `qwen-${i}`, address: b.address, waiting: i === 0 ? 4 : 0, running: 1, kv_usage: 0.1, score: 0.8 }));
  const doc = JSON.stringify(stateDocument({ generatedAtMs: Date.now(), endpoints: eps }));
  assert.equal((await send(gw.pushUrl, 'POST', doc, { authorization: 'Bearer wrong' })).status, 401);
  assert.equal((await send(gw.pushUrl, 'POST', doc, { authorization: `Bearer ${TOKEN}` })).status, 204);

  const r = await send(`${gw.inferenceUrl}/v1/chat/completions`, 'POST', JSON.stringify({ model: '/model/qwen', messages: [{ role: 'user', content: 'hello' }] }), { 'x-gateway-destination-endpoint': '10.9.9.9:1' });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.text).served_by, 'b');
  assert.equal(backends[1].lastHeaders['x-gateway-destination-endpoint'], backends[1].address);
  assert.ok(lines.some((l) => l.startsWith('Request Handled') && l.includes('pod=qwen-1')));

  // Streaming passes chunk by chunk.
  const s = await fetch(`${gw.inferenceUrl}/stream`, { method: 'POST', body: JSON.stringify({ model: '/model/qwen', prompt: 'x' }), headers: { 'content-type': 'application/json' } });
  assert.equal(s.headers.get('content-type'), 'text/event-stream');
  const text = await s.text();
  assert.match(text, /data: \{"n":0\}[\s\S]*data: \[DONE\]/);

  // The plain listener round-robins without the filter.
  const before = backends.map((b) => b.hits);
  await send(`${gw.plainUrl}/v1/models`, 'GET');
  await send(`${gw.plainUrl}/v1/models`, 'GET');
  assert.deepEqual(backends.map((b, i) => b.hits - before[i]), [1, 1]);

  // A dead pod: the router's 503 passes back to the client.
  const deadDoc = JSON.stringify(stateDocument({ generatedAtMs: Date.now() + 1, version: 2, endpoints: [{ pod: 'gone', address: '127.0.0.1:1', running: 0, waiting: 0, kv_usage: 0, score: 1 }] }));
  assert.equal((await send(gw.pushUrl, 'POST', deadDoc, { authorization: `Bearer ${TOKEN}` })).status, 204);
  const dead = await send(`${gw.inferenceUrl}/v1/completions`, 'POST', JSON.stringify({ model: '/model/qwen', prompt: 'x' }));
  assert.equal(dead.status, 503);
  assert.match(dead.text, /connection failure/);
  assert.deepEqual(gw.host.traps, []);
});
