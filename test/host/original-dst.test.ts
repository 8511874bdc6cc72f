// proxy_http_call to an ORIGINAL_DST cluster as Envoy runs it (Context::httpCall, the async
// client, OriginalDstCluster::LoadBalancer): the call's own header picks the upstream, the three
// pseudo-headers are required, timeouts and resets come back as Envoy reports them, the answer
// arrives on the root context and outlives the stream, a root context can answer a stream whose
// request already went upstream, and cancelled calls never call back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFixture } from './fixtures/compile.ts';
import {
  ProxyWasmHost, parseIpPort, upstreamResetBeforeHeaders, type HttpCallHandler, type HttpCallRequest, type HttpStream,
  type PluginOptions, type HostOptions, FailState,
} from './index.ts';

const wasmP = compileFixture('dispatch');
const DEST = 'x-gateway-destination-endpoint';
const CLUSTER = { name: 'wasm_epp_original_dst', type: 'original_dst', httpHeaderName: DEST } as const;

async function setup(configuration = '', handler?: HttpCallHandler, hostOpts: HostOptions = {}, pluginOpts: Partial<PluginOptions> = {}) {
  const seen: HttpCallRequest[] = [];
  const host = new ProxyWasmHost({ clusters: [CLUSTER, 'static_cluster'], ...hostOpts });
  const p = host.loadPlugin({
    wasm: await wasmP,
    name: 'epp',
    configuration,
    httpCallHandler: (req) => {
      seen.push(req);
      return handler ? handler(req) : { status: 200, body: `served by ${req.target ?? req.cluster}` };
    },
    ...pluginOpts,
  });
  const logs = (prefix: string) => p.logs.filter((l) => l.message.startsWith(prefix)).map((l) => l.message);
  const open = (headers: Record<string, string>): HttpStream => {
    const s = p.worker(0).newHttpStream();
    s.requestHeaders({ ':method': 'POST', ':path': '/v1/completions', ':authority': 'gw', ...headers }, true);
    return s;
  };
  return { host, p, seen, logs, open };
}

test('parseIpPort follows Envoy: IP literals only, a decimal port <= 65535, v6 in brackets', () => {
  assert.equal(parseIpPort('10.0.0.7:8000'), '10.0.0.7:8000');
  assert.equal(parseIpPort('[fd00::7]:8000'), '[fd00::7]:8000');
  assert.equal(parseIpPort('10.0.0.7:+80'), '10.0.0.7:80');
  for (const bad of ['', '10.0.0.7', 'pod-a:8000', '10.0.0.7:70000', '10.0.0.7:', '[fd00::7]8000', 'fd00::7:8000', '10.0.0.7:80x', '010.0.0.7:80']) {
    assert.equal(parseIpPort(bad), null, bad);
  }
});

test('original_dst: the call goes to the ip:port in the first value of the cluster header on the call itself', async () => {
  const { host, seen, logs, open } = await setup();
  const s = open({ 'x-dest': '10.0.0.7:8000', 'x-dest2': '10.0.0.9:8000' });
  assert.equal(s.upstream.endStream, true, 'the request itself went on at once');
  await host.settle();
  assert.equal(seen.length, 1);
  assert.equal(seen[0].clusterType, 'original_dst');
  assert.equal(seen[0].target, '10.0.0.7:8000', 'only the first value is used');
  assert.equal(seen[0].header(DEST), '10.0.0.7:8000');
  assert.deepEqual(seen[0].headers.filter(([k]) => k === DEST).map(([, v]) => v), ['10.0.0.7:8000', '10.0.0.9:8000']);
  assert.equal(seen[0].header('content-length'), '14');
  assert.deepEqual(logs('http_call'), [`http_call ctx=${s.contextId} result=0 token=4`]);
  assert.deepEqual(logs('answer'), ['answer root=1 token=4 headers=1 status=200 body=served by 10.0.0.7:8000 pairs=:status=200 get_status=0:']);

  open({ 'x-dest': '[fd00::1]:30000' });
  await host.settle();
  assert.equal(seen[1].target, '[fd00::1]:30000');
});

