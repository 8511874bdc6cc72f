// The local stack: five simulated vLLM pods, the sidecar in file mode and a gateway with the
// seeds' two listeners (8080 plain round-robin, 8081 through wasm-epp). `npm start` runs it
// (scripts/local-stack/start.ts); the end-to-end tests start it time-scaled.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPod, type Pod } from '../../test/sim/server.ts';
import { startGateway, type Gateway } from './gateway.ts';
import { installedEnvoy, startEnvoyGateway, wasmLogMessage } from './envoy.ts';
import type { LogEntry } from '../../test/host/index.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const POOL = 'default/vllm-qwen-pool';
export const MODEL = '/model/qwen';
// The seeds' deployment serves two LoRA adapters next to the base model.
export const LORA_MODULES = ['travel-helper-v1=/models/Qwen-TravelHelper-Lora', 'travel-helper-v2=/models/Qwen-TravelHelper-Lora-v2'];

export interface StackOptions {
  /** Simulated time runs this many times faster than the wall clock (1: as on a real A10). */
  timeScale?: number;
  plainPort?: number;
  inferencePort?: number;
  pushPort?: number;
  /** Loopback addresses of the pods, one per pod (default the ones in deploy/examples/pods.yaml). */
  podHosts?: string[];
  podPort?: number;
  /** Gateway log lines (Request Handled, warnings). */
  onGatewayLog?: (entry: LogEntry) => void;
  /** The sidecar's JSON log lines. */
  onSidecarLog?: (line: string) => void;
  /** Sidecar flags added to the defaults. */
  sidecarArgs?: string[];
  /** A manifests directory to use as is (else one is written for `podHosts`). */
  manifests?: string;
  /** Annotate the written pool with this routing strategy. */
  strategy?: 'DEFAULT' | 'PREFIX_CACHE';
  /**
   * 'envoy': a real Envoy with deploy/envoy/envoy.yaml (fixed ports and pod addresses);
   * 'host': build/wasm-epp.wasm under the project's proxy-wasm host behind an HTTP front;
   * 'auto' (default): Envoy when `envoy` >= 1.35 is on PATH, else the host.
   */
  dataPlane?: 'auto' | 'envoy' | 'host';
  /** Envoy's own log lines (the Envoy data plane only). */
  onEnvoyLog?: (line: string) => void;
}

export interface StackGateway {
  kind: 'envoy' | 'host';
  plainUrl: string;
  inferenceUrl: string;
  pushUrl: string;
  /** The proxy-wasm host (the host data plane only). */
  host?: Gateway['host'];
  close(): Promise<void>;
}

export interface Stack {
  pods: Array<{ name: string; host: string; pod: Pod }>;
  gateway: StackGateway;
  sidecar: ChildProcess;
  tokenFile: string;
  manifests: string;
  stop(): Promise<void>;
}

export const DEFAULT_POD_HOSTS = ['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14', '127.0.0.15'];

// The seeds' InferencePool and InferenceModel, and Pod objects for the simulated pods.
function writeManifests(dir: string, hosts: string[], port: number, strategy?: string): void {
  copyFileSync(join(ROOT, 'deploy/examples/inference-pool.yaml'), join(dir, 'inference-pool.yaml'));
  const pods = hosts.map((ip, i) => [
    'apiVersion: v1', 'kind: Pod', 'metadata:', `  name: qwen-${i}`, '  namespace: default', '  labels:', '    app: qwen',
    'spec:', '  containers:', '  - name: vllm', '    image: vllm/vllm-openai:latest', '    ports:', `    - containerPort: ${port}`,
    'status:', '  phase: Running', `  podIP: ${ip}`, '  conditions:', '  - type: Ready', '    status: "True"',
  ].join('\n'));
  writeFileSync(join(dir, 'pods.yaml'), pods.join('\n---\n') + '\n');
  let pool = readFileSync(join(dir, 'inference-pool.yaml'), 'utf8').replace('targetPortNumber: 8000', `targetPortNumber: ${port}`);
  if (strategy) pool = pool.replace('  name: vllm-qwen-pool\n  namespace: default\n', `  name: vllm-qwen-pool\n  namespace: default\n  annotations:\n    inference.networking.x-k8s.io/routing-strategy: ${strategy}\n`);
  writeFileSync(join(dir, 'inference-pool.yaml'), pool);
}

