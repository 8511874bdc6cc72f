// npm run bench:filter — the filter's time per request in V8 (the engine Envoy uses by default),
// through the proxy-wasm test host: chat bodies of 1 KB, 16 KB and 220 KB against pools of 8 and
// 256 endpoints, DEFAULT and PREFIX_CACHE, every request a new prompt (the prefix index has to
// record it: the expensive case). Next to it, the time to merely copy the body into the VM, the
// part no in-proxy filter can avoid. Prints a Markdown table.
//
// A second table prices watching answers (observe.enabled): the same requests (1 KB, 16 KB,
// 220 KB; 8 endpoints, PREFIX_CACHE) each followed by its answer, of 1 KB, 64 KB or 1 MB, either a
// JSON body in 16 KB chunks or an SSE stream of ~100-byte events, one per chunk, ending in a usage
// chunk; with observe on and off in two hosts, requests alternating between them so a noisy CPU
// weighs on both alike. Filter time and host calls are per request, answer included.
//
// A third table prices sharing with the gateway's other replicas (peers.enabled): the same
// requests with a 1 KB answer, peers on and off alternating; on the "on" side three other
// replicas' loads have been merged (the pick adds them) and every request journals its index
// records.
//
// Columns: "filter" is the wasm module's own time (its callbacks minus the host calls they
// make: what V8 runs identically inside Envoy); "host calls" is the time in the host functions it
// called, which this host implements in JavaScript and Envoy in C++; "total" is everything,
// including the host's stream emulation.
//
//   npm run bench:filter -- --quick      fewer iterations
//   npm run bench:filter -- --json       one JSON object on stdout

import { readFileSync } from 'node:fs';
import { ProxyWasmHost, type Plugin, type Worker } from '../test/host/index.ts';
import { endpoints, stateDocument } from '../test/fuzz/generators.ts';

const quick = process.argv.includes('--quick');
const json = process.argv.includes('--json');
const wasm = readFileSync(new URL('../build/wasm-epp.wasm', import.meta.url));
const TOKEN = 'bench-push-token-0123456789';
const enc = new TextEncoder();

// A chat body of about `size` bytes: a system prompt, some turns, a long user message.
function chatBody(size: number, variant: number): Uint8Array {
  const words = 'the quick brown fox jumps over the lazy dog while the model server keeps its kv cache warm '.split(' ');
  const filler = (n: number): string => {
    let s = '';
    let i = variant;
    while (s.length < n) s += words[i++ % words.length] + ' ';
    return s.slice(0, n);
  };
  const skeleton = { model: '/model/qwen', stream: true, max_tokens: 256, temperature: 0.2, messages: [
    { role: 'system', content: `Session ${variant}. You are a helpful assistant.` },
    { role: 'user', content: 'X' },
  ] };
  const overhead = JSON.stringify(skeleton).length - 1;
  skeleton.messages[1].content = filler(Math.max(1, size - overhead));
  return enc.encode(JSON.stringify(skeleton));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}

interface Row { body: string; endpoints: number; strategy: string; filter_median_us: number; filter_p99_us: number; host_calls_median_us: number; host_calls_per_request: number; total_median_us: number; copy_median_us: number; requests: number }

