// Prefix sharing between gateway replicas (docs/replicas.md), through the push listener as the
// sidecar uses it: replica A's journal, read with a cursor, merged into replica B, makes B send a
// conversation's next turn to the pod A sent its first turn to.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gateway, endpoints, errorCode, DEST, type GatewayOptions } from './harness.ts';
import type { RequestResult } from '../../test/host/index.ts';

const SHARE = 'application/vnd.wasm-epp.share';
const PEERS = { peers: { enabled: true } };

function replica(seed: number, opts: GatewayOptions = {}): Gateway {
  const g = new Gateway({ workers: 2, seed, config: PEERS, ...opts });
  g.pushState(endpoints(4), { strategy: 'PREFIX_CACHE' } as never);
  return g;
}

// GET /wasm-epp/v1/share?since=… (no pool: the journal alone).
function journal(g: Gateway, since?: number, worker = 0): RequestResult {
  return g.pushRaw('', {}, worker, 'GET', `/wasm-epp/v1/share${since === undefined ? '' : `?since=${since}`}`);
}

// The records of a share answer's PREFIX section.
function prefixOf(r: RequestResult): Uint8Array {
  assert.equal(r.kind, 'local');
  const secs = sections(r.kind === 'local' ? r.body : new Uint8Array());
  assert.equal(secs[0]?.kind, 1);
  return secs[0].payload;
}

// POST /wasm-epp/v1/share with one PREFIX section.
function merge(g: Gateway, batch: Uint8Array, worker = 0): RequestResult {
  return g.pushRaw(encodeSections([{ kind: 1, payload: batch }]), { 'content-type': SHARE }, worker, 'POST', '/wasm-epp/v1/share');
}

function turn(k: number, turns: number): string {
  const messages: Array<{ role: string; content: string }> = [{ role: 'system', content: `Session ${k}. You are a careful assistant for a travel company. Answer briefly and politely, and cite timetables.` }];
  for (let t = 0; t < turns; t++) {
    messages.push({ role: 'user', content: `Conversation ${k}, question ${t}: which trains go from Zurich to Milan on weekdays, and how long do they take? ${'Details please. '.repeat(8)}` });
    if (t < turns - 1) messages.push({ role: 'assistant', content: `Several, about three hours and twenty minutes (${k}.${t}). ${'Timetable line. '.repeat(8)}` });
  }
  return JSON.stringify({ model: '/model/qwen', messages });
}

const OK = { response: { status: 200, body: '{}' } };

// Records of a batch: [endpoint, time, hashes].
function records(b: Uint8Array): Array<[number, number, number]> {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: Array<[number, number, number]> = [];
  for (let off = 0; off < b.byteLength;) {
    const n = v.getUint8(off + 8);
    out.push([v.getUint32(off, true), v.getUint32(off + 4, true), n]);
    off += 9 + 8 * n;
  }
  return out;
}

