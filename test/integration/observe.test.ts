// The filter watches answers: timing, usage and cache hits become labelled Envoy metrics, and a
// bad or huge answer costs a bounded scan and never a trap.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateway, endpoints, DEST } from './harness.ts';
import type { HttpStream } from '../host/index.ts';

const MODEL = '/model/qwen';
const LABELS = `.model_name=${MODEL};.target_model_name=${MODEL};`;

function chatBody(content: string, stream = true): string {
  return JSON.stringify({ model: MODEL, stream, ...(stream ? { stream_options: { include_usage: true } } : {}), messages: [{ role: 'user', content }] });
}

// Sends a request through worker `w` and leaves the stream open at the upstream.
function send(g: Gateway, body: string, w = 0): HttpStream {
  const s = g.routing.worker(w).newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', ':scheme': 'http', 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }, false);
  s.requestBody(body, true);
  assert.ok(s.upstream.endStream, 'the request went upstream');
  return s;
}

function sse(events: unknown[]): string {
  return events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';
}

function streamAnswer(prompt: number, completion: number, cached?: number): string {
  const usage: Record<string, unknown> = { prompt_tokens: prompt, total_tokens: prompt + completion, completion_tokens: completion };
  if (cached) usage.prompt_tokens_details = { cached_tokens: cached };
  const chunks: unknown[] = [{ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] }];
  for (let i = 0; i < completion; i++) chunks.push({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'tok ' } }] });
  chunks.push({ id: 'c', object: 'chat.completion.chunk', choices: [], usage });
  return sse(chunks);
}

function metric(g: Gateway, name: string): number {
  return g.host.metric(name) ?? 0;
}

function histogram(g: Gateway, name: string): number[] {
  return (g.host.metricStat(name)?.samples ?? []).map(Number);
}

test('a streamed answer: TTFT, duration, tokens and the usage chunk, found across chunk boundaries', () => {
  const g = new Gateway({ workers: 1 });
  g.pushState(endpoints(2));
  const s = send(g, chatBody('hello there'));
  const pod = s.upstream.header(DEST) === '10.10.0.1:8000' ? 'qwen-0' : 'qwen-1';
  assert.equal(metric(g, `inference_objective_request_total${LABELS}`), 1);
  assert.equal(metric(g, `inference_objective_running_requests.model_name=${MODEL};`), 1);
  assert.equal(metric(g, `wasm_epp.endpoint_picks_total.model_server_pod=${pod};`), 1);
  g.host.advance(40);
  s.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
  g.host.advance(80);
  const text = streamAnswer(1234, 5, 1024);
  // Odd-sized chunks so the usage event is split between two of them.
  for (let i = 0; i < text.length; i += 37) {
    s.responseBody(text.slice(i, i + 37), i + 37 >= text.length);
    g.host.advance(10);
  }
  assert.equal(s.state, 'complete');
  assert.deepEqual(histogram(g, `inference_objective_request_ttft_ms${LABELS}`), [120]);
  assert.deepEqual(histogram(g, `wasm_epp.endpoint_ttft_ms.model_server_pod=${pod};`), [120]);
  const chunks = Math.ceil(text.length / 37);
  assert.deepEqual(histogram(g, `inference_objective_request_duration_ms${LABELS}`), [120 + (chunks - 1) * 10]);
  assert.deepEqual(histogram(g, `inference_objective_input_tokens${LABELS}`), [1234]);
  assert.deepEqual(histogram(g, `inference_objective_output_tokens${LABELS}`), [5]);
  assert.deepEqual(histogram(g, `inference_objective_prompt_cached_tokens${LABELS}`), [1024]);
  assert.deepEqual(histogram(g, `inference_objective_response_sizes${LABELS}`), [text.length]);
  assert.deepEqual(histogram(g, `inference_objective_normalized_time_per_output_token_ms${LABELS}`), [Math.round((120 + (chunks - 1) * 10) / 5)]);
  assert.equal(metric(g, `wasm_epp.prompt_tokens_total${LABELS}`), 1234);
  assert.equal(metric(g, `wasm_epp.completion_tokens_total${LABELS}`), 5);
  assert.equal(metric(g, `wasm_epp.cached_tokens_total${LABELS}`), 1024);
  assert.equal(metric(g, `wasm_epp.endpoint_cached_tokens_total.model_server_pod=${pod};`), 1024);
  assert.equal(metric(g, `wasm_epp.endpoint_prompt_tokens_total.model_server_pod=${pod};`), 1234);
  assert.equal(metric(g, `inference_objective_running_requests.model_name=${MODEL};`), 0);
  assert.equal(metric(g, 'wasm_epp.responses_without_usage'), 0);
  assert.deepEqual(g.host.traps, []);
});

