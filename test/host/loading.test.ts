// Loading and starting modules: import/export checks, ABI detection, the
// initialization entry points, the start sequence, configuration rejection,
// properties, WASI environ, log levels, canary and shared VMs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFixture, compileWat } from './fixtures/compile.ts';
import { ProxyWasmHost, WasmLoadError } from './index.ts';

/** A minimal valid module; `imports`, `abi` and `body` vary per test. */
function wat({ imports = '', abi = '0_2_1', body = '', malloc = true }: { imports?: string; abi?: string; body?: string; malloc?: boolean }): string {
  return `(module
    ${imports}
    (memory (export "memory") 1)
    (data (i32.const 16) "hello from wat")
    ${malloc ? '(func (export "malloc") (param i32) (result i32) (i32.const 4096))' : ''}
    ${abi ? `(func (export "proxy_abi_version_${abi}"))` : ''}
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
    (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
    (func (export "proxy_on_context_create") (param i32 i32))
    ${body}
  )`;
}

const LOG = '(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))';

async function load(text: string, opts: Partial<Parameters<ProxyWasmHost['loadPlugin']>[0]> = {}) {
  const host = new ProxyWasmHost();
  const plugin = host.loadPlugin({ wasm: await compileWat(text), name: 'p', rootId: 'r', vmId: 'v', ...opts });
  return { host, plugin };
}

test('refuses a module importing env.abort, naming the import', async () => {
  const text = wat({ imports: '(import "env" "abort" (func (param i32 i32 i32 i32)))' });
  await assert.rejects(load(text), (e: Error) => e instanceof WasmLoadError && /missing import: env\.abort$/.test(e.message));
});

test('proxy_clear_route_cache is only provided under ABI 0.1.0', async () => {
  const imp = '(import "env" "proxy_clear_route_cache" (func (result i32)))';
  await assert.rejects(load(wat({ imports: imp, abi: '0_2_1' })), /missing import: env\.proxy_clear_route_cache/);
  await assert.rejects(load(wat({ imports: imp, abi: '0_2_0' })), /missing import: env\.proxy_clear_route_cache/);
  const { plugin } = await load(wat({ imports: imp, abi: '0_1_0' }));
  assert.equal(plugin.group.abi, '0.1.0');
});

test('per-ABI imports: get_log_level needs 0.2.1, continue_stream needs 0.2.x', async () => {
  const lvl = '(import "env" "proxy_get_log_level" (func (param i32) (result i32)))';
  await assert.rejects(load(wat({ imports: lvl, abi: '0_2_0' })), /missing import: env\.proxy_get_log_level/);
  assert.equal((await load(wat({ imports: lvl, abi: '0_2_1' }))).plugin.group.abi, '0.2.1');
  const cont = '(import "env" "proxy_continue_stream" (func (param i32) (result i32)))';
  await assert.rejects(load(wat({ imports: cont, abi: '0_1_0' })), /missing import: env\.proxy_continue_stream/);
  assert.equal((await load(wat({ imports: cont, abi: '0_2_0' }))).plugin.group.abi, '0.2.0');
});

test('ABI version: missing marker is refused; the first marker export wins', async () => {
  await assert.rejects(load(wat({ abi: '' })), /Missing or unknown Proxy-Wasm ABI version/);
  await assert.rejects(load(wat({ abi: '0_3_0' })), /Missing or unknown Proxy-Wasm ABI version/);
  const both = wat({ abi: '0_1_0', body: '(func (export "proxy_abi_version_0_2_1"))' });
  assert.equal((await load(both)).plugin.group.abi, '0.1.0');
});

test('an import with the wrong signature is refused like V8 link does', async () => {
  const text = wat({ imports: '(import "env" "proxy_log" (func (param i32 i32) (result i32)))' });
  await assert.rejects(load(text), /import type mismatch: env\.proxy_log, want: \(i32, i32\) -> \(i32\), but host exports: \(i32, i32, i32\) -> \(i32\)/);
});

test('global imports are refused; both WASI module names are provided', async () => {
  await assert.rejects(load(wat({ imports: '(import "env" "g" (global i32))' })), /missing import: env\.g/);
  const wasi = `(import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))`;
  assert.ok((await load(wat({ imports: wasi }))).plugin);
  // cpp-host's path_symlink takes 4 parameters, so the WASI-spec 5-parameter import does not link.
  const symlink = '(import "wasi_snapshot_preview1" "path_symlink" (func (param i32 i32 i32 i32 i32) (result i32)))';
  await assert.rejects(load(wat({ imports: symlink })), /import type mismatch: wasi_snapshot_preview1\.path_symlink/);
});

