// Ticks and time (manual and real clocks), outbound HTTP calls answered on the
// root context, resuming paused streams, and metrics.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFixture } from './fixtures/compile.ts';
import { ProxyWasmHost, type HttpCallRequest } from './index.ts';

const wasmP = compileFixture('calls');
const T0 = 1_700_000_000_000;

test('ticks fire on the root context as the manual clock advances; period 0 stops them', async () => {
  const host = new ProxyWasmHost({ startTimeMs: T0, workers: 2 });
  const p = host.loadPlugin({ wasm: await wasmP, configuration: 'tick=100;tick_stop_after=3' });
  const ticks = (w: number) => p.logs.filter((l) => l.worker === w && l.message.startsWith('tick')).map((l) => l.message);
  assert.deepEqual(ticks(0), []);
  assert.equal(host.advance(250), 4); // two ticks on each worker
  assert.deepEqual(ticks(0), [`tick n=1 now_ms=${T0 + 100}`, `tick n=2 now_ms=${T0 + 200}`]);
  host.advance(1000);
  assert.deepEqual(ticks(1), [`tick n=1 now_ms=${T0 + 100}`, `tick n=2 now_ms=${T0 + 200}`, `tick n=3 now_ms=${T0 + 300}`]);
  assert.equal(host.metric('ticks'), 6, 'one stat shared by both workers');
  assert.ok(p.logs.filter((l) => l.worker === 'canary').every((l) => !l.message.startsWith('tick')), 'the canary is gone before any tick');
});

test('a tick can resume a paused stream through proxy_set_effective_context + proxy_continue_stream', async () => {
  const host = new ProxyWasmHost();
  const p = host.loadPlugin({ wasm: await wasmP, configuration: 'tick=50;continue_on_tick=yes' });
  const s = p.worker(0).newHttpStream();
  s.requestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'h' }, true);
  assert.equal(s.requestPaused, true);
  assert.equal(s.upstream.headers, null);
  host.advance(50);
  assert.ok(p.logs.some((l) => l.message === `resume ctx=${s.contextId} effective=0 replace=0 continue=0`));
  assert.equal(s.upstream.header('x-resumed-by'), 'tick');
  assert.equal(s.upstream.endStream, true);
  assert.equal(s.requestPaused, false);
});

test('StopIteration without the option, resumed later: headers go first, then ONE body callback with everything buffered', async () => {
  const host = new ProxyWasmHost();
  const p = host.loadPlugin({ wasm: await wasmP, configuration: 'tick=50;continue_on_tick=yes' });
  const s = p.worker(0).newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat', ':authority': 'h' });
  s.requestBody('hello ').requestBody('world', true);
  assert.deepEqual(s.callbacks, ['on_context_create', 'on_request_headers'], 'no body callbacks while stopped');
  host.advance(50);
  assert.deepEqual(s.callbacks.slice(2), ['on_request_body']);
  // The headers were already on their way upstream: the body callback cannot read them any more.
  assert.ok(p.logs.some((l) => l.message === 'req_body size=11 eos=1 bytes=hello world path=<2>'));
  assert.equal(s.upstream.header('x-resumed-by'), 'tick');
  assert.equal(s.upstream.bodyText, 'hello world');
  assert.equal(s.upstream.endStream, true);
});

test('proxy_http_call: the handler sees the request; the answer arrives on the root context and resumes the stream', async () => {
  const seen: HttpCallRequest[] = [];
  const host = new ProxyWasmHost({
    httpCallHandler: async (req) => {
      seen.push(req);
      return { status: 200, headers: { 'X-Endpoint': '10.0.0.7:8000' }, body: '10.0.0.7:8000' };
    },
  });
  const p = host.loadPlugin({ wasm: await wasmP, name: 'epp' });
  const r = await p.worker(0).request({ path: '/v1/completions', headers: { 'x-call': 'epp-cluster' } });
  assert.equal(r.kind, 'upstream');
  if (r.kind !== 'upstream') return;
  assert.equal(r.header('x-picked'), '10.0.0.7:8000');
  assert.equal(r.header('x-after-continue'), undefined);
  assert.equal(seen.length, 1);
  const req = seen[0];
  assert.equal(req.cluster, 'epp-cluster');
  assert.equal(req.token, 4);
  assert.equal(req.method, 'POST');
  assert.equal(req.authority, 'epp');
  assert.equal(req.bodyText, 'pick-body');
  assert.equal(req.timeoutMs, 5000);
  assert.deepEqual(req.headers, [[':method', 'POST'], [':path', '/pick'], [':authority', 'epp'], ['x-model', 'm1'], ['content-length', '9']]);
  const msgs = p.logs.map((l) => l.message);
  assert.ok(msgs.includes('http_call result=0 token=4'));
  assert.ok(
    msgs.includes('call_response root=1 token=4 headers=2 body_size=13 trailers=0 status=200 body=10.0.0.7:8000 pairs=:status=200;x-endpoint=10.0.0.7:8000 get_status=0:'),
    msgs.join('\n'),
  );
  // continue_stream drops the request maps at once: a later replace is BadArgument.
  assert.ok(msgs.includes(`resume ctx=${r.stream.contextId} effective=0 replace=0 continue=0 after_continue=2`));
  assert.deepEqual(host.httpCalls.made.map((c) => c.cluster), ['epp-cluster']);
});

