// Fuzzing the compiled filter through the proxy-wasm host: random and mutated request bodies and
// state documents, for a fixed time budget (FUZZ_SECONDS, default 60 in all). Every case must
// end in a well-formed answer and no VM may ever trap. A failure prints the seed and the input.
// Then the answers the filter watches: a fixed number of random and mutated model-server
// responses (FUZZ_ANSWERS, default 1500), sent through in arbitrary chunks; every byte must reach
// the client unchanged, and the token counters must add up to the usage the valid ones reported.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateway, endpoints, DEST, ROUND1, ROUND2 } from '../integration/harness.ts';
import { Prng, chunking, mutate, mutateAnswer, openaiBody, randomAnswer, randomState, stateDocument, type Answer } from './generators.ts';
import type { HttpStream, RequestResult } from '../host/index.ts';

const BUDGET_MS = Number(process.env.FUZZ_SECONDS ?? 60) * 1000;
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const LOCAL_STATUSES = new Set([400, 404, 413, 429, 503]);
const PUSH_STATUSES = new Set([204, 400, 409, 413]);
const enc = new TextEncoder();

function describe(input: Uint8Array): string {
  const text = Buffer.from(input).toString('latin1');
  return text.length > 400 ? `${text.slice(0, 400)}... (${text.length} bytes)` : text;
}

function checkErrorBody(r: RequestResult & { kind: 'local' }, context: string): void {
  let parsed: { error?: { message?: unknown; type?: unknown; code?: unknown } };
  try {
    parsed = JSON.parse(r.bodyText);
  } catch {
    assert.fail(`${context}: local reply ${r.status} is not JSON: ${r.bodyText}`);
  }
  assert.equal(typeof parsed.error?.message, 'string', context);
  assert.equal(typeof parsed.error?.type, 'string', context);
  assert.equal(typeof parsed.error?.code, 'string', context);
  assert.equal(r.header('content-type'), 'application/json', context);
}

test(`fuzz: request bodies (seed ${SEED})`, () => {
  const r = new Prng(SEED);
  const g = new Gateway({ workers: 2, config: { max_body_bytes: 64 * 1024 } });
  const eps = endpoints(6);
  const addresses = new Set(eps.map((e) => e.address));
  g.pushState(eps, {
    strategy: 'PREFIX_CACHE',
    models: [
      { name: '/model/qwen', criticality: 'Critical' },
      { name: 'travel', criticality: 'Sheddable', targets: [{ name: 'travel-helper-v1', weight: 50 }, { name: 'travel-helper-v2', weight: 50 }] },
    ],
  });
  const corpus = [ROUND1, ROUND2].map((s) => enc.encode(s));
  const deadline = Date.now() + BUDGET_MS * 2 / 3;
  let cases = 0;
  const outcomes = new Map<string, number>();
  while (Date.now() < deadline) {
    const base = r.chance(0.2) ? r.pick(corpus) : enc.encode(JSON.stringify(openaiBody(r)));
    const body = r.chance(0.6) ? mutate(r, base) : base;
    const worker = r.int(2);
    const context = `seed ${SEED} case ${cases} worker ${worker} body ${describe(body)}`;
    const res = g.routing.worker(worker).requestSync({
      method: 'POST', path: r.pick(['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses']),
      headers: r.chance(0.9) ? { 'content-type': 'application/json', [DEST]: '1.2.3.4:5' } : {},
      body, chunkSize: r.chance(0.3) ? 1 + r.int(200) : undefined,
    });
    if (res.kind === 'upstream') {
      const dest = res.headers.filter(([k]) => k === DEST).map(([, v]) => v);
      assert.equal(dest.length, 1, context);
      assert.ok(addresses.has(dest[0]), `${context}: routed to ${dest[0]}`);
      const sent = Buffer.from(res.body);
      if (!sent.equals(Buffer.from(body))) {
        // Only a rewrite of "model" to a target may change the body.
        const model = JSON.parse(sent.toString('utf8')).model;
        assert.ok(model === 'travel-helper-v1' || model === 'travel-helper-v2', `${context}: body changed, model ${model}`);
        assert.equal(res.header('content-length'), String(sent.length), context);
      }
      outcomes.set('routed', (outcomes.get('routed') ?? 0) + 1);
    } else {
      assert.ok(LOCAL_STATUSES.has(res.status), `${context}: status ${res.status} ${res.bodyText}`);
      checkErrorBody(res, context);
      outcomes.set(String(res.status), (outcomes.get(String(res.status)) ?? 0) + 1);
    }
    assert.deepEqual(g.host.traps, [], context);
    cases++;
    // Let time pass now and then: prefix entries age, the state goes stale and is refreshed.
    if (r.chance(0.01)) {
      g.host.advance(r.int(10_000));
      g.pushState(eps, { strategy: 'PREFIX_CACHE', models: [{ name: '/model/qwen', criticality: 'Critical' }] });
    }
  }
  console.log(`# fuzz bodies: ${cases} cases, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`);
  assert.ok(cases > 100, 'the budget allows a meaningful number of cases');
  assert.ok((outcomes.get('routed') ?? 0) > 0 && (outcomes.get('400') ?? 0) > 0, 'both valid and invalid bodies were exercised');
  assert.equal(g.routing.worker(0).failed, false);
  assert.equal(g.routing.worker(1).failed, false);
});

