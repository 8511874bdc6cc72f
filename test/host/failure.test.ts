// VM failure: traps, proc_exit and aborts fail the worker's VM; streams then
// get Envoy's fail-closed 503 (or bypass the filter with fail_open). Bad
// pointers in host calls are InvalidMemoryAccess, not failures.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFixture } from './fixtures/compile.ts';
import { ProxyWasmHost, type PluginOptions } from './index.ts';

const wasmP = compileFixture('faults');

async function setup(extra: Partial<PluginOptions> = {}) {
  const host = new ProxyWasmHost({ workers: 2 });
  const p = host.loadPlugin({ wasm: await wasmP, name: 'epp', rootId: 'epp', vmId: 'epp', ...extra });
  return { host, p };
}

test('a trap fails the worker VM: 503 wasm_fail_stream now and for later streams on that worker only', async () => {
  const { host, p } = await setup();
  const ok = p.worker(0).requestSync({});
  assert.equal(ok.kind, 'upstream');
  assert.equal(host.traps.length, 0);

  const r = p.worker(0).requestSync({ headers: { 'x-action': 'trap' } });
  assert.equal(r.kind, 'local');
  if (r.kind !== 'local') return;
  assert.equal(r.status, 503);
  assert.equal(r.bodyText, '');
  assert.equal(r.details, 'wasm_fail_stream');
  assert.deepEqual(r.headers, [[':status', '503']]);
  assert.equal(host.traps.length, 1);
  assert.equal(host.traps[0].function, 'proxy_on_request_headers');
  assert.equal(host.traps[0].worker, 0);
  assert.match(host.traps[0].message, /Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable/);
  assert.equal(p.worker(0).failed, true);
  // After the failure Envoy makes no more calls into this VM for the stream.
  assert.deepEqual(r.stream.callbacks, ['on_context_create', 'on_request_headers']);

  const later = p.worker(0).requestSync({});
  assert.equal(later.kind === 'local' && later.status, 503);
  assert.deepEqual(later.stream.callbacks, [], 'no VM calls for streams on a failed VM');
  assert.equal(later.stream.contextId, 0);

  const other = p.worker(1).requestSync({});
  assert.equal(other.kind, 'upstream');
  assert.equal(p.worker(1).failed, false);
  assert.ok(host.logs.some((l) => l.source === 'host' && l.levelName === 'error' && /Wasm VM failed/.test(l.message)));
});

test('fail_open: the failing stream continues and later streams bypass the filter', async () => {
  const { host, p } = await setup({ failOpen: true });
  const r = p.worker(0).requestSync({ path: '/x', headers: { 'x-action': 'trap' } });
  assert.equal(r.kind, 'upstream');
  assert.equal(r.kind === 'upstream' && r.header(':path'), '/x');
  const later = p.worker(0).requestSync({ path: '/y' });
  assert.equal(later.kind, 'upstream');
  assert.deepEqual(later.stream.callbacks, []);
  assert.equal(later.stream.mode, 'absent');
  assert.equal(host.traps.length, 1);
});

test('proc_exit and an AssemblyScript abort are VM failures too', async () => {
  const a = await setup();
  const r1 = a.p.worker(0).requestSync({ headers: { 'x-action': 'exit' } });
  assert.equal(r1.kind === 'local' && r1.status, 503);
  assert.match(a.host.traps[0].message, /proc_exit\(3\)/);

  const b = await setup();
  const r2 = b.p.worker(1).requestSync({ headers: { 'x-action': 'throw' } });
  assert.equal(r2.kind === 'local' && r2.status, 503);
  assert.ok(b.p.logs.some((l) => l.levelName === 'critical' && l.message.startsWith('abort: boom')));
  assert.equal(b.host.traps.length, 1);
  assert.equal(b.host.traps[0].worker, 1);
});

test('out-of-bounds pointers in host calls return InvalidMemoryAccess (6) and do not fail the VM', async () => {
  const { host, p } = await setup();
  const r = p.worker(0).requestSync({ headers: { 'x-action': 'oob' } });
  assert.equal(r.kind, 'local');
  // The map-type check comes before any memory check (BadArgument = 2).
  assert.equal(r.kind === 'local' && r.bodyText, 'log=6 get=6 buf=6 shared=6 badtype=2');
  assert.equal(host.traps.length, 0);
  assert.equal(p.worker(0).failed, false);
});

test('a trap in the response path answers 503 directly when the response has not gone out', async () => {
  const { host, p } = await setup();
  const r = p.worker(0).requestSync({ response: { status: 200, headers: { 'x-trap-response': '1' }, body: 'upstream body' } });
  assert.equal(r.kind, 'local');
  assert.equal(r.kind === 'local' && r.status, 503);
  assert.equal(r.kind === 'local' && r.bodyText, '');
  assert.equal(host.traps[0].function, 'proxy_on_response_headers');
  assert.ok(!p.logs.some((l) => l.message === 'on_log'), 'on_log is not called on a failed VM');
});

test('without any trap, the lifecycle callbacks all run (baseline for the checks above)', async () => {
  const { host, p } = await setup();
  const r = p.worker(0).requestSync({ body: 'x' });
  assert.equal(r.kind, 'upstream');
  assert.deepEqual(p.logs.filter((l) => l.worker === 0).map((l) => l.message), ['on_log', 'on_done', 'on_delete']);
  assert.deepEqual(host.traps, []);
});

test('a plugin configured after a worker VM failed gets a fresh VM there; the old plugin keeps failing', async () => {
  const { host, p } = await setup();
  p.worker(0).requestSync({ headers: { 'x-action': 'trap' } });
  assert.equal(p.worker(0).failed, true);
  const again = host.loadPlugin({ wasm: await wasmP, name: 'epp', rootId: 'epp', vmId: 'epp' });
  assert.notEqual(again.worker(0).vm, p.worker(0).vm);
  assert.equal(again.worker(1).vm, p.worker(1).vm, 'healthy VMs are still shared');
  assert.equal(again.worker(0).requestSync({}).kind, 'upstream');
  const old = p.worker(0).requestSync({});
  assert.equal(old.kind === 'local' && old.status, 503);
});