test('original_dst without a usable header: no host, send() answers at once, InternalFailure and never a callback', async () => {
  const { host, seen, logs, open, p } = await setup();
  open({});
  open({ 'x-dest': 'pod-a:8000' });
  open({ 'x-dest': '10.0.0.7' });
  open({ 'x-dest': '10.0.0.7:65536' });
  await host.settle();
  host.advance(60_000);
  await host.settle();
  assert.deepEqual(logs('http_call').map((m) => m.replace(/ctx=\d+ /, '')), Array(4).fill('http_call result=10 token=0'));
  assert.deepEqual(logs('answer'), [], 'no callback, ever');
  assert.equal(seen.length, 0, 'nothing reached an upstream');
  assert.equal(host.metric('cluster.wasm_epp_original_dst.original_dst_host_invalid'), 3, 'present but unparseable values are counted');
  assert.equal(host.metric('cluster.wasm_epp_original_dst.upstream_cx_none_healthy'), 4);
  const warns = host.logs.filter((l) => l.source === 'host' && l.message.startsWith('original_dst_load_balancer'));
  assert.equal(warns.length, 4);
  assert.equal(warns[0].level, 3);
  // The next token continues the sequence: the failed calls consumed theirs.
  p.worker(0).newHttpStream().requestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'gw', 'x-dest': '10.0.0.7:8000' }, true);
  assert.match(logs('http_call').at(-1)!, /result=0 token=20$/);
});

test(':method, :path and :authority are required; the old string[] clusters still work; unknown cluster is BadArgument', async () => {
  const { host, seen, logs, open } = await setup();
  for (const h of [':method', ':path', ':authority']) open({ 'x-dest': '10.0.0.7:8000', 'x-omit': h });
  await host.settle();
  assert.deepEqual(logs('http_call').map((m) => m.replace(/ctx=\d+ /, '')), Array(3).fill('http_call result=2 token=0'));
  assert.equal(seen.length, 0);

  const st = await setup('cluster=static_cluster');
  st.open({});
  await st.host.settle();
  assert.equal(st.seen[0].clusterType, 'static');
  assert.equal(st.seen[0].target, undefined);
  assert.match(st.logs('answer')[0], /status=200 body=served by static_cluster/);

  const unknown = await setup('cluster=other');
  unknown.open({ 'x-dest': '10.0.0.7:8000' });
  assert.match(unknown.logs('http_call')[0], /result=2 token=0$/);

  // A plugin can declare its own clusters; they are looked up before the host's.
  const own = await setup('cluster=pd', undefined, { clusters: undefined }, { clusters: [{ name: 'pd', type: 'original_dst' }] });
  own.open({ 'x-dest': '10.0.0.7:8000' });
  assert.match(own.logs('http_call')[0], /result=10 token=0$/, "the default header is x-envoy-original-dst-host, not the call's x-gateway-destination-endpoint");
});

test('timeouts: 0 is none; a timeout before response headers is a 504 answer', async () => {
  const { host, logs, open, seen } = await setup('', () => new Promise(() => {}));
  open({ 'x-dest': '10.0.0.7:8000', 'x-timeout': '0' });
  host.drain();
  host.advance(10 * 24 * 3600 * 1000);
  assert.deepEqual(logs('answer'), [], 'no timeout: still waiting after ten days');
  assert.equal(seen[0].signal.aborted, false);

  open({ 'x-dest': '10.0.0.7:8000', 'x-timeout': '300000' });
  host.drain();
  host.advance(299_999);
  assert.deepEqual(logs('answer'), []);
  host.advance(1);
  assert.deepEqual(logs('answer'), ['answer root=1 token=8 headers=3 status=504 body=upstream request timeout pairs=:status=504;content-length=24;content-type=text/plain get_status=0:']);
  assert.equal(seen[1].signal.aborted, true, 'the handler learns that nobody waits any more');
  assert.equal(seen[0].signal.aborted, false);
});