export async function startLocalStack(o: StackOptions = {}): Promise<Stack> {
  const hosts = o.podHosts ?? DEFAULT_POD_HOSTS;
  const podPort = o.podPort ?? 8000;
  const work = mkdtempSync(join(tmpdir(), 'wasm-epp-stack-'));
  const started: Array<() => Promise<void> | void> = [() => rmSync(work, { recursive: true, force: true })];
  const stopAll = async () => {
    for (const f of started.reverse()) await f();
  };
  try {
    const pods = [];
    for (let i = 0; i < hosts.length; i++) {
      let pod: Pod;
      try {
        pod = await startPod({ host: hosts[i], port: podPort, model: MODEL, loraModules: LORA_MODULES, timeScale: o.timeScale ?? 1, engine: { maxLoras: 2, maxCpuLoras: 4, maxModelLen: 8192 } });
      } catch (err) {
        throw new Error(`cannot start a simulated pod on ${hosts[i]}:${podPort} (${(err as Error).message}); the local stack binds loopback addresses 127.0.0.11-15, which Linux provides`);
      }
      pods.push({ name: `qwen-${i}`, host: hosts[i], pod });
      started.push(() => pod.close());
    }
    const token = randomBytes(24).toString('hex');
    const tokenFile = join(work, 'push-token');
    writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
    let manifests = o.manifests;
    if (!manifests) {
      manifests = join(work, 'manifests');
      mkdirSync(manifests);
      writeManifests(manifests, hosts, podPort, o.strategy);
    }

    const envoy = o.dataPlane === 'host' ? null : installedEnvoy();
    if (o.dataPlane === 'envoy' && !envoy?.usable) throw new Error('envoy >= 1.35 is not on PATH');
    let gateway: StackGateway;
    if (envoy?.usable) {
      const e = await startEnvoyGateway(ROOT, token, (line) => {
        const message = wasmLogMessage(line);
        if (message?.startsWith('Request Handled')) o.onGatewayLog?.({ message } as LogEntry);
        o.onEnvoyLog?.(line);
      });
      gateway = { kind: 'envoy', plainUrl: e.plainUrl, inferenceUrl: e.inferenceUrl, pushUrl: e.pushUrl, close: e.close };
    } else {
      const g = await startGateway({
        wasm: readFileSync(join(ROOT, 'build/wasm-epp.wasm')),
        backends: hosts.map((h) => `${h}:${podPort}`),
        token, pool: POOL,
        plainPort: o.plainPort ?? 8080, inferencePort: o.inferencePort ?? 8081, pushPort: o.pushPort ?? 19100,
        bindHost: '127.0.0.1',
        onLog: o.onGatewayLog,
      });
      gateway = { kind: 'host', plainUrl: g.plainUrl, inferenceUrl: g.inferenceUrl, pushUrl: g.pushUrl, host: g.host, close: g.close };
    }
    started.push(() => gateway.close());

    const sidecar = spawn(process.execPath, [
      join(ROOT, 'build/sidecar.js'), '--manifests', manifests, '--push-url', gateway.pushUrl, '--push-token-file', tokenFile,
      '--metrics-port', '0', '--log-level', 'info', ...(o.sidecarArgs ?? []),
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let buffered = '';
    sidecar.stderr!.setEncoding('utf8');
    sidecar.stderr!.on('data', (chunk: string) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        o.onSidecarLog?.(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    started.push(() => new Promise<void>((resolve) => {
      if (sidecar.exitCode !== null) return resolve();
      sidecar.once('exit', () => resolve());
      sidecar.kill('SIGTERM');
    }));
    return { pods, gateway, sidecar, tokenFile, manifests, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

// Resolves once the filter has a routing state (a request on the inference listener is routed).
export async function waitUntilRouting(inferenceUrl: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${inferenceUrl}/v1/models`);
      last = `${r.status} ${await r.text()}`;
      if (r.status === 200) return;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the gateway did not start routing within ${timeoutMs} ms: ${last}`);
}
