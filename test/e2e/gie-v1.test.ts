// `npm start -- --example gie-v1` end to end, time-scaled: the example's v1 InferencePool with its
// InferenceObjectives and InferenceModelRewrite, read by build/sidecar.js in file mode, simulated
// vLLM pods, and the gateway with build/wasm-epp.wasm under the proxy-wasm host. The seeds' requests
// are served and logged as with the v1alpha2 pool; objective headers pick the band; the rewrite's
// alias reaches the pods as the served model. Pods bind 127.0.0.91-93, every port is ephemeral.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { seedRound1, seedRound2 } from '../fixtures/seed-prefix-check.ts';
import { startLocalStack, waitUntilRouting, type Stack } from '../../scripts/local-stack/stack.ts';

const HOSTS = ['127.0.0.91', '127.0.0.92', '127.0.0.93'];
let stack: Stack;
const handled: Array<Record<string, string>> = [];

function chatBody(content: string, model = '/model/qwen') {
  return JSON.stringify({ model, max_completion_tokens: 20, temperature: 0, messages: [{ role: 'user', content }] });
}

async function post(body: string, headers: Record<string, string> = {}, base = stack.gateway.inferenceUrl): Promise<{ status: number; text: string; line?: Record<string, string> }> {
  const before = handled.length;
  const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  const text = await r.text();
  return { status: r.status, text, line: handled.length > before ? handled.at(-1) : undefined };
}

before(async () => {
  stack = await startLocalStack({
    example: 'gie-v1', timeScale: 50, podHosts: HOSTS, plainPort: 0, inferencePort: 0, pushPort: 0, dataPlane: 'host',
    onGatewayLog: (e) => {
      if (e.message.startsWith('Request Handled')) handled.push(Object.fromEntries(e.message.split(' ').slice(2).map((kv) => kv.split('=') as [string, string])));
    },
  });
  await waitUntilRouting(stack.gateway.inferenceUrl);
});

after(async () => {
  await stack?.stop();
});

test("the v1 pool serves the seeds' chat completion on both listeners, with the seeds' Request Handled line on the inference listener", async () => {
  for (const base of [stack.gateway.plainUrl, stack.gateway.inferenceUrl]) {
    const r = await post(chatBody('Write as if you were a critic: San Francisco'), {}, base);
    assert.equal(r.status, 200, `${base}: ${r.text}`);
    const j = JSON.parse(r.text);
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.model, '/model/qwen');
    if (base === stack.gateway.plainUrl) continue; // the plain listener has no picker
    assert.ok(r.line, 'a Request Handled line');
    assert.equal(r.line.model, '/model/qwen');
    assert.match(r.line.pod, /^vllm-qwen-[0-2]$/);
    assert.match(r.line.endpoint, /^127\.0\.0\.9[1-3]:8000$/);
    assert.equal(r.line.strategy, 'PREFIX_CACHE');
    assert.equal(r.line.criticality, 'Standard', 'no objective: priority 0');
  }
});

test("the seeds' round 1 and round 2 land on one pod", async () => {
  const r1 = await post(seedRound1('/model/qwen'));
  const r2 = await post(seedRound2('/model/qwen'));
  assert.equal(r1.status, 200, r1.text);
  assert.equal(r2.status, 200, r2.text);
  assert.equal(r2.line!.pod, r1.line!.pod, `round 2 went to ${r2.line!.pod}, round 1 to ${r1.line!.pod}`);
  assert.ok(Number(r2.line!.prefix_blocks.split('/')[0]) >= 5, `round 2 matched round 1's blocks: ${r2.line!.prefix_blocks}`);
});

test('objective headers pick the band: priority 100 Critical, unset Standard, -10 Sheddable; an unknown name changes nothing', async () => {
  const cases: Array<[Record<string, string>, string, string | undefined]> = [
    [{ 'x-gateway-inference-objective': 'interactive' }, 'Critical', 'interactive'],
    [{ 'x-gateway-inference-objective': 'standard' }, 'Standard', 'standard'],
    [{ 'x-gateway-inference-objective': 'batch' }, 'Sheddable', 'batch'],
    [{ 'x-llm-d-inference-objective': 'batch', 'x-gateway-inference-objective': 'interactive' }, 'Sheddable', 'batch'],
    [{ 'x-gateway-inference-objective': 'no-such-objective' }, 'Standard', undefined],
  ];
  for (const [headers, band, objective] of cases) {
    const r = await post(chatBody('Write as if you were a critic: Los Angeles'), { ...headers, 'x-gateway-inference-fairness-id': 'tenant-a' });
    assert.equal(r.status, 200, `${JSON.stringify(headers)}: ${r.text}`);
    assert.equal(r.line!.criticality, band, JSON.stringify(headers));
    assert.equal(r.line!.objective, objective, JSON.stringify(headers));
  }
});

test("the rewrite's alias: model qwen is sent to the pods as /model/qwen", async () => {
  const r = await post(chatBody('Write as if you were a critic: Hangzhou', 'qwen'));
  assert.equal(r.status, 200, r.text);
  assert.equal(JSON.parse(r.text).model, '/model/qwen', 'the pod served the rewritten model');
  assert.equal(r.line!.model, 'qwen');
  assert.equal(r.line!.target, '/model/qwen');
  assert.equal(r.line!.unknown_model, undefined);
});