test('a non-streaming body: usage read from its tail, whatever its size', () => {
  const g = new Gateway({ workers: 1 });
  g.pushState(endpoints(2));
  const content = 'x'.repeat(1 << 20);
  const body = JSON.stringify({ id: 'r', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 7, total_tokens: 9, completion_tokens: 2, prompt_tokens_details: null }, prompt_logprobs: null, kv_transfer_params: null });
  const s = send(g, chatBody('hi', false));
  s.responseHeaders({ ':status': '200', 'content-type': 'application/json' }, false);
  for (let i = 0; i < body.length; i += 65536) s.responseBody(body.slice(i, i + 65536), i + 65536 >= body.length);
  assert.equal(metric(g, `wasm_epp.prompt_tokens_total${LABELS}`), 7);
  assert.equal(metric(g, `wasm_epp.completion_tokens_total${LABELS}`), 2);
  assert.equal(metric(g, `wasm_epp.cached_tokens_total${LABELS}`), 0);
  assert.deepEqual(histogram(g, `inference_objective_response_sizes${LABELS}`), [body.length]);
  // The client got every byte, untouched.
  assert.equal(s.downstream.bodyText.length, body.length);
  // With content-length, only the chunks within the ring's reach of the end are read; the same
  // usage is found, in any chunking.
  for (const chunk of [1, 4095, 4096, 4097, 65536]) {
    const t = send(g, chatBody('hi', false));
    t.responseHeaders({ ':status': '200', 'content-type': 'application/json', 'content-length': String(body.length) }, false);
    for (let i = 0; i < body.length && chunk > 1; i += chunk) t.responseBody(body.slice(i, i + chunk), i + chunk >= body.length);
    if (chunk === 1) for (let i = body.length - 5000; i < body.length; i++) t.responseBody(body.slice(i === body.length - 5000 ? 0 : i, i + 1), i + 1 >= body.length);
  }
  assert.equal(metric(g, `wasm_epp.prompt_tokens_total${LABELS}`), 7 * 6);
});

test('errors: the model server\'s status, the filter\'s own rejections, and a stream cut short', () => {
  const g = new Gateway({ workers: 1, config: { unknown_model: 'reject' } });
  g.pushState(endpoints(2));
  const s = send(g, chatBody('a'));
  s.responseHeaders({ ':status': '500', 'content-type': 'application/json' }, false);
  s.responseBody('{"error":"boom"}', true);
  assert.equal(metric(g, `inference_objective_request_error_total${LABELS}.error_code=ModelServerError;`), 1);
  // The filter's own 404 for a model nobody declared: its labels are "unknown", never the client's name.
  const r = g.chat({ model: 'made-up-model', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(r.status, 404);
  assert.equal(metric(g, 'inference_objective_request_error_total.model_name=unknown;.target_model_name=unknown;.error_code=BadConfiguration;'), 1);
  assert.ok(!g.host.metrics.some((m) => m.name.includes('made-up-model')));
  const bad = g.chat('{not json');
  assert.equal(bad.status, 400);
  assert.equal(metric(g, 'inference_objective_request_error_total.model_name=unknown;.target_model_name=unknown;.error_code=BadRequest;'), 1);
  // A client that goes away mid-answer: incomplete, not an error, and the running gauge comes down.
  const cut = send(g, chatBody('b'));
  cut.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
  cut.responseBody('data: {"choices":[{"delta":{"content":"x"}}]}\n\n', false);
  cut.reset();
  assert.equal(metric(g, 'wasm_epp.responses_incomplete'), 1);
  assert.equal(metric(g, `inference_objective_running_requests.model_name=${MODEL};`), 0);
  assert.deepEqual(g.host.traps, []);
});

test('an answer without usage is counted, and garbage answers never trap', () => {
  const g = new Gateway({ workers: 1 });
  g.pushState(endpoints(2));
  const answers = ['', 'not json at all', '{"usage":', '{"usage":{"prompt_tokens":', '\u0000\u00ff'.repeat(3000), 'data: {"usage":{"prompt_tokens":1e999999}}\n\n',
    '"usage"'.repeat(10000), '{'.repeat(50000) + '"usage":{' + '}'.repeat(50000)];
  for (const a of answers) {
    const s = send(g, chatBody('c'));
    s.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, a.length === 0);
    if (a.length > 0) s.responseBody(a, true);
    assert.equal(s.state, 'complete');
  }
  assert.deepEqual(g.host.traps, []);
  assert.ok(metric(g, 'wasm_epp.responses_without_usage') >= answers.length - 1);
});

test('observe.enabled false: no answer metrics, routing unchanged', () => {
  const g = new Gateway({ workers: 1, config: { observe: { enabled: false } } });
  g.pushState(endpoints(2));
  const s = send(g, chatBody('d'));
  s.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
  s.responseBody(streamAnswer(10, 2), true);
  assert.equal(g.counter('requests_routed'), 1);
  assert.ok(!g.host.metrics.some((m) => m.name.includes('inference_objective')));
});

test('label sets are bounded per family: past max_series they count as "other"', () => {
  const g = new Gateway({ workers: 1, config: { observe: { max_series: 2 } } });
  g.pushState(endpoints(4));
  const pods = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const s = send(g, chatBody(`e${i}`));
    pods.add(s.upstream.header(DEST)!);
    s.responseHeaders({ ':status': '200' }, true);
  }
  assert.ok(pods.size > 2);
  const picks = g.host.metrics.filter((m) => m.name.startsWith('wasmcustom.wasm_epp.endpoint_picks_total'));
  assert.equal(picks.length, 3);
  assert.ok(picks.some((m) => m.name.endsWith('model_server_pod=other;')));
  assert.equal(picks.reduce((a, m) => a + m.value, 0), 40);
});

