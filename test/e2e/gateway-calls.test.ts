// The local stack's gateway front performs a module's proxy_http_call for real on the ORIGINAL_DST
// cluster (to the ip:port in the call's own x-gateway-destination-endpoint), and when the module
// answers a stream from its root context after the stream's request went upstream, the front
// aborts that upstream request and the client gets the local reply. The module is the host's
// dispatch fixture: every request makes one call (to the address in x-dest) and goes on upstream
// at once; a failed call (reset or 5xx) makes the root context answer the stream with a 502.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { startGateway, type Gateway } from '../../scripts/local-stack/gateway.ts';
import { compileFixture } from '../host/fixtures/compile.ts';

interface Seen { path: string; headers: http.IncomingHttpHeaders; body: string; aborted: boolean }
interface Backend { server: http.Server; address: string; seen: Seen[] }

// A pod that answers every request with `status` and `body`, `delayMs` after the request ended,
// and records whether the request was dropped before it answered.
async function backend(opts: { status?: number; delayMs?: number; body?: string }): Promise<Backend> {
  const b: Backend = { server: http.createServer(), address: '', seen: [] };
  b.server.on('request', (req, res) => {
    const seen: Seen = { path: req.url ?? '', headers: req.headers, body: '', aborted: false };
    b.seen.push(seen);
    req.on('data', (c) => (seen.body += c));
    res.on('close', () => {
      if (!res.writableFinished) seen.aborted = true;
    });
    req.on('end', () => {
      const t = setTimeout(() => {
        if (res.destroyed) return;
        res.writeHead(opts.status ?? 200, { 'content-type': 'application/json' });
        res.end(opts.body ?? '{"ok":true}');
      }, opts.delayMs ?? 0);
      res.on('close', () => clearTimeout(t));
    });
  });
  await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', () => r()));
  b.address = `127.0.0.1:${(b.server.address() as AddressInfo).port}`;
  return b;
}

async function closedPort(): Promise<string> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `127.0.0.1:${port}`;
}

const servers: Backend[] = [];
let gw: Gateway;

after(async () => {
  await gw?.close();
  for (const b of servers) b.server.close();
});

async function send(headers: Record<string, string>): Promise<{ status: number; text: string; headers: Headers }> {
  const r = await fetch(`${gw.inferenceUrl}/v1/completions`, { method: 'POST', body: '{"prompt":"hello"}', headers: { 'content-type': 'application/json', ...headers } });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
};

test('http calls run for real on the ORIGINAL_DST cluster; a root-context local reply aborts the upstream request', async () => {
  const prefillOk = await backend({ status: 200, body: '{"prefill":"done"}' });
  const prefillFail = await backend({ status: 500 });
  const prefillHang = await backend({ delayMs: 60_000 });
  const decode = await backend({ delayMs: 400, body: '{"decoded":true}' });
  servers.push(prefillOk, prefillFail, prefillHang, decode);
  gw = await startGateway({
    wasm: await compileFixture('dispatch'),
    backends: [decode.address], token: 'gateway-calls-token-0123456789', pool: 'default/p',
    plainPort: 0, inferencePort: 0, pushPort: 0, workers: 1,
    // The fixture reads "k=v;k=v" options out of its configuration text.
    config: { fixture: ';on_answer=local;local_if=fail;' },
  });
  const toDecode = { 'x-gateway-destination-endpoint': decode.address };

  // 1. The call reaches the pod named on the call; the request itself goes on to decode.
  let r = await send({ ...toDecode, 'x-dest': prefillOk.address });
  assert.equal(r.status, 200);
  assert.equal(r.text, '{"decoded":true}');
  assert.equal(prefillOk.seen.length, 1);
  const call = prefillOk.seen[0];
  assert.equal(call.path, '/v1/completions');
  assert.equal(call.body, '{"prompt":"p"}');
  assert.equal(call.headers.host, 'pool', 'the call\'s :authority');
  assert.equal(call.headers['x-gateway-destination-endpoint'], prefillOk.address);
  assert.equal(call.headers['x-envoy-internal'], 'true');
  assert.equal(call.headers['x-envoy-expected-rq-timeout-ms'], '5000');
  assert.equal(decode.seen.at(-1)!.aborted, false);

  // 2. The call fails (5xx): the root context answers the stream while decode is still working.
  r = await send({ ...toDecode, 'x-dest': prefillFail.address });
  assert.equal(r.status, 502);
  assert.equal(r.text, '{"error":"prefill failed"}');
  assert.equal(r.headers.get('x-wasm-epp-error'), 'prefill_failed');
  await until(() => decode.seen.at(-1)!.aborted);
  assert.equal(decode.seen.at(-1)!.aborted, true, 'the decode request was aborted');

  // 3. Connection refused: the router's 503, so the same local reply.
  r = await send({ ...toDecode, 'x-dest': await closedPort() });
  assert.equal(r.status, 502);

  // 4. The call's timeout: 504 from the router, the upstream call dropped.
  r = await send({ ...toDecode, 'x-dest': prefillHang.address, 'x-timeout': '150' });
  assert.equal(r.status, 502);
  await until(() => prefillHang.seen[0]?.aborted === true);
  assert.equal(prefillHang.seen[0].aborted, true, 'the timed-out call\'s request was closed');

  // 5. No usable header on the call: InternalFailure, no call, the request is served as usual.
  const calls = prefillOk.seen.length;
  r = await send({ ...toDecode });
  assert.equal(r.status, 200);
  assert.equal(prefillOk.seen.length, calls);
  const failed = gw.host.logs.filter((l) => l.message.includes('result=10 token=0'));
  assert.equal(failed.length, 1);
});
