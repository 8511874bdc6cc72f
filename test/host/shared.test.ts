// Shared data (CAS) and shared queues across worker VMs, scoped by vm_id.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFixture } from './fixtures/compile.ts';
import { ProxyWasmHost, type Worker } from './index.ts';

const wasmP = compileFixture('shared');

function op(w: Worker, headers: Record<string, string>): string {
  const r = w.requestSync({ path: '/', headers });
  assert.equal(r.kind, 'local');
  return r.kind === 'local' ? r.bodyText : '';
}

/** Same as op() but through the low-level stream API, which does not drain posted work. */
function opNoDrain(w: Worker, headers: Record<string, string>): string {
  const s = w.newHttpStream();
  s.requestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'h', ...headers }, true);
  return s.localReply?.bodyText ?? '';
}

test('shared data CAS across two workers of one vm_id', async () => {
  const host = new ProxyWasmHost();
  const p = host.loadPlugin({ wasm: await wasmP, vmId: 'epp', workers: 2 });
  const [w0, w1] = [p.worker(0), p.worker(1)];

  assert.equal(op(w1, { 'x-op': 'get', 'x-key': 'k' }), 'result=1 value= cas=0'); // NotFound
  assert.equal(op(w0, { 'x-op': 'set', 'x-key': 'k', 'x-value': 'v1', 'x-cas': '0' }), 'result=0');
  const got = op(w1, { 'x-op': 'get', 'x-key': 'k' });
  const cas1 = Number(/cas=(\d+)/.exec(got)![1]);
  assert.equal(got, `result=0 value=v1 cas=${cas1}`);
  assert.ok(cas1 > 0);

  // Matching CAS succeeds and bumps the CAS; the stale CAS is then a mismatch.
  assert.equal(op(w0, { 'x-op': 'set', 'x-key': 'k', 'x-value': 'v2', 'x-cas': String(cas1) }), 'result=0');
  assert.equal(op(w1, { 'x-op': 'set', 'x-key': 'k', 'x-value': 'v3', 'x-cas': String(cas1) }), 'result=8');
  const cas2 = host.sharedData('epp').get('k')!.cas;
  assert.equal(cas2, cas1 + 1);
  assert.equal(host.sharedData('epp').get('k')!.text, 'v2');
  // cas 0 is unconditional.
  assert.equal(op(w1, { 'x-op': 'set', 'x-key': 'k', 'x-value': 'v4', 'x-cas': '0' }), 'result=0');
  assert.equal(host.sharedData('epp').get('k')!.text, 'v4');
  // A CAS on a missing key does not fail: the key is created.
  assert.equal(op(w0, { 'x-op': 'set', 'x-key': 'fresh', 'x-value': 'x', 'x-cas': '12345' }), 'result=0');
  assert.equal(host.sharedData('epp').get('fresh')!.text, 'x');
  assert.equal(host.traps.length, 0);
});

test('shared data is keyed by vm_id: separate for different vm_ids, common to plugins sharing one', async () => {
  const host = new ProxyWasmHost();
  const wasm = await wasmP;
  const a = host.loadPlugin({ wasm, name: 'a', vmId: 'one' });
  const b = host.loadPlugin({ wasm, name: 'b', vmId: 'two' });
  const c = host.loadPlugin({ wasm, name: 'c', vmId: 'one', configuration: 'other config' });
  assert.equal(op(a.worker(0), { 'x-op': 'set', 'x-key': 'k', 'x-value': 'from-a', 'x-cas': '0' }), 'result=0');
  assert.match(op(b.worker(0), { 'x-op': 'get', 'x-key': 'k' }), /^result=1 /);
  assert.match(op(c.worker(0), { 'x-op': 'get', 'x-key': 'k' }), /^result=0 value=from-a /);
  assert.deepEqual([...host.sharedData('one').keys()], ['k']);
  assert.equal(host.sharedData('two').size, 0);
});

test('shared queues: one token per (vm_id, name); the last registrant gets on_queue_ready', async () => {
  const host = new ProxyWasmHost();
  const p = host.loadPlugin({ wasm: await wasmP, vmId: 'q', workers: 2 });
  const registered = p.logs.filter((l) => l.message.startsWith('registered')).map((l) => `${l.worker}:${l.message}`);
  // The canary registers too (Envoy's canary is a real VM); the token is shared.
  assert.deepEqual(registered, ['canary:registered jobs token=1 result=0', '0:registered jobs token=1 result=0', '1:registered jobs token=1 result=0']);

  assert.equal(opNoDrain(p.worker(0), { 'x-op': 'enqueue', 'x-vm': '', 'x-queue': 'jobs', 'x-value': 'job-1' }), 'resolve=0 token=1 enqueue=0');
  assert.equal(p.logs.filter((l) => l.message.startsWith('queue_ready')).length, 0, 'delivered asynchronously');
  host.drain();
  const ready = p.logs.filter((l) => l.message.startsWith('queue_ready'));
  assert.deepEqual(ready.map((l) => [l.worker, l.message]), [[1, 'queue_ready root=1 token=1 item=job-1']]);

  assert.equal(op(p.worker(0), { 'x-op': 'resolve', 'x-vm': 'q', 'x-queue': 'nope' }), 'resolve=1 token=0');
  assert.equal(op(p.worker(0), { 'x-op': 'resolve', 'x-vm': 'other-vm', 'x-queue': 'jobs' }), 'resolve=1 token=0');
  assert.equal(op(p.worker(0), { 'x-op': 'dequeue', 'x-token': '1' }), 'dequeue=7'); // Empty
  assert.equal(op(p.worker(0), { 'x-op': 'dequeue', 'x-token': '99' }), 'dequeue=1'); // NotFound
});
