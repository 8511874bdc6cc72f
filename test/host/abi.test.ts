// Exact return codes and out-parameter writes of individual host calls,
// probed from a hand-written module that records results in its memory.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileWat } from './fixtures/compile.ts';
import { ProxyWasmHost } from './index.ts';

const PROBE = `(module
  (import "env" "proxy_get_header_map_value" (func $ghv (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_size" (func $ghs (param i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $ghp (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_status" (func $gbs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $gbb (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $sbb (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $sec (param i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $gp (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $cont (param i32) (result i32)))
  (memory (export "memory") 2)
  (global $mallocs (mut i32) (i32.const 0))
  (global $trapInMalloc (mut i32) (i32.const 0))
  (data (i32.const 16) "x-empty")
  (data (i32.const 32) "plugin_name")
  (func (export "malloc") (param i32) (result i32)
    (global.set $mallocs (i32.add (global.get $mallocs) (i32.const 1)))
    (if (global.get $trapInMalloc)
      (then (drop (call $gp (i32.const 32) (i32.const 11) (i32.const 200) (i32.const 204)))))
    (i32.add (i32.const 8192) (i32.mul (global.get $mallocs) (i32.const 256))))
  (func $r (param $i i32) (param $v i32)
    (i32.store (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 2))) (local.get $v)))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store (i32.const 100) (i32.const -1))
    (i32.store (i32.const 104) (i32.const -1))
    (call $r (i32.const 0) (call $ghv (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 100) (i32.const 104)))
    (call $r (i32.const 1) (i32.load (i32.const 100)))
    (call $r (i32.const 2) (i32.load (i32.const 104)))
    (call $r (i32.const 3) (global.get $mallocs))
    (call $r (i32.const 4) (call $ghs (i32.const 6) (i32.const 108)))
    (call $r (i32.const 5) (call $ghp (i32.const 6) (i32.const 100) (i32.const 104)))
    (call $r (i32.const 6) (i32.load (i32.const 104)))
    (call $r (i32.const 7) (call $gbs (i32.const 7) (i32.const 100) (i32.const 104)))
    (call $r (i32.const 8) (call $gbs (i32.const 0) (i32.const 100) (i32.const 104)))
    (call $r (i32.const 9) (i32.load (i32.const 100)))
    (call $r (i32.const 10) (call $gbs (i32.const 4) (i32.const 100) (i32.const 104)))
    (call $r (i32.const 11) (call $gbs (i32.const 9) (i32.const 100) (i32.const 104)))
    (call $r (i32.const 12) (call $sec (i32.const 9999)))
    (call $r (i32.const 13) (call $log (i32.const 6) (i32.const 16) (i32.const 7)))
    (call $r (i32.const 14) (call $gbb (i32.const 0) (i32.const 5) (i32.const 10) (i32.const 100) (i32.const 104)))
    (call $r (i32.const 15) (call $sbb (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 7)))
    (call $r (i32.const 16) (call $ghs (i32.const 0) (i32.const 108)))
    (call $r (i32.const 17) (i32.load (i32.const 108)))
    (call $r (i32.const 18) (call $cont (i32.const 4)))
    (call $r (i32.const 19) (call $cont (i32.const 3)))
    (global.set $trapInMalloc (i32.const 1))
    (call $r (i32.const 20) (call $gp (i32.const 32) (i32.const 11) (i32.const 100) (i32.const 104)))
    (i32.const 0))
)`;

test('host call results and out-parameters follow cpp-host/Envoy exactly', async () => {
  const host = new ProxyWasmHost({ canary: false });
  const p = host.loadPlugin({ wasm: await compileWat(PROBE), name: 'probe' });
  const w = p.worker(0);
  const s = w.newHttpStream();
  s.requestHeaders([[':method', 'GET'], [':path', '/'], [':authority', 'h'], ['x-empty', '']], true);
  const dv = w.vm.memory.dv;
  const r = (i: number) => dv.getUint32(1024 + 4 * i, true);
  const labelled = {
    emptyValueResult: r(0),
    emptyValuePtr: r(1), // an empty value is written as (0, 0) ...
    emptyValueSize: r(2),
    mallocCalls: r(3), // ... without calling malloc
    sizeOfHttpCallHeaders: r(4), // get_header_map_size needs a mutable map: BadArgument
    pairsOfMissingMap: r(5), // pairs of an unavailable map: Ok and (0, 0)
    pairsSize: r(6),
    pluginConfigOutsideConfigure: r(7), // NotFound
    requestBodyBeforeBody: r(8), // Ok, empty
    requestBodySize: r(9),
    httpCallBodyOutsideCallback: r(10), // NotFound
    badBufferType: r(11), // BadArgument
    effectiveContextUnknown: r(12), // BadArgument
    logLevel6: r(13), // BadArgument
    readPastEnd: r(14), // Ok, (0, 0)
    setBodyWithoutBody: r(15), // BadArgument: no mutable buffer outside body callbacks
    requestHeadersSize: r(16),
    requestHeadersBytes: r(17),
    continueBadType: r(18), // BadArgument
    continueUpstream: r(19), // Unimplemented
    propertyWithTrappingMalloc: r(20), // InvalidMemoryAccess
  };
  const bytes = [':method', 'GET', ':path', '/', ':authority', 'h', 'x-empty', ''].join('').length;
  assert.deepEqual(labelled, {
    emptyValueResult: 0,
    emptyValuePtr: 0,
    emptyValueSize: 0,
    mallocCalls: 0,
    sizeOfHttpCallHeaders: 2,
    pairsOfMissingMap: 0,
    pairsSize: 0,
    pluginConfigOutsideConfigure: 1,
    requestBodyBeforeBody: 0,
    requestBodySize: 0,
    httpCallBodyOutsideCallback: 1,
    badBufferType: 2,
    effectiveContextUnknown: 2,
    logLevel6: 2,
    readPastEnd: 0,
    setBodyWithoutBody: 2,
    requestHeadersSize: 0,
    requestHeadersBytes: bytes,
    continueBadType: 2,
    continueUpstream: 12,
    propertyWithTrappingMalloc: 6,
  });
  // The allocator made a host call that is not allowed while it runs: the VM failed.
  assert.equal(host.traps.length, 1);
  assert.equal(host.traps[0].function, 'malloc');
  assert.match(host.traps[0].message, /restricted_callback/);
  assert.equal(s.localReply?.status, 503);
});