test('resets: a failing handler after response headers is 0 headers and BrokenConnection "reset"; a refused connection is the router\'s 503', async () => {
  const { host, logs, open } = await setup('', (req) => {
    if (req.header(DEST) === '10.0.0.1:8000') return Promise.reject(new Error('socket hang up'));
    if (req.header(DEST) === '10.0.0.2:8000') return upstreamResetBeforeHeaders('remote connection failure, transport failure reason: delayed connect error: Connection refused');
    req.responseStarted();
    return new Promise(() => {});
  });
  open({ 'x-dest': '10.0.0.1:8000' });
  await host.settle();
  assert.deepEqual(logs('answer'), ['answer root=1 token=4 headers=0 status=<2> body=<1> pairs= get_status=11:reset']);
  open({ 'x-dest': '10.0.0.2:8000' });
  await host.settle();
  assert.match(logs('answer')[1], /headers=3 status=503 body=upstream connect error or disconnect\/reset before headers\. reset reason: remote connection failure.* get_status=11:$/);
  // Response headers came, then the timeout: the router can only reset.
  open({ 'x-dest': '10.0.0.3:8000', 'x-timeout': '100' });
  host.drain();
  host.advance(100);
  assert.match(logs('answer')[2], /headers=0 .* get_status=11:reset$/);
});

test('the call outlives its stream: the answer arrives on the root context; the gone stream is BadArgument', async () => {
  let answer!: (r: { status: number; body: string }) => void;
  for (const mode of ['local', 'continue']) {
    const { host, logs, open, p } = await setup(`on_answer=${mode}`, () => new Promise((r) => (answer = r)));
    const s = open({ 'x-dest': '10.0.0.7:8000' });
    host.drain();
    s.responseHeaders({ ':status': '200' }, true);
    assert.equal(s.done, true);
    assert.deepEqual(s.callbacks.slice(-2), ['on_done', 'on_delete'], 'the stream is gone');
    answer({ status: 500, body: 'prefill died' });
    await host.settle();
    assert.deepEqual(logs('answer').map((m) => m.split(' pairs=')[0]), ['answer root=1 token=4 headers=1 status=500 body=prefill died']);
    if (mode === 'local') assert.deepEqual(logs('local'), [`local ctx=${s.contextId} effective=2 send=0`], 'BadArgument, then the root context has nothing to answer');
    else assert.deepEqual(logs('continue'), [`continue ctx=${s.contextId} effective=2 continue=0`]);
    assert.equal(s.localReply, null, 'the stream kept the upstream response');
    assert.deepEqual(host.traps, []);
    assert.equal(p.worker(0).root.id, 1);
  }
});

test('a root context answers a stream whose request already went upstream: the upstream request is reset, the client gets the reply', async () => {
  let answer!: (r: object) => void;
  const { host, logs, open } = await setup('on_answer=local;local_if=fail', () => new Promise((r) => (answer = r)));
  const events: string[] = [];
  const s = open({ 'x-dest': '10.0.0.7:8000' });
  s.observer = {
    upstreamRequestComplete: () => events.push('request-complete'),
    upstreamReset: (x) => events.push(`upstream-reset:${x.upstreamAborted}`),
    downstream: (x) => events.push(`downstream:${x.downstream.header(':status')}:${x.done}`),
  };
  host.drain();
  assert.equal(s.upstream.endStream, true, 'the request is with the upstream, waiting for its response');
  assert.equal(s.state, 'open');
  answer({ status: 503, body: 'no' });
  await host.settle();
  assert.deepEqual(logs('local'), [`local ctx=${s.contextId} effective=0 send=0`]);
  assert.equal(s.done, true);
  assert.equal(s.localReply?.status, 502);
  assert.equal(s.localReply?.bodyText, '{"error":"prefill failed"}');
  assert.equal(s.localReply?.details, 'prefill_failed');
  assert.equal(s.downstream.header('x-wasm-epp-error'), 'prefill_failed');
  assert.equal(s.upstream.reset, true);
  assert.equal(s.upstreamAborted, 'local-reply');
  assert.deepEqual(events, ['upstream-reset:local-reply', 'downstream:502:false', 'downstream:502:true']);
  assert.deepEqual(s.callbacks.slice(-2), ['on_done', 'on_delete']);
  // A late upstream response is dropped.
  s.responseHeaders({ ':status': '200' }, true);
  assert.equal(s.localReply?.status, 502);

  // Once response headers have reached the client, all Envoy can do is reset the stream.
  const s2 = open({ 'x-dest': '10.0.0.8:8000' });
  host.drain();
  s2.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' });
  s2.responseBody('data: 1\n\n');
  answer({ status: 500 });
  await host.settle();
  assert.equal(s2.done, true);
  assert.equal(s2.downstream.reset, true);
  assert.equal(s2.downstream.header(':status'), '200');
  assert.equal(s2.upstreamAborted, 'local-reply');
  assert.equal(s2.localReply, null);

  // A 2xx answer leaves the stream alone.
  const s3 = open({ 'x-dest': '10.0.0.9:8000' });
  host.drain();
  answer({ status: 200 });
  await host.settle();
  assert.equal(s3.done, false);
  assert.equal(s3.upstreamAborted, null);
});