test('a replica\'s journal, merged into another, sends the next turns to the first turn\'s pod', () => {
  const a = replica(1);
  const b = replica(2);
  // Nothing journaled yet.
  const empty = journal(a);
  assert.equal(empty.status, 200);
  assert.equal(empty.header('content-type'), SHARE);
  assert.equal(empty.header('x-wasm-epp-prefix-next'), '0');
  assert.equal(prefixOf(empty).byteLength, 0);

  const first: string[] = [];
  for (let k = 0; k < 20; k++) {
    const r = a.chat(turn(k, 1), OK, k % 2);
    assert.equal(r.kind, 'upstream');
    first.push(r.header(DEST)!);
  }
  // Both workers journaled into the one ring of shared data.
  const got = journal(a, 0, 1);
  assert.equal(got.status, 200);
  assert.equal(got.header('content-type'), SHARE);
  assert.equal(got.header('x-wasm-epp-prefix-next'), '20');
  assert.equal(got.header('x-wasm-epp-prefix-lost'), '0');
  assert.equal(got.header('x-wasm-epp-prefix-records'), '20');
  const batch = prefixOf(got);
  const recs = records(batch);
  assert.equal(recs.length, 20);
  const ids = new Set(recs.map((r) => r[0]));
  assert.ok(ids.size >= 2 && ids.size <= 4, `records name the pods (${ids.size} distinct)`);
  for (const r of recs) assert.equal(r[1], a.now % 2 ** 32);
  assert.equal(a.counter('peer_records_journaled'), 20);
  // The cursor moves on.
  assert.equal(journal(a, 20).header('x-wasm-epp-prefix-records'), '0');

  const merged = merge(b, batch);
  assert.equal(merged.status, 204, merged.kind === 'local' ? merged.bodyText : '');
  const count = Number(merged.header('x-wasm-epp-prefix-merged'));
  assert.equal(count, recs.reduce((s, r) => s + r[2], 0));
  assert.equal(merged.header('x-wasm-epp-prefix-skipped'), '0');
  assert.equal(b.counter('peer_hashes_merged'), count);
  // Idempotent: the same batch again is all skipped.
  const again = merge(b, batch, 1);
  assert.equal(again.header('x-wasm-epp-prefix-merged'), '0');
  assert.equal(again.header('x-wasm-epp-prefix-skipped'), String(count));
  // B's journal holds nothing it merged: no echo.
  assert.equal(journal(b).header('x-wasm-epp-prefix-records'), '0');

  let same = 0;
  for (let k = 0; k < 20; k++) if (b.chat(turn(k, 2), OK, k % 2).header(DEST) === first[k]) same++;
  assert.equal(same, 20, `${same} of 20 second turns through B went to the first turn's pod`);
});

test('without the merge, the second replica scatters the same turns', () => {
  const a = replica(1);
  const b = replica(2);
  const first: string[] = [];
  for (let k = 0; k < 20; k++) first.push(a.chat(turn(k, 1), OK).header(DEST)!);
  let same = 0;
  for (let k = 0; k < 20; k++) if (b.chat(turn(k, 2), OK).header(DEST) === first[k]) same++;
  assert.ok(same < 14, `${same} of 20 by chance`);
});

test('the ring: a reader that fell behind is told how many records it lost', () => {
  const a = new Gateway({ workers: 1, seed: 1, config: { peers: { enabled: true, journal: 16 } } });
  a.pushState(endpoints(4), { strategy: 'PREFIX_CACHE' } as never);
  for (let k = 0; k < 40; k++) a.chat(turn(k, 1), OK);
  const r = journal(a, 0);
  assert.equal(r.header('x-wasm-epp-prefix-next'), '40');
  assert.equal(r.header('x-wasm-epp-prefix-lost'), '24');
  assert.equal(r.header('x-wasm-epp-prefix-records'), '16');
});

test('refusals: sharing off, no token, bad cursor, oversize, malformed; nothing merged', () => {
  const off = new Gateway({ workers: 1 });
  off.pushState(endpoints(4), { strategy: 'PREFIX_CACHE' } as never);
  const r404 = journal(off);
  assert.equal(r404.status, 404);
  assert.equal(errorCode(r404), 'prefix_sharing_off');
  assert.equal(errorCode(merge(off, new Uint8Array(9 + 8))), 'prefix_sharing_off');
  off.chat(turn(1, 1), OK);
  assert.equal(off.counter('peer_records_journaled'), 0);

  const b = new Gateway({ workers: 1, config: { peers: { enabled: true, max_import_bytes: 1024 } } });
  b.pushState(endpoints(4), { strategy: 'PREFIX_CACHE' } as never);
  const anon = b.pushRaw('', { authorization: 'Bearer wrong-token-0123456789' }, 0, 'GET', '/wasm-epp/v1/share');
  assert.equal(anon.status, 401);
  const anonPost = b.pushRaw(new Uint8Array(17), { authorization: 'Bearer wrong-token-0123456789' }, 0, 'POST', '/wasm-epp/v1/share');
  assert.equal(anonPost.status, 401);
  const badCursor = b.pushRaw('', {}, 0, 'GET', '/wasm-epp/v1/share?since=abc');
  assert.equal(badCursor.status, 400);
  assert.equal(errorCode(badCursor), 'invalid_cursor');
  const big = merge(b, new Uint8Array(2048));
  assert.equal(big.status, 413);
  assert.equal(errorCode(big), 'share_too_large');
  // A record cut short after a good one: refused whole.
  const bad = new Uint8Array(17 + 5);
  const v = new DataView(bad.buffer);
  v.setUint32(0, 7, true);
  v.setUint32(4, b.now % 2 ** 32, true);
  v.setUint8(8, 1);
  const r400 = merge(b, bad);
  assert.equal(r400.status, 400);
  assert.equal(errorCode(r400), 'invalid_share');
  // The second record starts at byte 17 of the records, 22 of the body (after the section header).
  assert.match(r400.kind === 'local' ? r400.bodyText : '', /malformed prefix record at byte 22/);
  assert.equal(b.counter('peer_batches_invalid'), 1);
  assert.equal(b.counter('peer_hashes_merged'), 0);
  // An empty batch is fine.
  assert.equal(merge(b, new Uint8Array(0)).status, 204);
});