test('malloc is required (proxy_on_memory_allocate also works); callback signatures are checked', async () => {
  await assert.rejects(load(wat({ malloc: false })), /missing malloc function/);
  const alt = wat({ malloc: false, body: '(func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))' });
  assert.ok((await load(alt)).plugin);
  const bad = wat({ body: '(func (export "proxy_on_tick") (param i32) (result i32) (i32.const 0))' });
  await assert.rejects(load(bad), /Bad function signature for: proxy_on_tick, want: \(i32\) -> \(\), but the module exports: \(i32\) -> \(i32\)/);
});

test('_initialize runs with host calls restricted; then main; _start when there is no _initialize', async () => {
  const init = wat({
    imports: `${LOG}\n(import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))`,
    body: `(func (export "_initialize") (drop (call $log (i32.const 2) (i32.const 16) (i32.const 14))) (drop (call $tick (i32.const 5))))`,
  });
  await assert.rejects(load(init), /_initialize failed: restricted_callback/);

  const order = wat({
    imports: LOG,
    body: `(data (i32.const 64) "init") (data (i32.const 80) "main") (data (i32.const 96) "start")
      (func (export "_initialize") (drop (call $log (i32.const 2) (i32.const 64) (i32.const 4))))
      (func (export "main") (param i32 i32) (result i32) (drop (call $log (i32.const 2) (i32.const 80) (i32.const 4))) (i32.const 0))
      (func (export "_start") (drop (call $log (i32.const 2) (i32.const 96) (i32.const 5))))`,
  });
  const { host } = await load(order, { workers: 1 });
  const w0 = host.logs.filter((l) => l.worker === 0).map((l) => l.message);
  assert.deepEqual(w0, ['init', 'main']);

  const start = wat({ imports: LOG, body: `(data (i32.const 96) "start") (func (export "_start") (drop (call $log (i32.const 2) (i32.const 96) (i32.const 5))))` });
  const s = await load(start);
  assert.deepEqual(s.host.logs.filter((l) => l.worker === 0).map((l) => l.message), ['start']);
});

test('WASI fd_write goes to the log: stdout at info, stderr at error, trailing newline dropped', async () => {
  const text = wat({
    imports: '(import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))',
    body: `(data (i32.const 200) "out line\\0a") (data (i32.const 300) "\\c8\\00\\00\\00\\09\\00\\00\\00")
      (global $r (mut i32) (i32.const 0))
      (func (export "proxy_on_tick") (param i32)
        (global.set $r (call $w (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))
        (drop (call $w (i32.const 2) (i32.const 300) (i32.const 1) (i32.const 400)))
        (drop (call $w (i32.const 9) (i32.const 300) (i32.const 1) (i32.const 400))))`,
  });
  const { host, plugin } = await load(text);
  plugin.worker(0).root.onTick();
  const logs = plugin.logs.filter((l) => l.source === 'wasi');
  assert.deepEqual(logs.map((l) => [l.levelName, l.message]), [['info', 'out line'], ['error', 'out line']]);
  assert.equal(plugin.worker(0).vm.memory.getU32(400), 9);
  assert.equal(host.traps.length, 0);
});

test('start sequence per worker: context_create(root, 0) -> vm_start(vm_config size) -> configure(config size)', async () => {
  const host = new ProxyWasmHost();
  const plugin = host.loadPlugin({
    wasm: await compileFixture('lifecycle'),
    name: 'epp',
    rootId: 'epp-root',
    vmId: 'epp-vm',
    configuration: 'mode=x',
    vmConfiguration: 'vmcfg',
    workers: 2,
  });
  for (const w of [0, 1]) {
    const msgs = plugin.logs.filter((l) => l.worker === w).map((l) => l.message);
    assert.deepEqual(msgs.slice(0, 3), [
      'context_create id=1 root=0',
      // plugin configuration is not readable in on_vm_start (NotFound = 1)
      'vm_start root=1 size=5 vm_config=vmcfg plugin_config_status=1',
      'configure root=1 size=6 config=mode=x',
    ]);
    const entry = plugin.logs.find((l) => l.worker === w)!;
    assert.equal(entry.prefix, ' epp-root epp-vm'); // root contexts log as " root_id vm_id"
    assert.equal(entry.contextId, 1);
  }
  assert.equal(plugin.workers.length, 2);
  assert.notEqual(plugin.worker(0).vm, plugin.worker(1).vm);
});