test(`fuzz: state documents (seed ${SEED})`, () => {
  const r = new Prng(SEED ^ 0x5bd1e995);
  // Every request gets its answer at once: priority queuing (which may hold one under a random
  // saturated state until a later release) is off here and tested in queue.test.ts.
  const g = new Gateway({ workers: 2, config: { queue: { enabled: false } } });
  const deadline = Date.now() + BUDGET_MS / 3;
  let cases = 0;
  const statuses = new Map<number, number>();
  // The text of the document the filter holds: a mutation may have changed its addresses.
  let held = '';
  while (Date.now() < deadline) {
    const doc = enc.encode(JSON.stringify(randomState(r, g.now + r.int(1000) - 500)));
    const body = r.chance(0.7) ? mutate(r, doc) : doc;
    const context = `seed ${SEED} case ${cases} state ${describe(body)}`;
    const pushed = g.pushRaw(body, {}, r.int(2));
    assert.ok(PUSH_STATUSES.has(pushed.status), `${context}: status ${pushed.status}`);
    if (pushed.kind === 'local' && pushed.status !== 204) checkErrorBody(pushed, context);
    statuses.set(pushed.status, (statuses.get(pushed.status) ?? 0) + 1);
    if (pushed.status === 204) held = new TextDecoder().decode(body);
    // Whatever was stored, routing keeps answering well-formed.
    const res = g.chat({ model: r.pick(['/model/qwen', 'travel', 'other']), messages: [{ role: 'user', content: 'hi '.repeat(r.int(100)) }] }, {}, r.int(2));
    if (res.kind === 'local') {
      assert.ok(LOCAL_STATUSES.has(res.status), `${context}: routing status ${res.status}`);
      checkErrorBody(res, context);
    } else {
      const dest = res.header(DEST) ?? '';
      assert.match(dest, /^\d+\.\d+\.\d+\.\d+:\d+$/, context);
      if (held !== '') assert.ok(held.includes(`"${dest}"`), `${context}: routed to ${dest}, not an address of the held document`);
    }
    assert.deepEqual(g.host.traps, [], context);
    cases++;
    if (r.chance(0.05)) g.host.advance(r.int(3000));
  }
  console.log(`# fuzz states: ${cases} cases, push statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
  assert.ok(cases > 100);
  assert.ok((statuses.get(204) ?? 0) > 0 && (statuses.get(400) ?? 0) > 0, 'both valid and invalid documents were exercised');
});

test('huge and hostile inputs at the limits', () => {
  const g = new Gateway({ workers: 1 });
  g.pushState(endpoints(2), { strategy: 'PREFIX_CACHE' });
  const cases: Uint8Array[] = [
    enc.encode(`{"model":"/model/qwen","messages":[{"role":"user","content":"${'x'.repeat(7 * 1024 * 1024)}"}]}`),
    enc.encode(`{"model":"/model/qwen","prompt":${'['.repeat(100_000)}`),
    enc.encode(`{"model":"/model/qwen","messages":[${'{"role":"user","content":"a"},'.repeat(50_000)}{"role":"user","content":"b"}]}`),
    enc.encode(`{"model":"${'\\u00e9'.repeat(10_000)}","prompt":"x"}`),
    new Uint8Array(1024 * 1024).fill(0x7b),
    enc.encode('{"model":"/model/qwen","prompt":"\\ud800\\udc00\\udbff\\udfff\\ud800"}'),
  ];
  for (const body of cases) {
    const res = g.chat(body);
    if (res.kind === 'local') assert.ok(LOCAL_STATUSES.has(res.status), `${res.status} for ${describe(body)}`);
    assert.deepEqual(g.host.traps, []);
  }
  const state = enc.encode(JSON.stringify(stateDocument({ generatedAtMs: g.now + 1, endpoints: endpoints(1024), strategy: 'PREFIX_CACHE' })));
  assert.equal(g.pushRaw(state).status, 204);
  assert.equal(g.chat(ROUND2).kind, 'upstream');
  const tooMany = enc.encode(JSON.stringify(stateDocument({ generatedAtMs: g.now + 2, endpoints: endpoints(1025) })));
  assert.equal(g.pushRaw(tooMany).status, 400);
  assert.deepEqual(g.host.traps, []);
});

// ---------------- answers ----------------

const ANSWERS = Number(process.env.FUZZ_ANSWERS ?? 1500);
const VALID = '/model/qwen'; // valid answers: their counters are checked to the token
const MUTANT = '/model/mutant'; // mutated answers: counted apart, so they never blur that check
const labels = (model: string): string => `.model_name=${model};.target_model_name=${model};`;

// Answer sizes: mostly small, some large, a few up to about 2 MB.
function answerSize(r: Prng): number {
  const p = r.next();
  if (p < 0.55) return r.int(4096);
  if (p < 0.8) return 4096 + r.int(60 * 1024);
  if (p < 0.95) return 64 * 1024 + r.int(448 * 1024);
  return 512 * 1024 + r.int(1400 * 1024);
}

// Mostly 200, the other 2xx now and then, and the model servers' and proxies' errors.
function answerStatus(r: Prng): string {
  const p = r.next();
  return p < 0.75 ? '200' : p < 0.8 ? r.pick(['201', '203', '206']) : r.pick(['400', '404', '413', '422', '429', '500', '502', '503', '504']);
}

type Ending = 'eos' | 'empty-eos' | 'trailers' | 'reset' | 'headers-only';

interface Totals { prompt: number; completion: number; cached: number }

test(`fuzz: answers and streams (seed ${SEED})`, () => {
  const r = new Prng(SEED ^ 0x2545f491);
  const models = [{ name: VALID, criticality: 'Critical' }, { name: MUTANT, criticality: 'Critical' }];
  // The default tail (4 KB), the smallest allowed, and a large one.
  const gateways = [undefined, 256, 65536].map((tail) => {
    const g = new Gateway({ workers: 2, config: tail === undefined ? {} : { observe: { tail_bytes: tail } } });
    g.pushState(endpoints(4), { models });
    return { g, tail: tail ?? 4096, expected: { prompt: 0, completion: 0, cached: 0 } as Totals, pushedAt: g.now };
  });
  const seen = new Map<string, number>();
  const note = (k: string): void => void seen.set(k, (seen.get(k) ?? 0) + 1);
  let bytes = 0;
  let chunks = 0;
  const started = Date.now();
  for (let c = 0; c < ANSWERS; c++) {
    const gw = r.chance(0.7) ? gateways[0] : r.pick(gateways.slice(1));
    const g = gw.g;
    if (g.now - gw.pushedAt > 2000) {
      g.pushState(endpoints(4), { models });
      gw.pushedAt = g.now;
    }
    const valid = r.chance(0.6);
    const answer: Answer = randomAnswer(r, answerSize(r));
    const body = valid ? answer.body : mutateAnswer(r, answer.body);
    const status = valid || r.chance(0.8) ? answerStatus(r) : r.pick(['0', '99', '100', '204', '299', '600', '-1', '2000000000000', 'abc', '']);
    const ending: Ending = r.pick(['eos', 'eos', 'eos', 'eos', 'eos', 'eos', 'empty-eos', 'trailers', 'trailers', 'reset', 'reset', 'headers-only']);
    const pieces = chunking(r, body.length, [answer.usageAt, body.length - gw.tail]);
    const resetAfter = ending === 'reset' ? r.int(pieces.length + 1) : -1;
    const context = `seed ${SEED} case ${c} (tail ${gw.tail}): ${valid ? 'valid' : 'mutated'} ${answer.kind}, ${body.length} bytes, status ${status}, ${ending}` +
      `${resetAfter >= 0 ? ` after piece ${resetAfter}` : ''}, ${pieces.length} pieces [${pieces.slice(0, 12).join(',')}${pieces.length > 12 ? ',...' : ''}], usage ${JSON.stringify(answer.usage)} at ${answer.usageAt}`;
    note(valid ? 'valid' : 'mutated');
    note(ending);
    note(answer.kind.replace(/^(vllm|sglang)-/, ''));

    const model = valid ? VALID : MUTANT;
    const before = counters(g, model);
    const s = send(g, model, c % 2, r);
    assert.ok(s.upstream.endStream && s.upstream.header(DEST), `${context}: the request was not routed (${s.localReply?.status} ${s.localReply?.bodyText})`);
    g.host.advance(r.int(50));
    const ct = answer.streaming ? r.pick(['text/event-stream', 'text/event-stream; charset=utf-8', 'TEXT/EVENT-STREAM']) : r.pick(['application/json', 'application/json; charset=utf-8']);
    const headers: Record<string, string> = { ':status': status, ...(r.chance(0.9) ? { 'content-type': ct } : {}) };
    if (!answer.streaming && r.chance(0.5)) headers['content-length'] = String(body.length);
    const sent: Uint8Array[] = [];
    if (ending === 'headers-only') {
      s.responseHeaders(headers, true);
    } else {
      s.responseHeaders(headers, false);
      let at = 0;
      for (let i = 0; i < pieces.length; i++) {
        if (i === resetAfter) break;
        const piece = body.subarray(at, at + pieces[i]);
        at += pieces[i];
        const last = i === pieces.length - 1 && ending === 'eos';
        s.responseBody(piece, last);
        sent.push(piece);
        chunks++;
        if (r.chance(0.05)) g.host.advance(r.int(20));
      }
      if (ending === 'reset') s.reset();
      else if (ending === 'empty-eos' || pieces.length === 0 && ending === 'eos') s.responseBody(new Uint8Array(0), true);
      else if (ending === 'trailers') s.responseTrailers({ 'x-served-by': 'pod', ...(r.chance(0.5) ? { 'grpc-status': '0' } : {}) });
    }
    assert.deepEqual(g.host.traps, [], context);
    assert.equal(s.state, ending === 'reset' ? 'reset' : 'complete', context);
    // Every byte, headers and trailers reached the client unchanged.
    const got = Buffer.from(s.downstream.body);
    const want = Buffer.concat(sent);
    bytes += want.length;
    if (!got.equals(want)) assert.fail(`${context}: the client got ${got.length} bytes, not the ${want.length} sent (first difference at ${firstDifference(got, want)})`);
    if (ending !== 'reset') assert.equal(s.downstream.header(':status'), status, context);
    if (ending === 'trailers') assert.equal(s.downstream.trailers?.find(([k]) => k === 'x-served-by')?.[1], 'pod', context);

    const after = counters(g, model);
    if (!valid) {
      // Whatever a broken answer says, counters only grow, by at most the parser's cap.
      for (const k of ['prompt', 'completion', 'cached'] as const) assert.ok(after[k] >= before[k] && after[k] - before[k] <= 1e12, `${context}: ${k} ${before[k]} -> ${after[k]}`);
      continue;
    }
    const code = Number(status);
    const complete = ending !== 'reset';
    const ok = complete && code >= 200 && code < 300;
    const inTail = answer.usage !== null && ending !== 'headers-only' && answer.usageAt >= body.length - gw.tail;
    const u = ok && inTail ? answer.usage! : null;
    const delta = { prompt: after.prompt - before.prompt, completion: after.completion - before.completion, cached: after.cached - before.cached };
    assert.deepEqual(delta, u ? { prompt: u.prompt, completion: u.completion, cached: u.cached } : { prompt: 0, completion: 0, cached: 0 }, `${context}: token counters`);
    assert.equal(after.withoutUsage - before.withoutUsage, ok && !u ? 1 : 0, `${context}: responses_without_usage`);
    assert.equal(after.incomplete - before.incomplete, complete ? 0 : 1, `${context}: responses_incomplete`);
    assert.equal(after.errors - before.errors, complete && code >= 400 ? 1 : 0, `${context}: request_error_total`);
    if (u) {
      gw.expected.prompt += u.prompt;
      gw.expected.completion += u.completion;
      gw.expected.cached += u.cached;
      note('usage counted');
    } else if (ok) {
      note(answer.usage === null || ending === 'headers-only' ? 'no usage' : 'usage outside the tail');
    }
  }
  // In all: the counters are the sum of the usage the valid answers reported.
  for (const gw of gateways) {
    const got = counters(gw.g, VALID);
    assert.deepEqual({ prompt: got.prompt, completion: got.completion, cached: got.cached }, gw.expected, `seed ${SEED}: totals with tail ${gw.tail}`);
    assert.equal(gw.g.routing.worker(0).failed || gw.g.routing.worker(1).failed, false);
  }
  // Each kind of case came up.
  for (const k of ['valid', 'mutated', 'eos', 'empty-eos', 'trailers', 'reset', 'headers-only', 'usage counted', 'no usage', 'chat-stream-final', 'chat-stream-continuous', 'chat-json', 'completions-stream-final', 'completions-json']) {
    assert.ok((seen.get(k) ?? 0) > 0 || ANSWERS < 500, `seed ${SEED}: no case of "${k}" in ${ANSWERS}`);
  }
  if (process.env.FUZZ_VERBOSE) {
    console.log(`# fuzz answers: ${ANSWERS} cases, ${(bytes / 1e6).toFixed(1)} MB in ${chunks} chunks, ${Date.now() - started} ms, ${JSON.stringify(Object.fromEntries([...seen].sort()))}`);
  }
});

// Sends a chat request for `model` and leaves the stream open at the upstream.
function send(g: Gateway, model: string, worker: number, r: Prng): HttpStream {
  const body = JSON.stringify({ model, stream: r.chance(0.6), messages: [{ role: 'user', content: `question ${r.int(1e6)}` }] });
  const s = g.routing.worker(worker).newHttpStream();
  s.requestHeaders({ ':method': 'POST', ':path': r.pick(['/v1/chat/completions', '/v1/completions']), ':authority': 'gw', ':scheme': 'http', 'content-type': 'application/json', 'content-length': String(body.length) }, false);
  s.requestBody(body, true);
  return s;
}

function counters(g: Gateway, model: string): Totals & { withoutUsage: number; incomplete: number; errors: number } {
  const m = (name: string): number => g.host.metric(name) ?? 0;
  const l = labels(model);
  return {
    prompt: m(`wasm_epp.prompt_tokens_total${l}`), completion: m(`wasm_epp.completion_tokens_total${l}`), cached: m(`wasm_epp.cached_tokens_total${l}`),
    withoutUsage: m('wasm_epp.responses_without_usage'), incomplete: m('wasm_epp.responses_incomplete'),
    errors: m(`inference_objective_request_error_total${l}.error_code=ModelServerError;`),
  };
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}
