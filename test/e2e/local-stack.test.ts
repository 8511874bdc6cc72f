// The local stack end to end, time-scaled: simulated vLLM pods, build/sidecar.js in file mode, and
// the gateway with build/wasm-epp.wasm under the proxy-wasm host. The pods bind their own loopback
// addresses (127.0.0.21-25) and every port is ephemeral, so this runs beside `npm start`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { seedRound1, seedRound2 } from '../fixtures/seed-prefix-check.ts';
import { startLocalStack, waitUntilRouting, type Stack } from '../../scripts/local-stack/stack.ts';

const HOSTS = ['127.0.0.21', '127.0.0.22', '127.0.0.23', '127.0.0.24', '127.0.0.25'];
let stack: Stack;
const handled: Array<Record<string, string>> = [];

function chatBody(content: string, extra: Record<string, unknown> = {}) {
  return JSON.stringify({ model: '/model/qwen', max_completion_tokens: 20, temperature: 0, messages: [{ role: 'user', content }], ...extra });
}

async function post(base: string, path: string, body: string): Promise<{ status: number; text: string }> {
  const r = await fetch(`${base}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  return { status: r.status, text: await r.text() };
}

before(async () => {
  stack = await startLocalStack({
    timeScale: 50, podHosts: HOSTS, podPort: 8000, plainPort: 0, inferencePort: 0, pushPort: 0, strategy: 'PREFIX_CACHE', dataPlane: 'host',
    onGatewayLog: (e) => {
      if (e.message.startsWith('Request Handled')) handled.push(Object.fromEntries(e.message.split(' ').slice(2).map((kv) => kv.split('=') as [string, string])));
    },
  });
  await waitUntilRouting(stack.gateway.inferenceUrl);
});

after(async () => {
  await stack?.stop();
});

test('both listeners answer the seeds\' chat completion', async () => {
  for (const base of [stack.gateway.plainUrl, stack.gateway.inferenceUrl]) {
    const r = await post(base, '/v1/chat/completions', chatBody('Write as if you were a critic: San Francisco'));
    assert.equal(r.status, 200, `${base}: ${r.text}`);
    const j = JSON.parse(r.text);
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.model, '/model/qwen');
    assert.equal(j.usage.completion_tokens, 20);
  }
  const line = handled.at(-1)!;
  assert.equal(line.model, '/model/qwen');
  assert.match(line.pod, /^qwen-[0-4]$/);
  assert.match(line.endpoint, /^127\.0\.0\.2[1-5]:8000$/);
});

test('a streaming chat completion passes through the filter chunk by chunk', async () => {
  const r = await fetch(`${stack.gateway.inferenceUrl}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: chatBody('Tell a story', { stream: true, stream_options: { include_usage: true } }),
  });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
  const text = await r.text();
  const events = text.split('\n\n').filter((e) => e.startsWith('data: '));
  assert.equal(events.at(-1), 'data: [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
  assert.ok(chunks.length >= 20, `one chunk per token at least: ${chunks.length}`);
  assert.equal(chunks.at(-1).usage.completion_tokens, 20);
  assert.equal(chunks[0].object, 'chat.completion.chunk');
});

test("the seeds' round 1 and round 2 land on one pod", async () => {
  const round1 = seedRound1('/model/qwen');
  const round2 = seedRound2('/model/qwen');
  const before = handled.length;
  assert.equal((await post(stack.gateway.inferenceUrl, '/v1/chat/completions', round1)).status, 200);
  assert.equal((await post(stack.gateway.inferenceUrl, '/v1/chat/completions', round2)).status, 200);
  const [l1, l2] = handled.slice(before);
  assert.equal(l1.strategy, 'PREFIX_CACHE');
  assert.equal(l2.pod, l1.pod, `round 2 went to ${l2.pod}, round 1 to ${l1.pod}`);
  const [matched] = l2.prefix_blocks.split('/').map(Number);
  assert.ok(matched >= 5, `round 2 matched round 1's blocks: ${l2.prefix_blocks}`);
});

// Envoy's /stats/prometheus, parsed: each series (name and labels) and its value.
async function scrape(): Promise<{ series: Map<string, number>; text: string; type: string | null }> {
  const r = await fetch(`${stack.gateway.adminUrl}/stats/prometheus`);
  const text = await r.text();
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    series.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return { series, text, type: r.headers.get('content-type') };
}

// The sum of a family's series over all their labels.
function family(series: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [k, v] of series) if (k === name || k.startsWith(`${name}{`)) sum += v;
  return sum;
}

// Scrapes once the histograms caught up with the counters (Envoy merges histograms at each stats
// flush, every 5 s; counters are live): every routed request has its TTFT recorded, or ended in
// an error or cut short.
async function settled(): Promise<Map<string, number>> {
  const deadline = Date.now() + 8000;
  while (true) {
    const { series } = await scrape();
    const ended = family(series, 'inference_objective_request_ttft_ms_count') + family(series, 'inference_objective_request_error_total') + family(series, 'wasm_epp_responses_incomplete');
    if (ended >= family(series, 'inference_objective_request_total') || Date.now() > deadline) return series;
    await new Promise((r) => setTimeout(r, 250));
  }
}