test('predicted and reported cache hits per pod: the seeds\' second round is predicted where it lands', () => {
  const g = new Gateway({ workers: 1 });
  g.pushState(endpoints(3), { strategy: 'PREFIX_CACHE' } as never);
  const long = 'You are a helpful assistant. '.repeat(60);
  const first = send(g, chatBody(long));
  first.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
  first.responseBody(streamAnswer(400, 3), true);
  const second = send(g, chatBody(long + ' And one more question.'));
  assert.equal(second.upstream.header(DEST), first.upstream.header(DEST));
  second.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
  second.responseBody(streamAnswer(410, 3, 384), true);
  const predicted = metric(g, `wasm_epp.predicted_cached_tokens_total${LABELS}`);
  // The whole first prompt's full blocks, in the server's tokens: close to the 384 reported.
  assert.ok(predicted > 300 && predicted <= 410, `predicted ${predicted}`);
  assert.equal(metric(g, `wasm_epp.cached_tokens_total${LABELS}`), 384);
});

// Sends `n` requests one after another; `answer(pod)` says after how many ms each pod's first
// byte comes back. Returns the pods picked, in order.
function sequence(g: Gateway, n: number, answer: (dest: string) => number, body: (i: number) => string): string[] {
  const picked: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = send(g, body(i));
    const dest = s.upstream.header(DEST)!;
    picked.push(dest);
    g.host.advance(answer(dest));
    s.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
    s.responseBody(streamAnswer(300, 2), true);
    g.host.advance(5);
  }
  return picked;
}

test('observe.ttft_feedback: a pod that answers much slower than its peers is picked less; off, it keeps its share', () => {
  const slow = '10.10.0.1:8000';
  const run = (feedback: boolean) => {
    const g = new Gateway({ workers: 1, config: { observe: { ttft_feedback: feedback } } });
    g.pushState(endpoints(3));
    const picks = sequence(g, 150, (d) => (d === slow ? 1500 : 60), (i) => chatBody(`question ${i} `.repeat(40)));
    // Re-push so that the metrics stay fresh (each request advances the clock).
    return picks.slice(75).filter((d) => d === slow).length;
  };
  const off = run(false);
  const on = run(true);
  assert.ok(off >= 15, `without feedback the slow pod keeps about a third: ${off} of 75`);
  assert.ok(on <= 5, `with feedback it is avoided: ${on} of 75`);
});

test('observe.retention_feedback: records a pod no longer holds stop attracting requests', () => {
  const run = (feedback: boolean) => {
    const g = new Gateway({ workers: 1, config: { observe: { retention_feedback: feedback } } });
    g.pushState(endpoints(3), { strategy: 'PREFIX_CACHE' } as never);
    const long = (k: number) => chatBody(`conversation ${k}: ` + 'context words '.repeat(120) + ' next turn');
    // Each conversation's first turn records its prefix on some pod; 60 s later its next turn
    // comes back, and that pod reports no cache hit (it evicted the prefix).
    let returned = 0;
    let onRecorded = 0;
    for (let k = 0; k < 90; k++) {
      const first = send(g, long(k));
      const pod = first.upstream.header(DEST)!;
      first.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
      first.responseBody(streamAnswer(400, 2, 16), true);
      g.host.advance(60_000);
      g.pushState(endpoints(3), { strategy: 'PREFIX_CACHE' } as never);
      const next = send(g, long(k));
      // The last 45 returns, once each pod has had a dozen misses.
      if (k >= 45) {
        returned++;
        if (next.upstream.header(DEST) === pod) onRecorded++;
      }
      next.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
      next.responseBody(streamAnswer(400, 2, next.upstream.header(DEST) === pod ? 0 : 16), true);
    }
    return { returned, onRecorded, missed: g.host.metrics.filter((m) => m.name.includes('endpoint_prefix_missed_total')).reduce((a, m) => a + m.value, 0) };
  };
  const off = run(false);
  const on = run(true);
  // Without feedback every return follows the stale record; with it, after a few misses, the
  // record no longer counts and returns spread by load (about a third land there by chance).
  assert.equal(off.onRecorded, off.returned);
  assert.ok(off.missed >= 80, `the misses are counted either way: ${off.missed}`);
  assert.ok(on.onRecorded < off.returned * 0.6, `with feedback: ${on.onRecorded} of ${on.returned} followed the stale record`);
});