test('a held stream is resumed from the root context when its call answers', async () => {
  const { host, logs, open } = await setup('hold=yes;on_answer=continue', undefined, {}, { allowOnHeadersStopIteration: true });
  const s = open({ 'x-dest': '10.0.0.7:8000' });
  const complete: string[] = [];
  s.observer = { upstreamRequestComplete: () => complete.push('complete') };
  assert.equal(s.requestPaused, true);
  await host.settle();
  assert.deepEqual(logs('continue'), [`continue ctx=${s.contextId} effective=0 continue=0`]);
  assert.equal(s.upstream.endStream, true);
  assert.deepEqual(complete, ['complete'], 'the front hears that the request may go upstream now');
});

test('cancelled calls: the root context goes away (close) and pending calls end without a callback', async () => {
  const { host, logs, open, seen } = await setup('', () => new Promise(() => {}));
  open({ 'x-dest': '10.0.0.7:8000' });
  host.drain();
  assert.equal(seen[0].signal.aborted, false);
  host.close();
  assert.equal(seen[0].signal.aborted, true);
  assert.deepEqual(logs('root on_'), ['root on_done', 'root on_delete']);
  assert.deepEqual(logs('answer'), []);
});

test('cancelled calls: a root whose on_done returned false still gets answers until proxy_done, then the rest are cancelled', async () => {
  const answers: Array<(r: object) => void> = [];
  const { host, logs, open, seen } = await setup('done=later;done_on_answer=yes', () => new Promise((r) => answers.push(r)));
  open({ 'x-dest': '10.0.0.7:8000' });
  open({ 'x-dest': '10.0.0.8:8000' });
  host.drain();
  host.close();
  assert.deepEqual(logs('root on_'), ['root on_done'], 'delete waits for proxy_done');
  assert.equal(seen[0].signal.aborted, false);
  answers[0]({ status: 200, body: 'first' });
  await host.settle();
  assert.match(logs('answer')[0], /token=4 .*body=first/);
  assert.deepEqual(logs('proxy_done'), ['proxy_done=0']);
  assert.deepEqual(logs('root on_'), ['root on_done', 'root on_delete']);
  assert.equal(seen[1].signal.aborted, true, 'the second call died with the root context');
  answers[1]({ status: 200, body: 'second' });
  await host.settle();
  assert.equal(logs('answer').length, 1, 'no callback for the cancelled call');
});

test('a failed VM keeps its calls but gets no answers', async () => {
  const { host, logs, open, p, seen } = await setup('', () => ({ status: 200 }));
  open({ 'x-dest': '10.0.0.7:8000' });
  p.worker(0).vm.fail(FailState.RuntimeError, 'test failure');
  await host.settle();
  assert.equal(seen.length, 1);
  assert.deepEqual(logs('answer'), []);
});
