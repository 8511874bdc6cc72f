// Holding a request and releasing it later from the root context (what a queue in a filter does):
// the body buffered by StopIterationAndBuffer and reachable from a tick or a queue notification
// through proxy_set_effective_context; continue_stream deferred until the VM call returns; the
// client going away while held; one shared queue per worker; and one pass that answers one held
// stream and continues another (after-call actions share one queue: proxy-wasm-cpp-host issue 326).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFixture } from './fixtures/compile.ts';
import { ProxyWasmHost, type HttpStream, type Plugin } from './index.ts';

const wasmP = compileFixture('hold');

async function setup(configuration: string, opts: { workers?: number; host?: ProxyWasmHost } = {}): Promise<{ host: ProxyWasmHost; p: Plugin; msgs: (prefix: string) => string[] }> {
  const host = opts.host ?? new ProxyWasmHost();
  const p = host.loadPlugin({ wasm: await wasmP, vmId: 'hold', configuration, allowOnHeadersStopIteration: true, workers: opts.workers ?? 1 });
  return { host, p, msgs: (prefix) => p.logs.filter((l) => l.message.startsWith(prefix)).map((l) => l.message) };
}

function post(s: HttpStream, body: string[], headers: Record<string, string> = {}): HttpStream {
  const total = body.reduce((n, c) => n + Buffer.byteLength(c), 0);
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/completions', ':authority': 'gw', 'content-length': String(total), ...headers }, body.length === 0);
  body.forEach((c, i) => s.requestBody(c, i === body.length - 1));
  return s;
}

test('held after the final chunk (StopIterationAndBuffer): a tick reads and rewrites headers and body; the continue runs after the tick returns', async () => {
  const { host, p, msgs } = await setup('tick=10;rewrite=yes');
  const w = p.worker(0);
  const s = w.newHttpStream();
  let logsAtUpstream = -1;
  s.observer = { upstreamRequestComplete: () => (logsAtUpstream = p.logs.length) };
  post(s, ['hello ', 'world'], { 'x-dest': '10.0.0.1:8000' });
  assert.deepEqual(s.callbacks, ['on_context_create', 'on_request_headers', 'on_request_body', 'on_request_body']);
  assert.equal(s.requestPaused, true);
  assert.equal(s.upstream.headers, null, 'nothing upstream while held');

  host.advance(9);
  assert.equal(s.upstream.headers, null);
  host.advance(1);
  const id = s.contextId;
  // Headers readable and writable, the whole body readable and replaceable; after continue_stream
  // the request headers are gone at once (BadArgument), though the stream has not moved yet.
  assert.deepEqual(msgs('release'), [
    `release ctx=${id} by=tick effective=0 path=/v1/completions dest=0 mark=0 body_size=11 body=hello world set=0 continue=0,- headers_after=2`,
  ]);
  const releaseAt = p.logs.findIndex((l) => l.message.startsWith('release'));
  assert.ok(logsAtUpstream > releaseAt, 'the request left only after on_tick returned (deferred action)');
  assert.equal(s.upstream.header('x-gateway-destination-endpoint'), '10.0.0.1:8000');
  assert.equal(s.upstream.header('x-released-by'), 'tick');
  assert.equal(s.upstream.header('content-length'), '17');
  assert.equal(s.upstream.bodyText, '[tick]hello world');
  assert.equal(s.upstream.endStream, true);
  assert.equal(s.requestPaused, false);

  s.responseHeaders({ ':status': '200' }, true);
  assert.deepEqual(s.callbacks.slice(4), ['on_response_headers', 'on_log', 'on_done', 'on_delete']);
  assert.deepEqual(host.violations, []);
  assert.deepEqual(host.traps, []);
});

