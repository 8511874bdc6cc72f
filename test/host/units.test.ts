// Building blocks in isolation: pairs encoding, header map rules, body buffer
// edit rules, shared-data CAS numbering, the binary reader and the manual clock.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyBuffer } from './buffer.ts';
import { ManualClock } from './clock.ts';
import { compileWat } from './fixtures/compile.ts';
import { HeaderMap } from './header-map.ts';
import { decodePairs, encodePairs } from './pairs.ts';
import { SharedData } from './shared-data.ts';
import { readModuleShape } from './wasm-binary.ts';

const text = new TextEncoder();

function decode(b: Uint8Array) {
  return decodePairs(b, new DataView(b.buffer, b.byteOffset, b.byteLength), 0, b.length);
}

test('pairs: cpp-host layout round-trips, and anything malformed decodes to an empty list', () => {
  const pairs: Array<[string, string]> = [[':path', '/a'], ['x-é', 'ünï'], ['empty', '']];
  const b = encodePairs(pairs);
  const dv = new DataView(b.buffer);
  assert.equal(dv.getUint32(0, true), 3);
  assert.equal(dv.getUint32(4, true), 5); // ':path'
  assert.equal(dv.getUint32(8, true), 2); // '/a'
  assert.equal(b[4 + 3 * 8 + 5], 0, 'names are NUL-terminated');
  assert.deepEqual(decode(b), pairs);
  assert.deepEqual(decode(b.subarray(0, b.length - 1)), []); // truncated
  const trailing = new Uint8Array(b.length + 1);
  trailing.set(b);
  assert.deepEqual(decode(trailing), []); // extra bytes
  const noNul = b.slice();
  noNul[4 + 3 * 8 + 5] = 1;
  assert.deepEqual(decode(noNul), []);
  const tooMany = new Uint8Array(4);
  new DataView(tooMany.buffer).setUint32(0, 1025, true);
  assert.deepEqual(decode(tooMany), []);
  assert.deepEqual(decode(new Uint8Array(0)), []);
});

test('header map: lower-cased keys, pseudo-headers first, setCopy replaces all values, byte size', () => {
  const m = HeaderMap.from([['Accept', 'a'], [':Path', '/'], ['X-A', '1'], ['x-a', '2']]);
  m.add(':method', 'GET');
  assert.deepEqual(m.pairs(), [[':path', '/'], [':method', 'GET'], ['accept', 'a'], ['x-a', '1'], ['x-a', '2']]);
  assert.equal(m.get('X-A'), '1');
  m.set('x-a', '3');
  assert.deepEqual(m.getAll('x-a'), ['3']);
  assert.deepEqual(m.pairs().map(([k]) => k), [':path', ':method', 'accept', 'x-a']);
  m.remove(':path');
  m.add(':authority', 'h');
  assert.deepEqual(m.pairs().map(([k]) => k), [':method', ':authority', 'accept', 'x-a']);
  assert.equal(m.byteSize(), ':method'.length + 3 + ':authority'.length + 1 + 'accept'.length + 1 + 'x-a'.length + 1);
  assert.equal(HeaderMap.from({ 'ÄB': 'v' }).pairs()[0][0], 'Äb', 'only ASCII is lower-cased');
});

test('body buffer: Envoy set_buffer_bytes rules', () => {
  const b = () => new BodyBuffer(text.encode('hello world'));
  const s = (x: BodyBuffer) => new TextDecoder().decode(x.bytes());
  let x = b();
  assert.equal(x.copyFrom(0, 11, text.encode('R')), 0);
  assert.equal(s(x), 'R');
  x = b();
  assert.equal(x.copyFrom(0, 0, text.encode('>')), 0);
  assert.equal(s(x), '>hello world');
  x = b();
  assert.equal(x.copyFrom(0, 5, text.encode('HELLO')), 0);
  assert.equal(s(x), 'HELLO world');
  x = b();
  assert.equal(x.copyFrom(0, 99, text.encode('all')), 0, 'drain is clamped');
  assert.equal(s(x), 'all');
  x = b();
  assert.equal(x.copyFrom(11, 3, text.encode('!')), 0);
  assert.equal(s(x), 'hello world!');
  x = b();
  assert.equal(x.copyFrom(20, 0, text.encode('!')), 0);
  assert.equal(s(x), 'hello world!');
  x = b();
  assert.equal(x.copyFrom(5, 1, text.encode('_')), 2, 'BadArgument');
  assert.equal(s(x), 'hello world');
  const y = new BodyBuffer();
  y.append(text.encode('ab'));
  y.append(text.encode('cd'));
  y.drain(3);
  assert.equal(s(y), 'd');
});