test('properties: plugin_name/root_id/vm_id; request.* is NotFound on a root context; injected properties', async () => {
  const host = new ProxyWasmHost();
  const plugin = host.loadPlugin({
    wasm: await compileFixture('lifecycle'),
    name: 'epp',
    rootId: 'epp-root',
    vmId: 'epp-vm',
    properties: { 'xds.cluster_name': 'outbound|80||svc' },
  });
  const line = plugin.logs.find((l) => l.worker === 0 && l.message.startsWith('props'))!.message;
  assert.equal(line, 'props name=epp root_id=epp-root vm_id=epp-vm request_path=<1> custom=outbound|80||svc');
});

test('WASI environ comes from the plugin env', async () => {
  const host = new ProxyWasmHost();
  const plugin = host.loadPlugin({ wasm: await compileFixture('lifecycle'), env: { EPP_MODE: 'prefix', ZONE: 'a' } });
  assert.ok(plugin.logs.some((l) => l.worker === 0 && l.message === 'env=EPP_MODE=prefix;ZONE=a'));
});

test('log level: default info drops debug lines; debug level is reported by proxy_get_log_level', async () => {
  const wasm = await compileFixture('lifecycle');
  const info = new ProxyWasmHost().loadPlugin({ wasm });
  assert.ok(info.logs.some((l) => l.message === 'log_level=2'));
  assert.ok(!info.logs.some((l) => l.message === 'a debug line'));
  assert.ok(info.logs.some((l) => l.message === 'a warning' && l.levelName === 'warn'));
  const debug = new ProxyWasmHost().loadPlugin({ wasm, logLevel: 'debug' });
  assert.ok(debug.logs.some((l) => l.message === 'log_level=1'));
  assert.ok(debug.logs.some((l) => l.message === 'a debug line' && l.level === 1));
});

test('configure returning false rejects the plugin with its logs; so does vm_start false or a trap', async () => {
  const wasm = await compileFixture('lifecycle');
  const host = new ProxyWasmHost();
  assert.throws(
    () => host.loadPlugin({ wasm, name: 'bad', configuration: 'reject=yes' }),
    (e: Error) =>
      e instanceof WasmLoadError &&
      /Wasm plugin "bad" rejected: Failed to configure base Wasm plugin/.test(e.message) &&
      e.message.includes('configure root=1 size=10 config=reject=yes'),
  );
  assert.throws(() => new ProxyWasmHost().loadPlugin({ wasm, vmConfiguration: 'vm_start=fail' }), /Failed to start base Wasm/);
  const h3 = new ProxyWasmHost();
  assert.throws(() => h3.loadPlugin({ wasm, configuration: 'trap=yes' }), /proxy_on_configure failed: Uncaught RuntimeError: unreachable/);
  assert.equal(h3.traps.length, 1);
  assert.equal(h3.traps[0].worker, 'canary');
});

test('the canary VM runs start+configure once more than the workers; it can be disabled', async () => {
  const wasm = await compileFixture('lifecycle');
  const host = new ProxyWasmHost();
  const p = host.loadPlugin({ wasm, workers: 2 });
  const starts = p.logs.filter((l) => l.message.startsWith('vm_start')).map((l) => l.worker);
  assert.deepEqual(starts, ['canary', 0, 1]);
  assert.ok(host.logs.some((l) => l.worker === 'base' && l.message === 'initialized'));
  const bare = new ProxyWasmHost({ canary: false }).loadPlugin({ wasm, workers: 2 });
  assert.deepEqual(bare.logs.filter((l) => l.message.startsWith('vm_start')).map((l) => l.worker), [0, 1]);
});

test('plugins with the same vm_id, vm config and code share worker VMs (one root context each)', async () => {
  const wasm = await compileFixture('lifecycle');
  const host = new ProxyWasmHost({ workers: 2 });
  const a = host.loadPlugin({ wasm, name: 'data-path', rootId: 'a', vmId: 'shared' });
  const b = host.loadPlugin({ wasm, name: 'push', rootId: 'b', vmId: 'shared' });
  assert.equal(a.worker(1).vm, b.worker(1).vm);
  assert.equal(a.worker(0).root.id, 1);
  assert.equal(b.worker(0).root.id, 2);
  // on_vm_start runs for every root context, even in an already started VM.
  assert.ok(b.logs.some((l) => l.worker === 0 && l.message.startsWith('vm_start root=2')));
  const c = host.loadPlugin({ wasm, name: 'other', vmId: 'different' });
  assert.notEqual(c.worker(0).vm, a.worker(0).vm);
  assert.throws(() => host.loadPlugin({ wasm, vmId: 'shared', workers: 3 }), /already runs on 2 worker/);
});