// Opens n streams through replica g and leaves them in flight; counts their pods.
function burst(g: Gateway, n: number, tag: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const s = g.routing.worker(i % 2).newHttpStream();
    s.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gw', 'content-type': 'application/json' }, false);
    s.requestBody(new TextEncoder().encode(JSON.stringify({ model: '/model/qwen', messages: [{ role: 'user', content: `${tag} ${i}: ${'a question with some length to it. '.repeat(20)}` }] })), true);
    const dest = s.upstream.header(DEST) ?? 'none';
    counts.set(dest, (counts.get(dest) ?? 0) + 1);
  }
  return counts;
}

// GET /wasm-epp/v1/share?pool=…: this replica's load record of the pool (its LOAD section).
function loadOf(g: Gateway): RequestResult {
  return g.pushRaw('', {}, 0, 'GET', '/wasm-epp/v1/share?pool=default/vllm-qwen-pool');
}

function loadRecordOf(r: RequestResult): Uint8Array {
  const secs = sections(r.kind === 'local' ? r.body : new Uint8Array());
  assert.deepEqual(secs.map((x) => x.kind), [1, 2]);
  const p = secs[1].payload;
  assert.equal(new TextDecoder().decode(p.subarray(1, 1 + p[0])), 'default/vllm-qwen-pool');
  assert.equal(p[1 + p[0]], 0, 'the replica name is empty: this replica');
  return p.subarray(2 + p[0]);
}

// POST /wasm-epp/v1/share with one LOAD section.
function giveLoad(g: Gateway, record: Uint8Array, replica: string): RequestResult {
  return g.pushRaw(encodeSections([{ kind: 2, payload: loadPayload('default/vllm-qwen-pool', replica, record) }]), { 'content-type': SHARE }, 0, 'POST', '/wasm-epp/v1/share');
}

test('loads: what replica A has in flight counts in replica B\'s picks, until A falls silent', () => {
  // A sees only pods 1 and 2 ready: its burst loads them. B sees all four.
  const a = new Gateway({ workers: 2, seed: 1, config: PEERS });
  a.pushState(endpoints(4).map((e, i) => ({ ...e, ready: i < 2 })), { strategy: 'PREFIX_CACHE' } as never);
  const sent = burst(a, 40, 'a');
  assert.equal(sent.size, 2, JSON.stringify([...sent]));
  const rec = loadOf(a);
  assert.equal(rec.status, 200);
  const record = loadRecordOf(rec);
  assert.ok(record.byteLength > 24);

  // Without A's load, B's burst of 4 lands on A's pods too.
  const blind = replica(2);
  const blindSent = burst(blind, 4, 'b');
  assert.ok([...blindSent.keys()].some((pod) => sent.has(pod)), `blind: ${JSON.stringify([...blindSent])}`);
  // With it, B sends its 4 to the two pods A left idle.
  const b = replica(2);
  const given = giveLoad(b, record, 'gateway-a');
  assert.equal(given.status, 204, given.kind === 'local' ? given.bodyText : '');
  assert.equal(given.header('x-wasm-epp-load-records'), '1');
  assert.equal(b.counter('peer_loads_merged'), 1);
  const bSent = burst(b, 4, 'b');
  for (const pod of bSent.keys()) assert.ok(!sent.has(pod), `B sent to ${pod}, which A loaded: ${JSON.stringify([...bSent])}`);

  // A falls silent: after peers.load_ttl_ms (1 s) B counts only its own, and A's pods, idle as
  // far as B knows, get its requests again.
  b.host.advance(1500);
  const later = burst(b, 4, 'b2');
  assert.ok([...later.keys()].some((pod) => sent.has(pod)), `B alone: ${JSON.stringify([...later])}`);
});