test('shared data: one CAS sequence for all vm_ids, NotFound for missing keys, CasMismatch only on existing keys', () => {
  const d = new SharedData();
  assert.equal(d.get('a', 'k'), undefined);
  assert.equal(d.set('a', 'k', text.encode('1'), 0), 0);
  assert.equal(d.get('a', 'k')!.cas, 1);
  assert.equal(d.set('b', 'k', text.encode('x'), 0), 0);
  assert.equal(d.get('b', 'k')!.cas, 2, 'the counter is global, not per vm_id');
  assert.equal(d.set('a', 'k', text.encode('2'), 2), 8);
  assert.equal(d.set('a', 'k', text.encode('2'), 1), 0);
  assert.equal(d.get('a', 'k')!.cas, 3);
  assert.equal(d.set('a', 'new', text.encode('n'), 999), 0);
  assert.equal(d.remove('a', 'new', 1), 8);
  assert.equal(d.remove('a', 'new', 0), 0);
  assert.equal(d.remove('a', 'new', 0), 1);
  assert.deepEqual(d.keys('a'), ['k']);
});

test('binary reader: import/export signatures and the first ABI marker', async () => {
  const bin = await compileWat(`(module
    (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
    (import "env" "proxy_increment_metric" (func (param i32 i64) (result i32)))
    (import "env" "mem" (memory 2 10))
    (func (export "proxy_abi_version_0_2_0"))
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "proxy_on_tick") (param i32))
    (global (export "g") i32 (i32.const 1)))`);
  const shape = readModuleShape(bin);
  assert.equal(shape.abi, '0.2.0');
  assert.deepEqual(shape.imports.map((i) => [`${i.module}.${i.name}`, i.kind, i.sig ?? i.limits]), [
    ['env.proxy_log', 'function', 'iii>i'],
    ['env.proxy_increment_metric', 'function', 'iI>i'],
    ['env.mem', 'memory', { min: 2, max: 10, shared: false }],
  ]);
  assert.deepEqual(shape.exports.map((e) => [e.name, e.sig]), [
    ['proxy_abi_version_0_2_0', '>'],
    ['proxy_abi_version_0_2_1', '>'],
    ['proxy_on_tick', 'i>'],
    ['g', undefined],
  ]);
  assert.throws(() => readModuleShape(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), /bad magic/);
});

test('manual clock: timers fire in due order within advance(), ties in creation order', () => {
  const c = new ManualClock(1000);
  const fired: string[] = [];
  c.setTimer(30, () => fired.push(`a@${c.nowMs()}`));
  c.setTimer(10, () => {
    fired.push(`b@${c.nowMs()}`);
    c.setTimer(10, () => fired.push(`c@${c.nowMs()}`));
  });
  const d = c.setTimer(20, () => fired.push('d'));
  c.setTimer(30, () => fired.push(`e@${c.nowMs()}`));
  d.cancel();
  assert.equal(c.advance(25), 2);
  assert.deepEqual(fired, ['b@1010', 'c@1020']);
  assert.equal(c.nowMs(), 1025);
  c.advance(5);
  assert.deepEqual(fired, ['b@1010', 'c@1020', 'a@1030', 'e@1030']);
  assert.equal(c.realtimeNs(), 1_030_000_000n);
});