// A host with the routing and push filters, the state of `nEndpoints` pushed.
function gateway(nEndpoints: number, strategy: 'DEFAULT' | 'PREFIX_CACHE', extra: Record<string, unknown> = {}): { host: ProxyWasmHost; worker: Worker; push: Plugin } {
  const host = new ProxyWasmHost({ clock: 'real', logLevel: 'warn', profile: true });
  const env = { WASM_EPP_PUSH_TOKEN: TOKEN };
  const routing = host.loadPlugin({ wasm, rootId: 'wasm-epp', vmId: 'wasm-epp', name: 'route', env, allowOnHeadersStopIteration: true, bufferLimitBytes: 16 << 20,
    configuration: JSON.stringify({ pool: 'default/vllm-qwen-pool', log_requests: false, ...extra }) });
  const push = host.loadPlugin({ wasm, rootId: 'wasm-epp', vmId: 'wasm-epp', name: 'push', env, allowOnHeadersStopIteration: true,
    configuration: JSON.stringify({ accept_push: true }) });
  const eps = endpoints(nEndpoints);
  eps.forEach((e, i) => { e.waiting = i % 5; e.running = 10 + (i % 7); e.kv_usage = (i % 10) / 12; e.score = 1 - (i % 10) / 12; });
  const pushed = push.worker(0).requestSync({ method: 'POST', path: '/wasm-epp/v1/state', headers: { authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(stateDocument({ generatedAtMs: Date.now() + 3_600_000, endpoints: eps, strategy })) });
  if (pushed.status !== 204) throw new Error(`push failed: ${pushed.status}`);
  return { host, worker: routing.worker(0), push };
}

function run(size: number, label: string, nEndpoints: number, strategy: 'DEFAULT' | 'PREFIX_CACHE'): Row {
  const { host, worker } = gateway(nEndpoints, strategy);
  const profile = host.profile!;
  const iterations = Math.max(quick ? 200 : 1000, Math.floor((quick ? 2e7 : 1e8) / (size + 20_000)));
  const bodies = Array.from({ length: 64 }, (_, i) => chatBody(size, i));
  const digit = Buffer.from(bodies[0]).indexOf('Session ') + 8;
  const times: number[] = [];
  const own: number[] = [];
  const hostTimes: number[] = [];
  let calls = 0;
  const headers = { ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', ':scheme': 'http', 'content-type': 'application/json' };
  for (let i = 0; i < iterations + 50; i++) {
    // A new prompt every time: change the session number at the start of the body.
    const body = bodies[i % bodies.length];
    profile.reset();
    const t0 = process.hrtime.bigint();
    const s = worker.newHttpStream();
    s.requestHeaders({ ...headers, 'content-length': String(body.length) }, false);
    s.requestBody(body, true);
    s.responseHeaders({ ':status': '200' }, true);
    const t1 = process.hrtime.bigint();
    if (!s.upstream.header('x-gateway-destination-endpoint')) throw new Error(`not routed: ${s.localReply?.status} ${s.localReply?.bodyText}`);
    if (i >= 50) {
      times.push(Number(t1 - t0) / 1000);
      own.push(Number(profile.moduleNs - profile.hostNs) / 1000);
      hostTimes.push(Number(profile.hostNs) / 1000);
      calls += profile.hostCalls;
    }
    if (i % bodies.length === bodies.length - 1) for (const b of bodies) b[digit] = 0x30 + ((b[digit] - 0x30 + 1) % 10);
  }
  if (host.traps.length) throw new Error(`trap: ${host.traps[0].message}`);
  // The floor: copying the body into the VM (malloc + copy + free), as Envoy does for get_buffer_bytes.
  const vm = worker.vm;
  const free = (vm as unknown as { instance: WebAssembly.Instance }).instance.exports.free as (p: number) => void;
  const copies: number[] = [];
  const body = bodies[0];
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint();
    const p = vm.alloc(body.length);
    vm.memory.u8.set(body, p);
    free(p);
    copies.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  host.close();
  return {
    body: label, endpoints: nEndpoints, strategy, filter_median_us: median(own), filter_p99_us: pct(own, 0.99),
    host_calls_median_us: median(hostTimes), host_calls_per_request: Math.round(calls / iterations), total_median_us: median(times),
    copy_median_us: median(copies), requests: iterations,
  };
}

const rows: Row[] = [];
for (const [size, label] of [[1024, '1 KB'], [16 * 1024, '16 KB'], [220 * 1024, '220 KB']] as const) {
  for (const n of [8, 256]) {
    for (const strategy of ['DEFAULT', 'PREFIX_CACHE'] as const) {
      rows.push(run(size, label, n, strategy));
      if (!json) process.stderr.write('.');
    }
  }
}
// ---------------- answers: observe.enabled on and off ----------------

const PROMPT_TOKENS = 321;
const USAGE = { prompt_tokens: PROMPT_TOKENS, total_tokens: PROMPT_TOKENS + 64, completion_tokens: 64, prompt_tokens_details: { cached_tokens: 256 } };

// A non-streaming chat answer of `size` bytes (vLLM's shape, usage near the end), in 16 KB chunks.
function jsonAnswer(size: number): Uint8Array[] {
  const skeleton = { id: 'chatcmpl-bench', object: 'chat.completion', created: 1733450000, model: '/model/qwen',
    choices: [{ index: 0, message: { role: 'assistant', content: 'X', tool_calls: [] }, logprobs: null, finish_reason: 'stop', stop_reason: null }],
    usage: USAGE, prompt_logprobs: null, kv_transfer_params: null };
  const overhead = JSON.stringify(skeleton).length - 1;
  skeleton.choices[0].message.content = 'the model server keeps its kv cache warm '.repeat(Math.ceil(size / 40)).slice(0, Math.max(1, size - overhead));
  const body = enc.encode(JSON.stringify(skeleton));
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += 16 * 1024) chunks.push(body.subarray(at, at + 16 * 1024));
  return chunks;
}

// A streamed chat answer of about `size` bytes: ~100-byte events, one per chunk, then the usage
// chunk and [DONE].
function sseAnswer(size: number): Uint8Array[] {
  const event = (o: unknown): Uint8Array => enc.encode(`data: ${JSON.stringify(o)}\n\n`);
  const token = (i: number): Uint8Array => event({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: ` tok${i % 1000}` } }] });
  const last = [event({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', choices: [], usage: USAGE }), enc.encode('data: [DONE]\n\n')];
  const tail = last[0].length + last[1].length;
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (let i = 0; total + tail < size; i++) {
    const e = token(i);
    chunks.push(e);
    total += e.length;
  }
  return [...chunks, ...last];
}

interface Side { filter_median_us: number; filter_p99_us: number; host_calls_median_us: number; host_calls_per_request: number; total_median_us: number }
interface AnswerRow { body: string; answer: string; shape: 'json' | 'sse'; chunks: number; on: Side; off: Side; ratio: number; requests: number }

interface Alternating { profile: NonNullable<ProxyWasmHost['profile']>; worker: Worker; own: number[]; hostTimes: number[]; times: number[]; calls: number }

// Requests of about `size` bytes (a new prompt each time until the 64 bodies come back) through
// each side in turn, which side goes first alternating, each followed by `answer`. Records each
// side's times after `warmup`; at least `minimum` pairs and for at least `budgetMs` (at most
// `maximum`). Returns the pairs measured.
function alternate(sides: Alternating[], size: number, answer: Uint8Array[], responseHeaders: Record<string, string>, o: { minimum: number; maximum: number; budgetMs: number; warmup: number }): number {
  const bodies = Array.from({ length: 64 }, (_, i) => chatBody(size, i));
  const digit = Buffer.from(bodies[0]).indexOf('Session ') + 8;
  const answerBytes = answer.reduce((a, c) => a + c.length, 0);
  const headers = { ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', ':scheme': 'http', 'content-type': 'application/json' };
  const started = Date.now();
  let pairs = 0;
  for (let i = 0; ; i++) {
    if (i >= o.warmup && (pairs >= o.maximum || (pairs >= o.minimum && Date.now() - started >= o.budgetMs))) break;
    const body = bodies[i % bodies.length];
    for (const side of i % 2 === 0 ? sides : [...sides].reverse()) {
      side.profile.reset();
      const t0 = process.hrtime.bigint();
      const s = side.worker.newHttpStream();
      s.requestHeaders({ ...headers, 'content-length': String(body.length) }, false);
      s.requestBody(body, true);
      s.responseHeaders(responseHeaders, false);
      for (let k = 0; k < answer.length; k++) s.responseBody(answer[k], k === answer.length - 1);
      const t1 = process.hrtime.bigint();
      if (!s.upstream.header('x-gateway-destination-endpoint')) throw new Error(`not routed: ${s.localReply?.status} ${s.localReply?.bodyText}`);
      if (s.state !== 'complete' || s.downstream.bodyBuffer.length !== answerBytes) throw new Error(`answer not passed through: ${s.state}, ${s.downstream.bodyBuffer.length} bytes`);
      if (i >= o.warmup) {
        side.times.push(Number(t1 - t0) / 1000);
        side.own.push(Number(side.profile.moduleNs - side.profile.hostNs) / 1000);
        side.hostTimes.push(Number(side.profile.hostNs) / 1000);
        side.calls += side.profile.hostCalls;
      }
    }
    if (i >= o.warmup) pairs++;
    if (i % bodies.length === bodies.length - 1) for (const b of bodies) b[digit] = 0x30 + ((b[digit] - 0x30 + 1) % 10);
  }
  return pairs;
}

function runAnswers(size: number, label: string, answer: Uint8Array[], answerLabel: string, shape: 'json' | 'sse'): AnswerRow {
  const sides = [true, false].map((enabled) => {
    const { host, worker } = gateway(8, 'PREFIX_CACHE', { observe: { enabled } });
    return { enabled, host, worker, profile: host.profile!, own: [] as number[], hostTimes: [] as number[], times: [] as number[], calls: 0 };
  });
  // Pairs of requests, at least `minimum` and for at least `budgetMs` (at most `maximum`).
  const warmup = quick ? 10 : 30;
  // A JSON answer carries its length, as vLLM's and SGLang's do (a stream is chunked).
  const responseHeaders = { ':status': '200', 'content-type': shape === 'sse' ? 'text/event-stream' : 'application/json', ...(shape === 'json' ? { 'content-length': String(answer.reduce((a, c) => a + c.length, 0)) } : {}) };
  const pairs = alternate(sides, size, answer, responseHeaders, { minimum: quick ? 30 : 200, maximum: quick ? 2000 : 20_000, budgetMs: quick ? 300 : 3000, warmup });
  const out = sides.map((side): Side => {
    if (side.host.traps.length) throw new Error(`trap: ${side.host.traps[0].message}`);
    // Watching answers really read their usage (and not watching them did not).
    const prompt = side.host.metric('wasm_epp.prompt_tokens_total.model_name=/model/qwen;.target_model_name=/model/qwen;') ?? 0;
    if (prompt !== (side.enabled ? (warmup + pairs) * PROMPT_TOKENS : 0)) throw new Error(`observe.enabled ${side.enabled}: prompt_tokens_total ${prompt} after ${warmup + pairs} answers`);
    side.host.close();
    return { filter_median_us: median(side.own), filter_p99_us: pct(side.own, 0.99), host_calls_median_us: median(side.hostTimes),
      host_calls_per_request: Math.round(side.calls / pairs), total_median_us: median(side.times) };
  });
  return { body: label, answer: answerLabel, shape, chunks: answer.length, on: out[0], off: out[1], ratio: out[0].filter_median_us / out[1].filter_median_us, requests: pairs };
}

const answers: AnswerRow[] = [];
for (const [size, label] of [[1024, '1 KB'], [16 * 1024, '16 KB'], [220 * 1024, '220 KB']] as const) {
  for (const [answerSize, answerLabel] of [[1024, '1 KB'], [64 * 1024, '64 KB'], [1024 * 1024, '1 MB']] as const) {
    answers.push(runAnswers(size, label, jsonAnswer(answerSize), answerLabel, 'json'));
    if (!json) process.stderr.write('.');
    answers.push(runAnswers(size, label, sseAnswer(answerSize), answerLabel, 'sse'));
    if (!json) process.stderr.write('.');
  }
}

// ---------------- peers.enabled on and off ----------------

interface PeersRow { body: string; on: Side; off: Side; ratio: number; requests: number; journaled: number }

function runPeers(size: number, label: string): PeersRow {
  const sides = [true, false].map((enabled) => {
    const { host, worker, push } = gateway(8, 'PREFIX_CACHE', { peers: { enabled } });
    return { enabled, host, worker, push, profile: host.profile!, own: [] as number[], hostTimes: [] as number[], times: [] as number[], calls: 0 };
  });
  // Three other replicas' loads, taken from a gateway that has requests in flight on every pod.
  const other = gateway(8, 'PREFIX_CACHE', { peers: { enabled: true } });
  for (let k = 0; k < 24; k++) {
    const s = other.worker.newHttpStream();
    const body = chatBody(1024, k);
    s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', ':scheme': 'http', 'content-type': 'application/json', 'content-length': String(body.length) }, false);
    s.requestBody(body, true);
  }
  const read = other.push.worker(0).requestSync({ method: 'GET', path: '/wasm-epp/v1/share?pool=default/vllm-qwen-pool', headers: { authorization: `Bearer ${TOKEN}` } });
  // Its second section is the pool's LOAD section; its record is given under three replicas' names.
  const first = read.kind === 'local' ? 5 + new DataView(read.body.buffer, read.body.byteOffset).getUint32(1, true) : 0;
  const load = read.kind === 'local' ? read.body.subarray(first) : new Uint8Array();
  const poolLen = load[5];
  const record = load.subarray(5 + 1 + poolLen + 1);
  if (read.status !== 200 || record.length < 24) throw new Error(`no load record: ${read.status}`);
  for (const r of ['a', 'b', 'c']) {
    const pool = load.subarray(5, 5 + 1 + poolLen);
    const payload = Buffer.concat([pool, Buffer.from([1, r.charCodeAt(0)]), record]);
    const body = Buffer.concat([Buffer.from([2, 0, 0, 0, 0]), payload]);
    body.writeUInt32LE(payload.length, 1);
    const given = sides[0].push.worker(0).requestSync({ method: 'POST', path: '/wasm-epp/v1/share', headers: { authorization: `Bearer ${TOKEN}` }, body });
    if (given.status !== 204 || given.header('x-wasm-epp-load-records') !== '1') throw new Error(`load refused: ${given.status}`);
  }
  other.host.close();
  const answer = jsonAnswer(1024);
  const warmup = quick ? 10 : 30;
  const responseHeaders = { ':status': '200', 'content-type': 'application/json', 'content-length': String(answer.reduce((a, c) => a + c.length, 0)) };
  const pairs = alternate(sides, size, answer, responseHeaders, { minimum: quick ? 30 : 200, maximum: quick ? 2000 : 20_000, budgetMs: quick ? 300 : 3000, warmup });
  const journaled = sides[0].host.metric('wasm_epp.peer_records_journaled') ?? 0;
  // The bodies come back after 640 requests (64 bodies, 10 session digits): those teach nothing new.
  if (journaled < Math.min(pairs + warmup, 600)) throw new Error(`peers on: ${journaled} records journaled for ${pairs + warmup} requests`);
  const out = sides.map((side): Side => {
    if (side.host.traps.length) throw new Error(`trap: ${side.host.traps[0].message}`);
    side.host.close();
    return { filter_median_us: median(side.own), filter_p99_us: pct(side.own, 0.99), host_calls_median_us: median(side.hostTimes),
      host_calls_per_request: Math.round(side.calls / pairs), total_median_us: median(side.times) };
  });
  return { body: label, on: out[0], off: out[1], ratio: out[0].filter_median_us / out[1].filter_median_us, requests: pairs, journaled };
}

const peers: PeersRow[] = [];
for (const [size, label] of [[1024, '1 KB'], [16 * 1024, '16 KB'], [220 * 1024, '220 KB']] as const) {
  peers.push(runPeers(size, label));
  if (!json) process.stderr.write('.');
}

if (json) {
  console.log(JSON.stringify({ rows, answers, peers }));
} else {
  const fmt = (v: number): string => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
  console.log('\nwasm-epp filter, time per request in V8 (Node ' + process.version + '), one worker, every request a new prompt');
  console.log('filter = the module\'s own time; host calls = time in host functions (JavaScript here, C++ in Envoy); total = all, with the host\'s stream emulation\n');
  console.log('| body | endpoints | strategy | filter median (us) | filter p99 (us) | host calls median (us) | host calls / request | total median (us) | copy body into VM (us) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.body} | ${r.endpoints} | ${r.strategy} | ${fmt(r.filter_median_us)} | ${fmt(r.filter_p99_us)} | ${fmt(r.host_calls_median_us)} | ${r.host_calls_per_request} | ${fmt(r.total_median_us)} | ${fmt(r.copy_median_us)} |`);
  const at = (label: string): number => Math.max(...rows.filter((r) => r.body === label).map((r) => r.filter_median_us));
  console.log(`\ntargets: 16 KB <= 50 us median (worst row ${fmt(at('16 KB'))} us), 220 KB <= 1000 us median (worst row ${fmt(at('220 KB'))} us)`);
  console.log('for scale: the ext_proc endpoint picker spends ~260 ms of a 286 ms request streaming a 220 KB body to itself at 130 req/s (GIE issue 2928)');
  console.log('\nwatching answers: observe.enabled true against false, 8 endpoints, PREFIX_CACHE, per request with its answer (on and off alternate request by request)');
  console.log('json = one JSON body in 16 KB chunks; sse = ~100-byte events, one per chunk, the last with usage\n');
  console.log('| body | answer | shape | chunks | filter on (us) | filter off (us) | on/off | filter p99 on / off (us) | host calls / request on / off | host calls median on / off (us) |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const a of answers) {
    console.log(`| ${a.body} | ${a.answer} | ${a.shape} | ${a.chunks} | ${fmt(a.on.filter_median_us)} | ${fmt(a.off.filter_median_us)} | ${a.ratio.toFixed(2)} | ${fmt(a.on.filter_p99_us)} / ${fmt(a.off.filter_p99_us)} | ${a.on.host_calls_per_request} / ${a.off.host_calls_per_request} | ${fmt(a.on.host_calls_median_us)} / ${fmt(a.off.host_calls_median_us)} |`);
  }
  const worst = answers.reduce((w, a) => (a.ratio > w.ratio ? a : w));
  console.log(`\nworst on/off: ${worst.ratio.toFixed(2)} (${worst.body} body, ${worst.answer} ${worst.shape} answer)`);
  console.log('\nsharing with other replicas: peers.enabled true against false, 8 endpoints, PREFIX_CACHE, 1 KB JSON answer; on: three replicas\' loads merged, each new prompt journaled\n');
  console.log('| body | filter on (us) | filter off (us) | on/off | filter p99 on / off (us) | host calls / request on / off | host calls median on / off (us) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const a of peers) {
    console.log(`| ${a.body} | ${fmt(a.on.filter_median_us)} | ${fmt(a.off.filter_median_us)} | ${a.ratio.toFixed(2)} | ${fmt(a.on.filter_p99_us)} / ${fmt(a.off.filter_p99_us)} | ${a.on.host_calls_per_request} / ${a.off.host_calls_per_request} | ${fmt(a.on.host_calls_median_us)} / ${fmt(a.off.host_calls_median_us)} |`);
  }
}