test('proxy_http_call errors: unknown cluster and missing :authority are BadArgument', async () => {
  const host = new ProxyWasmHost({ clusters: ['epp'], httpCallHandler: () => ({ body: 'x' }) });
  const p = host.loadPlugin({ wasm: await wasmP });
  const r1 = p.worker(0).requestSync({ headers: { 'x-call': 'nope' } });
  assert.equal(r1.kind, 'upstream');
  const r2 = p.worker(0).requestSync({ headers: { 'x-call': 'epp', 'x-no-authority': 'yes' } });
  assert.equal(r2.kind, 'upstream');
  const results = p.logs.filter((l) => l.message.startsWith('http_call')).map((l) => l.message);
  assert.deepEqual(results, ['http_call result=2 token=0', 'http_call result=2 token=0']);
  assert.equal(host.httpCalls.made.length, 0);
});

test('a failing upstream is a reset (BrokenConnection/"reset"); an unanswered call times out with 504', async () => {
  const host = new ProxyWasmHost({
    httpCallHandler: (req) => (req.timeoutMs === 100 ? new Promise(() => {}) : Promise.reject(new Error('connection refused'))),
  });
  const p = host.loadPlugin({ wasm: await wasmP });
  const r = await p.worker(0).request({ headers: { 'x-call': 'epp' } });
  assert.equal(r.kind === 'upstream' && r.header('x-picked'), 'none');
  const failed = p.logs.find((l) => l.message.startsWith('call_response'))!.message;
  assert.match(failed, /headers=0 body_size=0 trailers=0 .* get_status=11:reset$/);

  const s = p.worker(0).newHttpStream();
  s.requestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'h', 'x-call': 'epp', 'x-timeout': '100' }, true);
  host.drain();
  assert.equal(s.requestPaused, true);
  host.advance(99);
  assert.equal(s.requestPaused, true);
  host.advance(1);
  assert.equal(s.upstream.header('x-picked'), 'upstream request timeout');
  assert.ok(p.logs.some((l) => /status=504 body=upstream request timeout/.test(l.message)));
});

test('metrics: wasmcustom names, one stat per name across workers, Envoy increment/record/get rules', async () => {
  const host = new ProxyWasmHost({ workers: 2 });
  const p = host.loadPlugin({ wasm: await wasmP });
  const defs = p.logs.filter((l) => l.worker === 0 && l.message.startsWith('define')).map((l) => l.message);
  assert.deepEqual(defs, [
    'define requests_total result=0 id=4',
    'define inflight result=0 id=5',
    'define latency_ms result=0 id=6',
    'define ticks result=0 id=8',
  ]);
  assert.ok(p.logs.some((l) => l.message === 'bad_type=2'));
  p.worker(0).requestSync({});
  p.worker(0).requestSync({});
  p.worker(1).requestSync({});
  const reqLogs = p.logs.filter((l) => l.message.startsWith('requests=')).map((l) => `${l.worker}:${l.message}`);
  // negative counter increment -> BadArgument; get on a histogram -> BadArgument; unknown id -> NotFound
  assert.deepEqual(reqLogs, [
    '0:requests=1 bad_inc=2 hist_get=2 unknown_get=1',
    '0:requests=2 bad_inc=2 hist_get=2 unknown_get=1',
    '1:requests=3 bad_inc=2 hist_get=2 unknown_get=1',
  ]);
  assert.equal(host.metric('requests_total'), 3);
  assert.equal(host.metric('wasmcustom.requests_total'), 3);
  assert.equal(host.metric('inflight'), 0, 'gauge went +1 in on_request_headers and -1 in on_log');
  assert.deepEqual(host.metrics.find((m) => m.name === 'wasmcustom.latency_ms')?.samples, [42, 42, 42]);
  const admin = host.adminStats();
  assert.equal(admin.requests_total, 3);
  assert.equal('latency_ms' in admin, false);
  assert.ok(host.metrics.every((m) => m.name.startsWith('wasmcustom.')));
});

test('real clock mode: ticks run on wall time until the host is closed', async () => {
  const host = new ProxyWasmHost({ clock: 'real' });
  const p = host.loadPlugin({ wasm: await wasmP, configuration: 'tick=5' });
  await new Promise((r) => setTimeout(r, 60));
  host.close();
  const n = p.logs.filter((l) => l.message.startsWith('tick')).length;
  assert.ok(n >= 2, `expected ticks, got ${n}`);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(p.logs.filter((l) => l.message.startsWith('tick')).length, n, 'no ticks after close()');
  const now = Number(BigInt(Date.now()) - host.clock.realtimeNs() / 1_000_000n);
  assert.ok(Math.abs(now) < 1000);
});