test('a second continue_stream on a released stream does nothing (a debug Envoy asserts): recorded as a violation', async () => {
  const { host, p, msgs } = await setup('tick=10;double=yes');
  const s = post(p.worker(0).newHttpStream(), ['{"prompt":"x"}']);
  host.advance(10);
  assert.match(msgs('release')[0], / continue=0,0 /, 'both calls return Ok');
  assert.equal(s.upstream.bodyText, '{"prompt":"x"}', 'the body went upstream once');
  assert.deepEqual(host.violations.map((v) => [v.kind, v.contextId]), [['continue-after-continue', s.contextId]]);
});

test('StopIterationNoBuffer on the final chunk: the root context reads an empty body (a violation); what went upstream is what the filter manager kept', async () => {
  const { host, p, msgs } = await setup('tick=10;nobuffer=yes');
  const w = p.worker(0);
  // One chunk, consumed: the body is lost; the upstream gets the headers and an empty end of stream.
  const one = post(w.newHttpStream(), ['{"prompt":"x"}']);
  // Two chunks: the first was buffered (StopIterationAndBuffer), the last one joins it before the
  // callback, so the filter manager still holds and forwards all of it; the module cannot see it.
  const two = post(w.newHttpStream(), ['hello ', 'world']);
  host.advance(10);
  assert.deepEqual(msgs('release').map((m) => m.replace(/ctx=\d+/, 'ctx=N')), [
    'release ctx=N by=tick effective=0 path=/v1/completions dest=-1 mark=0 body_size=0 body= set=- continue=0,- headers_after=2',
    'release ctx=N by=tick effective=0 path=/v1/completions dest=-1 mark=0 body_size=0 body= set=- continue=0,- headers_after=2',
  ]);
  assert.equal(one.upstream.header('content-length'), '14');
  assert.equal(one.upstream.bodyText, '');
  assert.equal(one.upstream.endStream, true);
  assert.equal(two.upstream.bodyText, 'hello world');
  // With HTTP/1 Envoy's pointer is to the codec's end-of-stream buffer, already destroyed.
  assert.deepEqual(host.violations.map((v) => [v.kind, v.contextId]), [['stale-body', one.contextId], ['stale-body', two.contextId]]);
});

test('StopIterationNoBuffer, then a body write from the root context: lost (one violation per stream)', async () => {
  const { host, p, msgs } = await setup('tick=10;nobuffer=yes;rewrite=yes');
  const s = post(p.worker(0).newHttpStream(), ['{"prompt":"x"}']);
  host.advance(10);
  assert.match(msgs('release')[0], / body_size=0 body= set=0 continue=0,- /, 'the write returns Ok');
  assert.equal(s.upstream.bodyText, '', 'and goes nowhere');
  assert.equal(s.upstream.header('content-length'), '6', 'the module set content-length for a body that never left');
  assert.deepEqual(host.violations.map((v) => [v.kind, v.contextId]), [['stale-body', s.contextId]]);
});

test('a client that goes away while held: on_log, on_done, on_delete run at once; later passes get BadArgument and act on nothing', async () => {
  // keep_gone: the module (wrongly) keeps the ids, to show what the host answers for them.
  const { host, p, msgs } = await setup('tick=10;keep_gone=yes');
  const w = p.worker(0);
  const a = post(w.newHttpStream(), ['{"prompt":"a"}'], { 'x-reply': '429' });
  const b = post(w.newHttpStream(), ['{"prompt":"b"}']);
  a.reset();
  b.reset();
  for (const s of [a, b]) {
    assert.deepEqual(s.callbacks.slice(-3), ['on_log', 'on_done', 'on_delete']);
    assert.equal(s.state, 'reset');
  }
  assert.deepEqual(msgs('done'), [`done ctx=${a.contextId} was_held=1 held=2`, `done ctx=${b.contextId} was_held=1 held=2`]);
  assert.equal(w.openStreams.size, 0);

  host.advance(10);
  // BadArgument (2): the effective context stays the root, whose maps do not exist (2 again) and
  // whose send_local_response / continue_stream return Ok and do nothing.
  assert.deepEqual(msgs('reply'), [`reply ctx=${a.contextId} by=tick effective=2 path=<2> send=0 continue=-`]);
  assert.deepEqual(msgs('release'), [`release ctx=${b.contextId} by=tick effective=2 path=<2> dest=-1 mark=2 body_size=0 body= set=- continue=0,- headers_after=2`]);
  assert.equal(a.localReply, null);
  assert.equal(b.upstream.headers, null);
  assert.deepEqual(host.violations, []);
});