test('loads: refusals', () => {
  const off = new Gateway({ workers: 1 });
  off.pushState(endpoints(4), { strategy: 'PREFIX_CACHE' } as never);
  assert.equal(errorCode(loadOf(off)), 'prefix_sharing_off');
  const b = replica(3);
  assert.equal(errorCode(b.pushRaw('', {}, 0, 'GET', '/wasm-epp/v1/share?pool=nope')), 'invalid_pool');
  const garbage = giveLoad(b, new Uint8Array(40), 'x');
  assert.equal(errorCode(garbage), 'invalid_share');
  assert.match(garbage.kind === 'local' ? garbage.bodyText : '', /not a load record/);
  const nameless = giveLoad(b, new Uint8Array(0), '');
  assert.equal(errorCode(nameless), 'invalid_share');
  assert.match(nameless.kind === 'local' ? nameless.bodyText : '', /bad replica name/);
  assert.equal(b.counter('peer_loads_merged'), 0);
  assert.equal(b.pushRaw('', { authorization: 'Bearer wrong-token-0123456789' }, 0, 'GET', '/wasm-epp/v1/share?pool=default/vllm-qwen-pool').status, 401);
  // An empty record is a replica with nothing in flight.
  assert.equal(giveLoad(b, new Uint8Array(0), 'idle').status, 204);
});

// ---- /wasm-epp/v1/share: both in one request ----

type Section = { kind: number; payload: Uint8Array };

function sections(b: Uint8Array): Section[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: Section[] = [];
  for (let off = 0; off < b.byteLength;) {
    const len = v.getUint32(off + 1, true);
    out.push({ kind: v.getUint8(off), payload: b.subarray(off + 5, off + 5 + len) });
    off += 5 + len;
  }
  return out;
}

function encodeSections(list: Section[]): Uint8Array {
  const out = new Uint8Array(list.reduce((s, x) => s + 5 + x.payload.byteLength, 0));
  const v = new DataView(out.buffer);
  let off = 0;
  for (const x of list) {
    v.setUint8(off, x.kind);
    v.setUint32(off + 1, x.payload.byteLength, true);
    out.set(x.payload, off + 5);
    off += 5 + x.payload.byteLength;
  }
  return out;
}

function loadPayload(pool: string, replica: string, record: Uint8Array): Uint8Array {
  const p = new TextEncoder().encode(pool);
  const r = new TextEncoder().encode(replica);
  return new Uint8Array([p.length, ...p, r.length, ...r, ...record]);
}

const POOL_Q = 'pool=default/vllm-qwen-pool';