test("the admin interface shows the answers' TTFT histograms and token counters, matching the usage the pods returned", async () => {
  const url = stack.gateway.inferenceUrl;
  const before = await settled();
  const usages: Array<{ prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens: number } | null }> = [];
  // The seeds' requests, and their prefix check pair (the second hits the first's cache).
  for (const body of [chatBody('Write as if you were a critic: San Francisco'), chatBody('Write as if you were a critic: Los Angeles'), seedRound1('/model/qwen'), seedRound2('/model/qwen')]) {
    const r = await post(url, '/v1/chat/completions', body);
    assert.equal(r.status, 200, r.text);
    // The seeds' pair streams with include_usage: its usage is in the last data event.
    const data = r.text.split('\n').filter((l) => l.startsWith('data: {'));
    usages.push(data.length > 0 ? JSON.parse(data[data.length - 1].slice(6)).usage : JSON.parse(r.text).usage);
  }
  // A streaming chat with its usage chunk.
  const s = await post(url, '/v1/chat/completions', chatBody('Write as if you were a critic: Hangzhou', { stream: true, stream_options: { include_usage: true } }));
  assert.equal(s.status, 200);
  const events = s.text.split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)));
  const last = events[events.length - 1];
  assert.deepEqual(last.choices, []);
  usages.push(last.usage);
  const sum = (f: (u: (typeof usages)[number]) => number) => usages.reduce((a, u) => a + f(u), 0);
  const cached = sum((u) => u.prompt_tokens_details?.cached_tokens ?? 0);
  assert.ok(cached > 0, "round 2 reported its cache hit (the stack's pods run with --enable-prompt-tokens-details)");
  const after = await settled();
  const delta = (name: string) => family(after, name) - family(before, name);
  assert.equal(delta('wasm_epp_prompt_tokens_total'), sum((u) => u.prompt_tokens));
  assert.equal(delta('wasm_epp_completion_tokens_total'), sum((u) => u.completion_tokens));
  assert.equal(delta('wasm_epp_cached_tokens_total'), cached);
  assert.equal(delta('wasm_epp_endpoint_prompt_tokens_total'), sum((u) => u.prompt_tokens));
  assert.equal(delta('inference_objective_request_total'), usages.length);
  assert.equal(delta('inference_objective_request_ttft_ms_count'), usages.length);
  assert.equal(delta('inference_objective_input_tokens_count'), usages.length);
  assert.equal(delta('wasm_epp_endpoint_ttft_ms_count'), usages.length);
  const { text, type } = await scrape();
  assert.match(type ?? '', /^text\/plain/);
  assert.match(text, /^# TYPE inference_objective_request_ttft_ms histogram$/m);
  assert.match(text, /^inference_objective_request_ttft_ms_bucket\{model_name="\/model\/qwen",target_model_name="\/model\/qwen",le="\+Inf"\} \d+$/m);
  assert.match(text, /^# TYPE wasm_epp_prompt_tokens_total counter$/m);
  assert.match(text, /^wasm_epp_endpoint_picks_total\{model_server_pod="[^"]+"\} \d+$/m);
});

test('a pod killed mid-run stops receiving traffic within one push; only its requests in flight fail', async () => {
  const victim = stack.pods[2];
  const url = stack.gateway.inferenceUrl;
  // Load: long requests in flight on every pod, unique prompts so the load decides.
  const inflight = Array.from({ length: 15 }, (_, i) => post(url, '/v1/completions', JSON.stringify({ model: '/model/qwen', prompt: `story ${i} `.repeat(20 + i), max_tokens: 400 })));
  await new Promise((r) => setTimeout(r, 150));
  const killedAt = handled.length;
  victim.pod.kill();
  const onVictimBefore = handled.slice(0, killedAt).filter((l) => l.pod === victim.name).length;
  const results = await Promise.all(inflight);
  const failed = results.filter((r) => r.status !== 200).length;
  assert.ok(failed <= onVictimBefore, `only requests in flight on the killed pod fail: ${failed} failed, ${onVictimBefore} were routed there`);
  // The sidecar marks the pod unreachable after two failed scrapes (~100-200 ms) and pushes at once.
  await new Promise((r) => setTimeout(r, 600));
  const after = handled.length;
  const later = await Promise.all(Array.from({ length: 30 }, (_, i) => post(url, '/v1/completions', JSON.stringify({ model: '/model/qwen', prompt: `after ${i} `.repeat(10), max_tokens: 5 }))));
  assert.deepEqual(later.map((r) => r.status), later.map(() => 200), 'every request after the push succeeds');
  const pods = handled.slice(after).map((l) => l.pod);
  assert.equal(pods.length, 30);
  assert.ok(!pods.includes(victim.name), `no request reached the killed pod: ${pods.join(',')}`);
  assert.deepEqual(stack.gateway.host?.traps, []);
});
