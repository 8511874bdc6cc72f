// `npm start -- --example sglang-pd` end to end, time-scaled: the example's simulated SGLang
// prefill and decode pods, build/sidecar.js reading the example's InferenceTrafficPolicy, and the
// gateway with build/wasm-epp.wasm under the proxy-wasm host, whose prefill calls go over HTTP to
// the prefill pods. Clients are the official `openai` package and plain fetch. The pods bind
// loopback addresses 127.0.0.61-65 and every port is ephemeral, so this runs beside `npm start`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startLocalStack, waitUntilRouting, type Stack } from '../../scripts/local-stack/stack.ts';

const HOSTS = ['127.0.0.61', '127.0.0.62', '127.0.0.63', '127.0.0.64', '127.0.0.65'];
const MODEL = '/models/Qwen3-32B';
let stack: Stack;
let client: OpenAI;
const handled: Array<Record<string, string>> = [];

before(async () => {
  stack = await startLocalStack({
    example: 'sglang-pd', timeScale: 50, podHosts: HOSTS, plainPort: 0, inferencePort: 0, pushPort: 0, dataPlane: 'host',
    onGatewayLog: (e) => {
      if (e.message.startsWith('Request Handled')) handled.push(Object.fromEntries(e.message.split(' ').slice(2).map((kv) => kv.split('=') as [string, string])));
    },
  });
  await waitUntilRouting(stack.gateway.inferenceUrl);
  client = new OpenAI({ baseURL: `${stack.gateway.inferenceUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 });
});

after(async () => {
  await stack?.stop();
});

const byName = (name: string) => stack.pods.find((p) => p.name === name)!;

// The handled line of the request a decode pod recorded with `rid` (found by its room).
function lineOf(rid: string): Record<string, string> {
  for (const p of stack.pods) {
    if (p.role !== 'decode') continue;
    const q = p.pod.pdRequests().find((r) => r.rid === rid);
    const line = q && handled.find((l) => l.room === q.room);
    if (line) return line;
  }
  assert.fail(`no Request Handled line for rid ${rid}`);
}

test('the example runs 2 prefill and 3 decode pods', () => {
  assert.deepEqual(stack.pods.map((p) => p.role).sort(), ['decode', 'decode', 'decode', 'prefill', 'prefill']);
});

test('the openai client gets a chat completion; the line names a decode pod and a prefill pod, which received the same room', async () => {
  const before = handled.length;
  const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hello, this is a test' }], max_tokens: 20 });
  assert.ok(r.choices[0].message.content && r.choices[0].message.content.length > 0);
  assert.ok(r.usage && r.usage.completion_tokens > 0);
  assert.equal(handled.length, before + 1);
  const line = handled.at(-1)!;
  const decode = byName(line.pod);
  const prefill = byName(line.prefill);
  assert.equal(decode.role, 'decode');
  assert.equal(prefill.role, 'prefill');
  const atDecode = decode.pod.pdRequests().find((q) => q.room === line.room);
  const atPrefill = prefill.pod.pdRequests().find((q) => q.room === line.room);
  assert.ok(atDecode, 'the decode pod got the room');
  assert.ok(atPrefill, 'the prefill pod got the same room');
  assert.equal(atDecode!.host, prefill.host);
  assert.equal(atPrefill!.host, prefill.host);
  assert.equal(atDecode!.port, 34000);
  assert.equal(atDecode!.rid, atPrefill!.rid);
});

test('the openai client streams a chat completion through the P/D pair', async () => {
  const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Count to ten' }], max_tokens: 16, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let chunks = 0;
  let usage = 0;
  for await (const c of stream) {
    chunks++;
    text += c.choices[0]?.delta?.content ?? '';
    if (c.usage) usage = c.usage.completion_tokens;
  }
  assert.ok(chunks > 2, `${chunks} chunks`);
  assert.ok(text.length > 0);
  assert.equal(usage, 16);
  const line = handled.at(-1)!;
  assert.equal(byName(line.pod).role, 'decode');
  assert.equal(byName(line.prefill).role, 'prefill');
});

test('client-supplied bootstrap fields never reach a pod', async () => {
  const r = await fetch(`${stack.gateway.inferenceUrl}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, bootstrap_host: '203.0.113.9', bootstrap_port: 1, bootstrap_room: 424242, rid: 'client-rid-1' }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  const line = lineOf('client-rid-1');
  for (const p of stack.pods) {
    for (const q of p.pod.pdRequests()) {
      assert.notEqual(q.host, '203.0.113.9', `${p.name} saw the client's bootstrap_host`);
      assert.notEqual(q.room, '424242', `${p.name} saw the client's bootstrap_room`);
      assert.notEqual(q.port, 1);
    }
  }
  assert.equal(byName(line.prefill).pod.pdRequests().find((q) => q.rid === 'client-rid-1')?.host, byName(line.prefill).host);
});

test('a prefill pod killed mid-run: its requests fail within seconds with an OpenAI error, later requests avoid it', async () => {
  const victim = stack.pods.find((p) => p.role === 'prefill')!;
  victim.pod.kill();
  const ask = async (i: number) => {
    const t0 = Date.now();
    const r = await fetch(`${stack.gateway.inferenceUrl}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: `question ${i}` }], max_tokens: 4, rid: `kill-${i}` }),
    });
    return { status: r.status, error: r.headers.get('x-wasm-epp-error'), body: await r.text(), ms: Date.now() - t0 };
  };
  // Bursts right after the kill, spread over both prefill pods by load, until one reaches the dead
  // pod (the scorer may send a whole burst to the other when it looks less loaded).
  const burst: Array<Awaited<ReturnType<typeof ask>>> = [];
  let lines: Array<Record<string, string>> = [];
  for (let round = 0; round < 4 && !burst.some((r) => r.status !== 200); round++) {
    const from = handled.length;
    const size = 6 * (round + 1);
    burst.push(...(await Promise.all(Array.from({ length: size }, (_, i) => ask(100 * round + i)))));
    lines = lines.concat(handled.slice(from));
  }
  const failed = burst.filter((r) => r.status !== 200);
  assert.ok(failed.length >= 1, 'some of the bursts went to the dead prefill pod');
  for (const f of failed) {
    assert.equal(f.status, 502, f.body);
    assert.equal(f.error, 'prefill_failed');
    assert.equal(JSON.parse(f.body).error.code, 'prefill_failed');
    assert.ok(f.ms < 5000, `failed after ${f.ms} ms, not after the decode pod's 300 s wait`);
  }
  for (const r of burst.filter((x) => x.status === 200)) assert.equal(JSON.parse(r.body).object, 'chat.completion');
  // Every failed request had its prefill on the dead pod.
  assert.equal(lines.length, burst.length);
  assert.equal(lines.filter((l) => l.prefill === victim.name).length, failed.length);
  // Later requests avoid it.
  for (let i = 1000; i < 1010; i++) {
    const r = await ask(i);
    assert.equal(r.status, 200, r.body);
    assert.notEqual(handled.at(-1)!.prefill, victim.name);
  }
});
