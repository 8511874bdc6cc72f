// A gateway made of the real build/wasm-epp.wasm under the proxy-wasm test host: a routing
// filter (the inference-aware listener) and a push filter (the loopback ext-config listener),
// both with vm_id "wasm-epp" so they share data, on N worker VMs.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ProxyWasmHost, type Plugin, type RequestResult, type RequestOptions, type HttpCallHandler } from '../host/index.ts';
import { endpoints, stateDocument, type EndpointSpec } from '../fuzz/generators.ts';
import { seedRound1, seedRound2 } from '../fixtures/seed-prefix-check.ts';

export const WASM = fileURLToPath(new URL('../../build/wasm-epp.wasm', import.meta.url));
export const TOKEN = 'test-push-token-0123456789';
export const POOL = 'default/vllm-qwen-pool';
export const DEST = 'x-gateway-destination-endpoint';

let wasmBytes: Uint8Array | null = null;
export function wasm(): Uint8Array {
  wasmBytes ??= readFileSync(WASM);
  return wasmBytes;
}

export interface GatewayOptions {
  workers?: number;
  config?: Record<string, unknown>;
  pushConfig?: Record<string, unknown>;
  env?: Record<string, string>;
  clock?: 'manual' | 'real';
  /** The upstream of the routing filter's outbound calls (prefill copies, aborts). */
  httpCallHandler?: HttpCallHandler;
  /** Seed of the host's WASI random source (default 1): replicas of one gateway differ in it. */
  seed?: number;
}

export class Gateway {
  readonly host: ProxyWasmHost;
  readonly routing: Plugin;
  readonly push: Plugin;
  private pushes = 0;

  constructor(opts: GatewayOptions = {}) {
    // Seeded WASI random (the filter's tie-breaking), so every run routes the same way.
    this.host = new ProxyWasmHost({ clock: opts.clock ?? 'manual', logLevel: 'debug', randomSeed: opts.seed ?? 1 });
    const workers = opts.workers ?? 2;
    // Both filters share one vm_config (so one VM per worker), environment included.
    const env = opts.env ?? { WASM_EPP_PUSH_TOKEN: TOKEN };
    this.routing = this.host.loadPlugin({
      env,
      wasm: wasm(), name: 'wasm-epp', rootId: 'wasm-epp', vmId: 'wasm-epp', workers,
      configuration: JSON.stringify({ pool: POOL, ...opts.config }),
      allowOnHeadersStopIteration: true, bufferLimitBytes: 16 * 1024 * 1024,
      httpCallHandler: opts.httpCallHandler,
    });
    this.push = this.host.loadPlugin({
      wasm: wasm(), name: 'wasm-epp-push', rootId: 'wasm-epp', vmId: 'wasm-epp', workers,
      configuration: JSON.stringify({ accept_push: true, ...opts.pushConfig }),
      env,
      allowOnHeadersStopIteration: true, bufferLimitBytes: 16 * 1024 * 1024,
    });
  }

  get now(): number {
    return this.host.clock.nowMs();
  }

  pushRaw(body: string | Uint8Array, headers: Record<string, string> = {}, worker = 0, method = 'POST', path = '/wasm-epp/v1/state'): RequestResult {
    return this.push.worker(worker).requestSync({
      method, path, body: method === 'GET' ? undefined : body,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, ...headers },
    });
  }

  // Pushes a state document built from endpoint specs; asserts nothing.
  pushState(eps: EndpointSpec[], extra: Partial<Parameters<typeof stateDocument>[0]> = {}, worker = 0): RequestResult {
    this.pushes++;
    const doc = stateDocument({ version: this.pushes, generatedAtMs: this.now, endpoints: eps, ...extra });
    return this.pushRaw(JSON.stringify(doc), {}, worker);
  }

  chat(body: unknown, opts: RequestOptions = {}, worker = 0): RequestResult {
    return this.routing.worker(worker).requestSync({
      method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', ...(opts.headers as Record<string, string> | undefined) },
      body: typeof body === 'string' ? body : JSON.stringify(body), ...withoutHeaders(opts),
    });
  }

  // Request lines the filter logged ("Request Handled ...") as key/value maps.
  handled(): Record<string, string>[] {
    return this.host.logs
      .filter((e) => e.message.startsWith('Request Handled'))
      .map((e) => Object.fromEntries(e.message.split(' ').slice(2).map((kv) => kv.split('=') as [string, string])));
  }

  counter(name: string): number {
    return this.host.metric(`wasm_epp.${name}`) ?? 0;
  }
}

function withoutHeaders(o: RequestOptions): RequestOptions {
  const { headers: _h, ...rest } = o;
  return rest;
}

export { endpoints, stateDocument };

export function errorCode(r: RequestResult): string | undefined {
  if (r.kind !== 'local') return undefined;
  try {
    return JSON.parse(r.bodyText).error.code;
  } catch {
    return `unparseable: ${r.bodyText}`;
  }
}

// The seeds' prefix check bodies (Qwen3-32B deployment).
export const ROUND1 = seedRound1();
export const ROUND2 = seedRound2();
