// The local stack's Envoy data plane: what can be checked without an Envoy binary, and a plain
// statement of what is not run when none is installed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { installedEnvoy, parseEnvoyVersion, wasmLogMessage } from '../../scripts/local-stack/envoy.ts';

test('reads the version Envoy prints', () => {
  assert.deepEqual(parseEnvoyVersion('envoy  version: 3fb3c2f2c5ac0f4b8f7f0b7c/1.35.2/Clean/RELEASE/BoringSSL'), [1, 35, 2]);
  assert.deepEqual(parseEnvoyVersion('envoy version: abc/1.34.0-dev/Modified/DEBUG/BoringSSL-FIPS'), [1, 34, 0]);
  assert.equal(parseEnvoyVersion('something else'), null);
});

test('finds the filter\'s lines in Envoy\'s log', () => {
  const line = '[2026-11-20 10:00:00.000][17][info][wasm] [source/extensions/common/wasm/context.cc:1195] wasm log wasm-epp wasm-epp wasm-epp: Request Handled model=/model/qwen target=/model/qwen pod=qwen-1 endpoint=127.0.0.12:8000';
  assert.equal(wasmLogMessage(line), 'Request Handled model=/model/qwen target=/model/qwen pod=qwen-1 endpoint=127.0.0.12:8000');
  assert.equal(wasmLogMessage('[info][main] starting main dispatch loop'), null);
});

test('npm start uses Envoy when a usable one is installed', (t) => {
  const envoy = installedEnvoy();
  if (!envoy) {
    t.skip('envoy is not installed on this machine: the Envoy data plane of npm start was not run (the proxy-wasm host data plane is tested in local-stack.test.ts)');
    return;
  }
  t.diagnostic(`envoy ${envoy.version?.join('.') ?? '(unknown version)'} found; usable: ${envoy.usable}`);
  assert.equal(typeof envoy.usable, 'boolean');
});
