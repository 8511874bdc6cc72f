// HTTP streams through the filter: iteration and buffering with and without
// allow_on_headers_stop_iteration, header maps per phase, set_buffer_bytes,
// local replies, the buffer limit, trailers and the end-of-stream callbacks.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFixture } from './fixtures/compile.ts';
import { ProxyWasmHost, type PluginOptions } from './index.ts';

const wasmP = compileFixture('streams');

async function plugin(configuration: string, extra: Partial<PluginOptions> = {}) {
  const host = new ProxyWasmHost();
  const p = host.loadPlugin({ wasm: await wasmP, name: 'epp', rootId: 'epp', vmId: 'epp', configuration, ...extra });
  const logs = () => p.logs.filter((l) => l.worker === 0).map((l) => l.message);
  return { host, p, w: p.worker(0), logs };
}

const REQ = { method: 'POST', path: '/v1/chat', body: 'hello world' } as const;

test('headers Continue: headers go upstream at once, each body chunk is seen alone, request headers are gone in body callbacks', async () => {
  const { w, logs, host } = await plugin('headers=continue;body_header=yes');
  const s = w.newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat', ':authority': 'h', ':scheme': 'http', 'X-Mixed-Case': 'A' });
  assert.ok(s.upstream.headers, 'headers forwarded before any body');
  s.requestBody('hell').requestBody('o wo').requestBody('rld', true);
  const body = logs().filter((m) => m.startsWith('req_body'));
  assert.deepEqual(body, [
    // BadArgument (2) for the header map, NotFound (1) for request.path: Envoy dropped the headers.
    'req_body size=4 status_size=4 eos=0 bytes=hell path=<2> prop_path=<1>',
    'req_body size=4 status_size=4 eos=0 bytes=o wo path=<2> prop_path=<1>',
    'req_body size=3 status_size=3 eos=1 bytes=rld path=<2> prop_path=<1>',
  ]);
  assert.ok(logs().includes('body_replace_result=2'));
  assert.equal(s.upstream.bodyText, 'hello world');
  assert.equal(s.upstream.header('x-body-size'), undefined);
  assert.equal(s.upstream.header('x-mixed-case'), 'A');
  assert.equal(s.upstream.endStream, true);
  assert.equal(host.traps.length, 0);
});

test('StopIteration WITHOUT allow_on_headers_stop_iteration: becomes StopAllIterationAndWatermark, no body callbacks', async () => {
  const { w, logs } = await plugin('headers=stop;body=buffer;body_header=yes');
  const s = w.newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat', ':authority': 'h' });
  s.requestBody('hello ').requestBody('world', true);
  assert.deepEqual(s.callbacks, ['on_context_create', 'on_request_headers']);
  assert.equal(s.requestPaused, true);
  assert.equal(s.state, 'request-paused');
  assert.equal(s.upstream.headers, null);
  assert.equal(logs().filter((m) => m.startsWith('req_body')).length, 0);
  assert.throws(() => w.requestSync(REQ), /stalled: request paused by the filter/);
  s.end();
  assert.equal(s.state, 'reset');
  assert.deepEqual(s.callbacks.slice(-3), ['on_log', 'on_done', 'on_delete']);
});

test('StopIteration WITH the option: body accumulates, headers stay writable and the change reaches upstream', async () => {
  const { w, logs } = await plugin('headers=stop;body=buffer;body_header=yes', { allowOnHeadersStopIteration: true });
  const s = w.newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat', ':authority': 'h' });
  s.requestBody('hell');
  assert.equal(s.upstream.headers, null, 'headers held while the filter buffers');
  s.requestBody('o wo').requestBody('rld', true);
  assert.deepEqual(logs().filter((m) => m.startsWith('req_body')), [
    'req_body size=4 status_size=4 eos=0 bytes=hell path=/v1/chat prop_path=/v1/chat',
    'req_body size=8 status_size=8 eos=0 bytes=hello wo path=/v1/chat prop_path=/v1/chat',
    'req_body size=11 status_size=11 eos=1 bytes=hello world path=/v1/chat prop_path=/v1/chat',
  ]);
  assert.ok(logs().includes('body_replace_result=0'));
  assert.equal(s.upstream.header('x-body-size'), '11');
  assert.equal(s.upstream.bodyText, 'hello world');
  assert.equal(s.upstream.endStream, true);
});

test('StopAllIterationAndBuffer: body is buffered without callbacks; over the buffer limit -> 413 through the encoder path', async () => {
  const { w, logs } = await plugin('headers=stopall_buffer', { bufferLimitBytes: 8 });
  const r = w.requestSync({ ...REQ, chunkSize: 4 });
  assert.equal(r.kind, 'local');
  if (r.kind !== 'local') return;
  assert.equal(r.status, 413);
  assert.equal(r.bodyText, 'Payload Too Large');
  assert.equal(r.details, 'request_payload_too_large');
  assert.equal(r.header('content-type'), 'text/plain');
  assert.equal(r.header('content-length'), '17');
  assert.equal(r.stream.upstream.headers, null);
  assert.deepEqual(r.stream.callbacks, [
    'on_context_create', 'on_request_headers', 'on_response_headers', 'on_response_body', 'on_log', 'on_done', 'on_delete',
  ]);
  assert.ok(logs().includes('resp_headers n=3 eos=0 status=413 req_path=/v1/chat'));
});