test('on_done can forget a held stream: the next pass has nothing to release', async () => {
  const { host, p, msgs } = await setup('tick=10');
  const s = post(p.worker(0).newHttpStream(), ['{"prompt":"a"}']);
  s.end();
  assert.deepEqual(msgs('done'), [`done ctx=${s.contextId} was_held=1 held=0`]);
  host.advance(30);
  assert.deepEqual(msgs('release'), []);
});

test('the dispatcher pass in which a stream ends: work posted from its on_done still resolves its id; acting on it is a violation', async () => {
  // The stream's Context is destroyed by the connection manager's deferred delete, after work that
  // was posted before it (here: the queue notification enqueued by on_done itself).
  const { host, p, msgs } = await setup('queue=yes;keep_gone=yes;wake_on_done=yes');
  const s = post(p.worker(0).newHttpStream(), ['{"prompt":"a"}']);
  s.reset();
  assert.deepEqual(msgs('done'), [`done ctx=${s.contextId} was_held=1 held=1 wake=hold.1:0`]);
  host.drain();
  assert.deepEqual(msgs('queue_ready'), ['queue_ready root=1 token=2 items=1 last=7 held=1']);
  assert.deepEqual(msgs('release'), [
    `release ctx=${s.contextId} by=queue effective=0 path=/v1/completions dest=-1 mark=0 body_size=14 body={"prompt":"a"} set=- continue=0,- headers_after=2`,
  ]);
  assert.equal(s.upstream.headers, null, 'nothing is sent for a destroyed stream');
  assert.deepEqual(host.violations.map((v) => [v.kind, v.contextId]), [['action-on-destroyed-stream', s.contextId]]);
  assert.equal(p.worker(0).vm.contexts.has(s.contextId), false, 'gone once the pass is over');
});

test('shared queues: one name per worker; an enqueue from any worker wakes that queue\'s registrant, asynchronously; dequeue ends with Empty', async () => {
  const { host, p, msgs } = await setup('queue=yes', { workers: 2 });
  // The canary claims a number and registers too; its queue has no live registrant afterwards.
  assert.deepEqual(
    p.logs.filter((l) => l.message.startsWith('queue name')).map((l) => `${l.worker}:${l.message}`),
    ['canary:queue name=hold.0 token=1 result=0', '0:queue name=hold.1 token=2 result=0', '1:queue name=hold.2 token=3 result=0'],
  );
  const a = post(p.worker(0).newHttpStream(), ['{"prompt":"a"}']);
  const b = post(p.worker(1).newHttpStream(), ['{"prompt":"b"}']);
  // A state push analogue on worker 1 wakes every worker.
  const wake = p.worker(1).newHttpStream();
  wake.requestHeaders({ ':method': 'POST', ':path': '/wake', ':authority': 'gw', 'x-wake': 'all' }, true);
  assert.equal(wake.localReply?.bodyText, 'hold.0:0 hold.1:0 hold.2:0');
  assert.deepEqual(msgs('queue_ready'), [], 'nothing is delivered inside the enqueueing call');
  host.drain();
  assert.deepEqual(
    p.logs.filter((l) => l.message.startsWith('queue_ready')).map((l) => `${l.worker}:${l.message}`),
    ['0:queue_ready root=1 token=2 items=1 last=7 held=1', '1:queue_ready root=1 token=3 items=1 last=7 held=1'],
  );
  assert.equal(a.upstream.header('x-released-by'), 'queue');
  assert.equal(b.upstream.header('x-released-by'), 'queue');
  assert.equal(host.sharedQueues.depth('hold', 'hold.0'), 1, 'the canary\'s queue keeps its item');
  assert.equal(host.sharedQueues.depth('hold', 'hold.1'), 0);
  assert.deepEqual(host.violations, []);
});