test('share: one GET gives the journal and the load, one POST takes both; all or nothing', () => {
  const a = new Gateway({ workers: 2, seed: 1, config: PEERS });
  a.pushState(endpoints(4).map((e, i) => ({ ...e, ready: i < 2 })), { strategy: 'PREFIX_CACHE' } as never);
  const first = new Map<number, string>();
  for (let k = 0; k < 10; k++) first.set(k, a.chat(turn(k, 1), OK).header(DEST)!);
  const loaded = burst(a, 40, 'a');
  const got = a.pushRaw('', {}, 0, 'GET', `/wasm-epp/v1/share?since=0&${POOL_Q}`);
  assert.equal(got.status, 200);
  assert.equal(got.header('content-type'), 'application/vnd.wasm-epp.share');
  assert.equal(got.header('x-wasm-epp-prefix-next'), String(Number(a.counter('peer_records_journaled'))));
  const secs = sections(got.kind === 'local' ? got.body : new Uint8Array());
  assert.deepEqual(secs.map((s) => s.kind), [1, 2]);
  assert.ok(records(secs[0].payload).length >= 10);
  const lp = secs[1].payload;
  const poolLen = lp[0];
  assert.equal(new TextDecoder().decode(lp.subarray(1, 1 + poolLen)), 'default/vllm-qwen-pool');
  assert.equal(lp[1 + poolLen], 0, 'the replica name is empty: this replica');
  const record = lp.subarray(2 + poolLen);
  assert.ok(record.byteLength > 24);

  // Into B, as a sidecar would send them, with an unknown kind it must skip.
  const b = replica(2);
  const body = encodeSections([
    { kind: 9, payload: new Uint8Array([1, 2, 3]) },
    { kind: 1, payload: secs[0].payload },
    { kind: 2, payload: loadPayload('default/vllm-qwen-pool', 'gateway-a', record) },
  ]);
  const merged = b.pushRaw(body, { 'content-type': 'application/vnd.wasm-epp.share' }, 0, 'POST', '/wasm-epp/v1/share');
  assert.equal(merged.status, 204, merged.kind === 'local' ? merged.bodyText : '');
  assert.ok(Number(merged.header('x-wasm-epp-prefix-merged')) > 0);
  assert.equal(merged.header('x-wasm-epp-load-records'), '1');
  // B now sends its burst to the pods A left idle.
  for (const pod of burst(b, 4, 'b').keys()) assert.ok(!loaded.has(pod), `B sent to ${pod}, loaded by A`);
  // A replica given the prefix section alone sends the next turns to the first turns' pods (with
  // A's load too, the prefix would not count on pods that busy: prefix.load_ratio).
  const b1 = replica(4);
  assert.equal(b1.pushRaw(encodeSections([{ kind: 1, payload: secs[0].payload }]), {}, 0, 'POST', '/wasm-epp/v1/share').status, 204);
  for (let k = 0; k < 10; k++) assert.equal(b1.chat(turn(k, 2), OK).header(DEST), first.get(k));

  // A malformed section anywhere: nothing applied.
  const c = replica(3);
  const bad = encodeSections([
    { kind: 1, payload: secs[0].payload },
    { kind: 2, payload: loadPayload('not-a-pool', 'x', record) },
  ]);
  const refused = c.pushRaw(bad, {}, 0, 'POST', '/wasm-epp/v1/share');
  assert.equal(refused.status, 400);
  assert.equal(errorCode(refused), 'invalid_share');
  assert.equal(c.counter('peer_hashes_merged'), 0);
  const cut = c.pushRaw(body.subarray(0, body.byteLength - 3), {}, 0, 'POST', '/wasm-epp/v1/share');
  assert.equal(errorCode(cut), 'invalid_share');
  assert.match(cut.kind === 'local' ? cut.bodyText : '', /runs past the end/);
  assert.equal(c.counter('peer_loads_merged'), 0);
  // Bad queries; sharing off.
  assert.equal(errorCode(c.pushRaw('', {}, 0, 'GET', '/wasm-epp/v1/share?since=x')), 'invalid_cursor');
  assert.equal(errorCode(c.pushRaw('', {}, 0, 'GET', '/wasm-epp/v1/share?pool=nope')), 'invalid_pool');
  const off = new Gateway({ workers: 1 });
  assert.equal(errorCode(off.pushRaw('', {}, 0, 'GET', `/wasm-epp/v1/share?${POOL_Q}`)), 'prefix_sharing_off');
  assert.equal(c.pushRaw('', { authorization: 'Bearer wrong-token-0123456789' }, 0, 'GET', '/wasm-epp/v1/share').status, 401);
  // No pool asked: the journal alone.
  assert.deepEqual(sections((c.pushRaw('', {}, 0, 'GET', '/wasm-epp/v1/share') as { body: Uint8Array }).body).map((s) => s.kind), [1]);
});