test('StopAllIterationAndWatermark over the limit only applies backpressure (no 413)', async () => {
  const { w } = await plugin('headers=stopall_watermark', { bufferLimitBytes: 8 });
  const s = w.newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/', ':authority': 'h' });
  s.requestBody('hell').requestBody('o wo').requestBody('rld', true);
  assert.equal(s.localReply, null);
  assert.equal(s.backpressure, true);
  assert.equal(s.requestPaused, true);
  assert.deepEqual(s.callbacks, ['on_context_create', 'on_request_headers']);
});

test('body StopIterationAndBuffer past the limit: 413 before the next callback; the forwarded headers are reset upstream', async () => {
  const { w, logs } = await plugin('headers=continue;body=buffer_forever', { bufferLimitBytes: 8 });
  const r = w.requestSync({ ...REQ, chunkSize: 4 });
  assert.equal(r.kind, 'local');
  assert.equal(r.kind === 'local' && r.status, 413);
  assert.deepEqual(logs().filter((m) => m.startsWith('req_body')).map((m) => m.split(' ')[1]), ['size=4', 'size=8']);
  assert.equal(r.stream.upstream.reset, true);
});

test('set_buffer_bytes: (0,size) replaces, (0,0) prepends, (size,_) appends, mid-buffer is BadArgument, (0,n,"") drains', async () => {
  const cases: Array<[string, string, string]> = [
    ['replace', '0', 'REPLACED'],
    ['prepend', '0', 'PRE-hello world'],
    ['append', '0', 'hello world-POST'],
    ['mid', '2', 'hello world'],
    ['drain2', '0', 'llo world'],
  ];
  for (const [op, code, upstream] of cases) {
    const { w, logs } = await plugin(`headers=stop;body=buffer;set_buffer=${op}`, { allowOnHeadersStopIteration: true });
    const r = w.requestSync(REQ);
    assert.equal(r.kind, 'upstream', op);
    if (r.kind !== 'upstream') continue;
    assert.equal(r.bodyText, upstream, op);
    assert.ok(logs().includes(`set_buffer=${code} now=${upstream}`), `${op}: ${logs().join(' | ')}`);
  }
  // The same rules apply to an unbuffered chunk.
  const { w } = await plugin('headers=continue;set_buffer=append');
  const r = w.requestSync({ ...REQ, chunkSize: 6 });
  assert.equal(r.kind === 'upstream' && r.bodyText, 'hello world-POST');
});

test('send_local_response from on_request_headers: status, body, extra headers, details; encoder callbacks see it', async () => {
  const { w, logs } = await plugin('headers=local;resp=add');
  const r = w.requestSync(REQ);
  assert.equal(r.kind, 'local');
  if (r.kind !== 'local') return;
  assert.equal(r.status, 403);
  assert.equal(r.bodyText, 'denied by filter');
  assert.equal(r.details, 'denied_by_policy'); // Envoy replaces whitespace in details
  assert.deepEqual(r.headers, [
    [':status', '403'], ['x-reason', 'policy'], ['content-length', '16'], ['content-type', 'text/plain'], ['x-filter', 'seen'],
  ]);
  assert.equal(r.stream.upstream.headers, null);
  assert.ok(!r.stream.callbacks.includes('on_request_body'), 'request path stops after the local reply');
  assert.ok(logs().includes('resp_headers n=4 eos=0 status=403 req_path=/v1/chat'));
});

test('local reply from a body callback: before headers went upstream nothing is forwarded; after, upstream is reset', async () => {
  const held = await plugin('headers=stop;body=buffer;reject_word=world', { allowOnHeadersStopIteration: true });
  const r1 = held.w.requestSync(REQ);
  assert.equal(r1.kind === 'local' && r1.status, 400);
  assert.equal(r1.kind === 'local' && r1.details, 'bad_body');
  assert.equal(r1.stream.upstream.headers, null);
  const streaming = await plugin('headers=continue;reject_word=world');
  const r2 = streaming.w.requestSync(REQ);
  assert.equal(r2.kind === 'local' && r2.bodyText, 'rejected body');
  assert.notEqual(r2.stream.upstream.headers, null);
  assert.equal(r2.stream.upstream.reset, true);
});

test('out-of-range header status stops everything; ContinueAndEndStream (2) is treated as Continue', async () => {
  const bogus = await plugin('headers=bogus');
  const s = bogus.w.newHttpStream();
  s.requestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'h' }, false);
  s.requestBody('x', true);
  assert.equal(s.requestPaused, true);
  assert.equal(s.upstream.headers, null);
  const cae = await plugin('headers=continue_and_end');
  const r = cae.w.requestSync(REQ);
  assert.equal(r.kind === 'upstream' && r.bodyText, 'hello world');
  assert.ok(r.stream.callbacks.includes('on_request_body'));
});