test('ticks run every N ms on each worker\'s root context', async () => {
  const { host, p, msgs } = await setup('tick=25', { workers: 2 });
  const a = post(p.worker(0).newHttpStream(), ['{"prompt":"a"}']);
  host.advance(24);
  assert.equal(a.upstream.headers, null);
  host.advance(1);
  assert.equal(a.upstream.header('x-released-by'), 'tick');
  const b = post(p.worker(1).newHttpStream(), ['{"prompt":"b"}']);
  host.advance(24);
  assert.equal(b.upstream.headers, null);
  host.advance(1);
  assert.equal(b.upstream.header('x-released-by'), 'tick');
  assert.equal(msgs('release').length, 2);
});

test('one pass answering one held stream and continuing another: the continue runs nested in the answered stream\'s response callback (cpp-host issue 326)', async () => {
  const events: string[] = [];
  const host = new ProxyWasmHost({ logSink: (e) => e.source === 'plugin' && events.push(e.message.split(' by=')[0].replace(/ status=.*/, '')) });
  const { p } = await setup('tick=10', { host });
  const w = p.worker(0);
  const a = post(w.newHttpStream(), ['{"prompt":"a"}'], { 'x-reply': '503' });
  const b = post(w.newHttpStream(), ['{"prompt":"b"}']);
  b.observer = { upstreamRequestComplete: () => events.push('B upstream') };
  events.length = 0;
  host.advance(10);
  const [A, B] = [a.contextId, b.contextId];
  // The tick queues two actions: A's local reply, then B's continue. Running A's reply calls the
  // module's on_response_headers for A; cpp-host drains the remaining actions when that call
  // returns, so B goes upstream before A's reply has finished (and before A's on_log).
  assert.deepEqual(events, [`reply ctx=${A}`, `release ctx=${B}`, `resp_headers ctx=${A}`, 'B upstream', `log ctx=${A}`, `done ctx=${A} was_held=0 held=0`, `delete ctx=${A}`]);
  assert.equal(a.localReply?.status, 503);
  assert.equal(a.localReply?.details, 'held_reply');
  assert.equal(b.upstream.endStream, true);
  // Different streams: each ends up as intended; only the order differs.
  assert.deepEqual(host.violations, []);
});

test('one pass answering a held stream and continuing the same stream: the request goes upstream during the reply, then is reset', async () => {
  const { host, p, msgs } = await setup('tick=10');
  const s = post(p.worker(0).newHttpStream(), ['{"prompt":"a"}'], { 'x-reply': '503', 'x-reply-and-continue': 'yes' });
  const seen: string[] = [];
  s.observer = { upstreamRequestComplete: () => seen.push('upstream'), upstreamReset: () => seen.push(`reset:${s.upstreamAborted}`) };
  host.advance(10);
  assert.deepEqual(msgs('reply'), [`reply ctx=${s.contextId} by=tick effective=0 path=/v1/completions send=0 continue=0`]);
  // Envoy's decoder may continue until the reply is complete (canContinue is !local_complete_),
  // and the continue runs inside the reply's on_response_headers: a spurious upstream request.
  assert.deepEqual(seen, ['upstream', 'reset:local-reply']);
  assert.equal(s.upstream.bodyText, '{"prompt":"a"}');
  assert.equal(s.localReply?.status, 503, 'the client gets the local reply');
  assert.deepEqual(host.violations.map((v) => [v.kind, v.contextId]), [['continue-during-local-reply', s.contextId]]);
});