test('trailers: delivered to on_request_trailers and forwarded; trailers added in the last body callback reach upstream', async () => {
  const { w, logs } = await plugin('headers=continue');
  const r = w.requestSync({ ...REQ, trailers: { 'X-T': '1' } });
  assert.ok(logs().includes('req_trailers n=1 pairs=x-t=1'));
  assert.equal(r.kind, 'upstream');
  if (r.kind !== 'upstream') return;
  assert.deepEqual(r.trailers, [['x-t', '1']]);
  assert.equal(r.bodyText, 'hello world');

  const add = await plugin('headers=continue;add_trailer=yes');
  const r2 = add.w.requestSync(REQ);
  assert.ok(add.logs().includes('add_trailer=0'));
  assert.deepEqual(r2.kind === 'upstream' && r2.trailers, [['x-trailer', 'from-body']]);
  assert.ok(!r2.stream.callbacks.includes('on_request_trailers'), 'added trailers skip the filter that added them');
});

test('end of stream: on_log (access-log maps readable) then on_done then on_delete', async () => {
  const { w, logs } = await plugin('headers=continue');
  const r = w.requestSync({ ...REQ, response: { status: 201, body: 'created' } });
  assert.deepEqual(r.stream.callbacks.slice(-3), ['on_log', 'on_done', 'on_delete']);
  const tail = logs().slice(-3);
  assert.deepEqual(tail, ['on_log path=/v1/chat status=201 prop_path=/v1/chat code=via_upstream', 'on_done', 'on_delete']);
  assert.equal(r.kind === 'upstream' && r.response.bodyText, 'created');
  assert.equal(r.kind === 'upstream' && r.status, 201);
  assert.equal(w.vm.contexts.has(r.stream.contextId), false, 'stream context is gone afterwards');
});

test('header maps: lower-cased keys, pseudo-headers first, size in bytes (not entries), multiple values', async () => {
  const { w, logs } = await plugin('headers=continue;add_req_header=late');
  const r = w.requestSync({ path: '/p', headers: [['X-Multi', 'a'], ['x-multi', 'b'], ['Accept', '*/*']], connectionManagerHeaders: false });
  assert.equal(r.kind, 'upstream');
  if (r.kind !== 'upstream') return;
  assert.deepEqual(r.headers.map(([k]) => k), [':method', ':path', ':authority', ':scheme', 'x-multi', 'x-multi', 'accept', 'x-added']);
  const before = r.headers.filter(([k]) => k !== 'x-added');
  const bytes = before.reduce((n, [k, v]) => n + k.length + v.length, 0);
  assert.ok(logs().includes(`req_headers n=${before.length} eos=1 path=/p bytes=${bytes} prop_path=/p`), logs().join('\n'));
});

test('response path: body buffering accumulates; a response over the limit after headers went out resets the stream', async () => {
  const { w, logs } = await plugin('headers=continue;resp_body=buffer');
  const r = w.requestSync({ path: '/', response: { status: 200, body: 'abcdefgh', chunkSize: 3 } });
  assert.equal(r.kind === 'upstream' && r.response.bodyText, 'abcdefgh');
  assert.deepEqual(logs().filter((m) => m.startsWith('resp_body')).map((m) => m.split(' ')[1]), ['size=3', 'size=6', 'size=8']);

  const small = await plugin('headers=continue;resp_body=buffer', { bufferLimitBytes: 4 });
  const s = small.w.newHttpStream();
  s.requestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'h' }, true);
  s.responseHeaders({ ':status': '200' }).responseBody('abc').responseBody('def');
  assert.equal(s.downstream.reset, true);
  assert.equal(s.localReply, null);
  assert.equal(s.done, true);
});

test('request() (async) gives the same result as requestSync()', async () => {
  const { w } = await plugin('headers=stop;body=buffer;body_header=yes', { allowOnHeadersStopIteration: true });
  const r = await w.request({ ...REQ, response: async (up) => ({ status: 200, body: `echo:${up.bodyText}` }) });
  assert.equal(r.kind, 'upstream');
  if (r.kind !== 'upstream') return;
  assert.equal(r.header('x-body-size'), '11');
  assert.equal(r.response.bodyText, 'echo:hello world');
});

test('properties on a stream: header map lookups join repeated values, integers are 8-byte little-endian', async () => {
  const { w, logs } = await plugin('headers=continue;props=yes');
  const r = w.requestSync({ method: 'PUT', body: 'abc', headers: [['x-multi', 'a'], ['x-multi', 'b']], response: { status: 202, body: 'done!' } });
  assert.equal(r.kind, 'upstream');
  assert.ok(logs().includes(`prop_hdr=a,b method=PUT plugin=epp conn=${r.stream.env.connectionId}`), logs().join('\n'));
  // request.size comes from content-length; response.size is the body bytes sent.
  assert.ok(logs().includes('log_props code=202 size=3 sent=5'), logs().join('\n'));
});
