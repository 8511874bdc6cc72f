// The local stack: five simulated vLLM pods, the sidecar in file mode and a gateway with the
// seeds' two listeners (8080 plain round-robin, 8081 through wasm-epp). `npm start` runs it
// (scripts/local-stack/start.ts); the end-to-end tests start it time-scaled.
//
// With `example: NAME` the cluster is deploy/examples/NAME/ instead: its InferencePool (one),
// InferenceModel, InferenceTrafficPolicy and Pods, each Pod a simulated model server on its
// podIP (a loopback address) with the pool's runtime and, for a P/D pool, its role.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
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
  /**
   * Run deploy/examples/NAME/ (or a directory path) instead of the default cluster. With
   * `podHosts`, the example's Pods (in file order) get these addresses instead of their podIPs
   * (the manifests are copied with the addresses rewritten).
   */
  example?: string;
}

/** A Pod of an example, as the stack starts it. */
export interface ExamplePod {
  name: string;
  namespace: string;
  /** status.podIP (a loopback address). */
  host: string;
  /** The pool's targetPortNumber. */
  port: number;
  /** P/D pools: the value of the policy's role label (prefill or decode); null otherwise. */
  role: 'prefill' | 'decode' | null;
  /** Prefill pods: the KV-transfer bootstrap port (--disaggregation-bootstrap-port, else the policy's). */
  bootstrapPort: number | null;
}

/** What the stack reads from an example directory. */
export interface ExampleCluster {
  name: string;
  dir: string;
  /** namespace/name of the InferencePool, for the routing filter's `pool`. */
  pool: string;
  /** Served model name (the InferenceModel's first target model, else its modelName). */
  model: string;
  runtime: 'vllm' | 'sglang';
  /** P/D pools (an InferenceTrafficPolicy with profile.pd names the pool). */
  pd: { roleLabel: string; bootstrapPort: number } | null;
  pods: ExamplePod[];
  /** Pods the pool selects that cannot run here, with the reason. */
  skipped: string[];
}

// SGLang's default --disaggregation-bootstrap-port.
const SGLANG_BOOTSTRAP_PORT = 8998;

function yamlObjects(dir: string): any[] {
  const out: any[] = [];
  for (const name of readdirSync(dir).filter((n) => /\.ya?ml$/i.test(n) && !n.startsWith('.')).sort()) {
    const path = join(dir, name);
    if (!statSync(path).isFile()) continue;
    for (const doc of parseAllDocuments(readFileSync(path, 'utf8'))) {
      if (doc.errors.length) throw new Error(`${path}: ${doc.errors[0].message}`);
      const v = doc.toJS();
      if (v && typeof v === 'object') out.push(v);
    }
  }
  return out;
}

function argValue(args: unknown, flag: string): string | undefined {
  if (!Array.isArray(args)) return undefined;
  for (let i = 0; i < args.length; i++) {
    const a = String(args[i]);
    if (a === flag) return args[i + 1] === undefined ? undefined : String(args[i + 1]);
    if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
  }
  return undefined;
}

/** Where an example lives: deploy/examples/NAME, or a directory path. */
export function exampleDir(nameOrDir: string): string {
  return isAbsolute(nameOrDir) || nameOrDir.includes('/') ? nameOrDir : join(ROOT, 'deploy/examples', nameOrDir);
}

/** The examples `--example` accepts: directories under deploy/examples with one InferencePool and Pods. */
export function listExamples(): string[] {
  const base = join(ROOT, 'deploy/examples');
  return readdirSync(base).filter((n) => {
    const d = join(base, n);
    if (!statSync(d).isDirectory()) return false;
    try {
      return readExample(d).pods.length > 0;
    } catch {
      return false;
    }
  }).sort();
}

/** Reads an example's cluster: the one InferencePool (v1alpha2 or v1), its model, policy and the Pods it selects. */
export function readExample(nameOrDir: string): ExampleCluster {
  const dir = exampleDir(nameOrDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`no example directory ${dir}`);
  const objs = yamlObjects(dir);
  const nsOf = (o: any): string => o.metadata?.namespace ?? 'default';
  const pools = objs.filter((o) => o.kind === 'InferencePool');
  if (pools.length !== 1) throw new Error(`${dir} has ${pools.length} InferencePools; an example runs exactly one`);
  const pool = pools[0];
  const ns = nsOf(pool);
  const poolName: string = pool.metadata.name;
  const refersToPool = (ref: any) => ref?.name === poolName;
  const policy = objs.find((o) => o.kind === 'InferenceTrafficPolicy' && nsOf(o) === ns && refersToPool(o.spec?.poolRef));
  const model = objs.find((o) => o.kind === 'InferenceModel' && nsOf(o) === ns && refersToPool(o.spec?.poolRef));
  const runtimeName = policy?.spec?.modelServerRuntime ?? pool.metadata?.annotations?.['inference.networking.x-k8s.io/model-server-runtime'] ?? 'vllm';
  const runtime: 'vllm' | 'sglang' = runtimeName === 'sglang' ? 'sglang' : 'vllm';
  const pdSpec = policy?.spec?.profile?.pd;
  const pd = pdSpec ? { roleLabel: String(pdSpec.pdRoleLabelName), bootstrapPort: Number(pdSpec.kvTransfer?.bootstrapPort ?? SGLANG_BOOTSTRAP_PORT) } : null;
  // The GA API (inference.networking.k8s.io/v1) writes selector.matchLabels and targetPorts[].
  const v1 = String(pool.apiVersion ?? '').startsWith('inference.networking.k8s.io/');
  const selector: Record<string, string> = (v1 ? pool.spec?.selector?.matchLabels : pool.spec?.selector) ?? {};
  const port = Number((v1 ? pool.spec?.targetPorts?.[0]?.number : pool.spec?.targetPortNumber) ?? 8000);
  const pods: ExamplePod[] = [];
  const skipped: string[] = [];
  for (const o of objs) {
    if (o.kind !== 'Pod' || nsOf(o) !== ns) continue;
    const labels: Record<string, string> = o.metadata?.labels ?? {};
    if (!Object.entries(selector).every(([k, v]) => labels[k] === v)) continue;
    const name = String(o.metadata?.name);
    const host = String(o.status?.podIP ?? '');
    if (!/^127\.\d+\.\d+\.\d+$/.test(host)) {
      skipped.push(`${name}: podIP ${host || '(none)'} is not a loopback address`);
      continue;
    }
    let role: ExamplePod['role'] = null;
    let bootstrapPort: number | null = null;
    if (pd) {
      const value = String(labels[pd.roleLabel] ?? '').trim().toLowerCase();
      if (value === 'prefill' || value === 'decode') role = value;
      else skipped.push(`${name}: no prefill/decode value in label ${pd.roleLabel} (started without a role)`);
      if (role === 'prefill') {
        const fromArgs = (o.spec?.containers ?? []).map((c: any) => argValue(c.args, '--disaggregation-bootstrap-port') ?? argValue(c.command, '--disaggregation-bootstrap-port')).find((v: string | undefined) => v !== undefined);
        bootstrapPort = fromArgs !== undefined ? Number(fromArgs) : pd.bootstrapPort;
      }
    }
    pods.push({ name, namespace: ns, host, port, role, bootstrapPort });
  }
  const modelName: string = model?.spec?.targetModels?.[0]?.name ?? model?.spec?.modelName ?? MODEL;
  return { name: nameOrDir, dir, pool: `${ns}/${poolName}`, model: modelName, runtime, pd, pods, skipped };
}

// A copy of an example's manifests with the Pods' addresses replaced (in file order).
function remapExample(example: ExampleCluster, hosts: string[], out: string): ExampleCluster {
  if (hosts.length < example.pods.length) throw new Error(`example ${example.name} has ${example.pods.length} Pods; podHosts gives ${hosts.length} addresses`);
  const map = new Map(example.pods.map((p, i) => [`${p.namespace}/${p.name}`, hosts[i]]));
  for (const name of readdirSync(example.dir).filter((n) => /\.ya?ml$/i.test(n) && !n.startsWith('.'))) {
    const docs = parseAllDocuments(readFileSync(join(example.dir, name), 'utf8')).map((d) => d.toJS()).filter((v) => v && typeof v === 'object');
    for (const d of docs) {
      const key = `${d.metadata?.namespace ?? 'default'}/${d.metadata?.name}`;
      if (d.kind === 'Pod' && map.has(key)) d.status.podIP = map.get(key);
    }
    writeFileSync(join(out, name), docs.map((d) => stringify(d)).join('---\n'));
  }
  return { ...example, dir: out, pods: example.pods.map((p, i) => ({ ...p, host: hosts[i] })) };
}

// deploy/envoy/envoy.yaml for an example: its pool in the routing filter, its Pods behind 8080.
function envoyConfigFor(example: ExampleCluster, out: string): string {
  const [config] = parseAllDocuments(readFileSync(join(ROOT, 'deploy/envoy/envoy.yaml'), 'utf8')).map((d) => d.toJS());
  for (const l of config.static_resources.listeners) {
    for (const fc of l.filter_chains ?? []) {
      for (const f of fc.filters ?? []) {
        for (const hf of f.typed_config?.http_filters ?? []) {
          const c = hf.typed_config?.config;
          if (!c?.configuration?.value) continue;
          const v = JSON.parse(c.configuration.value);
          if (typeof v.pool === 'string') c.configuration.value = JSON.stringify({ ...v, pool: example.pool });
        }
      }
    }
  }
  const plain = config.static_resources.clusters.find((c: any) => c.name === 'model_servers');
  plain.load_assignment.endpoints = [{ lb_endpoints: example.pods.map((p) => ({ endpoint: { address: { socket_address: { address: p.host, port_value: p.port } } } })) }];
  const path = join(out, 'envoy.yaml');
  writeFileSync(path, stringify(config));
  return path;
}

export interface StackGateway {
  kind: 'envoy' | 'host';
  plainUrl: string;
  inferenceUrl: string;
  pushUrl: string;
  /** Envoy's admin interface: /stats and /stats/prometheus (the filter's metrics). */
  adminUrl: string;
  /** The proxy-wasm host (the host data plane only). */
  host?: Gateway['host'];
  close(): Promise<void>;
}

export interface Stack {
  pods: Array<{ name: string; host: string; pod: Pod; role?: 'prefill' | 'decode' | null }>;
  /** The example the stack runs (`example` option), else undefined. */
  example?: ExampleCluster;
  /** namespace/name of the pool the routing filter serves. */
  pool: string;
  /** The served model. */
  model: string;
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

// Every simulated pod reports its prompt's prefix-cache hit in usage.prompt_tokens_details
// (vLLM's --enable-prompt-tokens-details, SGLang's --enable-cache-report; both off by default in
// the servers), so that the gateway's cached-token metrics have something to show.
const CACHE_REPORT = {
  vllm: { enablePromptTokensDetails: true },
  sglang: { enableCacheReport: true },
} as const;

// The simulator's options for a P/D role; passed through an options object so that this file
// type-checks whatever test/sim/server.ts's PodOptions says about `pd`.
type PodStartOptions = Parameters<typeof startPod>[0] & { pd?: { role: 'prefill' | 'decode'; bootstrapPort: number } };

export async function startLocalStack(o: StackOptions = {}): Promise<Stack> {
  const podPort = o.podPort ?? 8000;
  const work = mkdtempSync(join(tmpdir(), 'wasm-epp-stack-'));
  const started: Array<() => Promise<void> | void> = [() => rmSync(work, { recursive: true, force: true })];
  const stopAll = async () => {
    for (const f of started.reverse()) await f();
  };
  try {
    let example = o.example !== undefined ? readExample(o.example) : undefined;
    if (example && example.pods.length === 0) throw new Error(`example ${o.example}: the pool ${example.pool} selects no Pod with a loopback podIP${example.skipped.length ? ` (${example.skipped.join('; ')})` : ''}`);
    if (example && o.podHosts) {
      const copy = join(work, 'manifests');
      mkdirSync(copy);
      example = remapExample(example, o.podHosts, copy);
    }
    // What to start: the example's Pods, or the default cluster's five vLLM pods.
    const plan: Array<{ name: string; host: string; port: number; role: 'prefill' | 'decode' | null; options: PodStartOptions }> = example
      ? example.pods.map((p) => ({
          name: p.name, host: p.host, port: p.port, role: p.role,
          options: {
            host: p.host, port: p.port, runtime: example!.runtime, model: example!.model, timeScale: o.timeScale ?? 1, engine: { maxModelLen: 8192 },
            ...CACHE_REPORT[example!.runtime],
            ...(p.role ? { pd: { role: p.role, bootstrapPort: p.bootstrapPort ?? example!.pd!.bootstrapPort } } : {}),
          },
        }))
      : (o.podHosts ?? DEFAULT_POD_HOSTS).map((h, i) => ({
          name: `qwen-${i}`, host: h, port: podPort, role: null,
          options: { host: h, port: podPort, model: MODEL, loraModules: LORA_MODULES, timeScale: o.timeScale ?? 1, engine: { maxLoras: 2, maxCpuLoras: 4, maxModelLen: 8192 }, ...CACHE_REPORT.vllm },
        }));
    const pods: Stack['pods'] = [];
    for (const p of plan) {
      let pod: Pod;
      try {
        pod = await startPod(p.options);
      } catch (err) {
        throw new Error(`cannot start a simulated pod on ${p.host}:${p.port} (${(err as Error).message}); the local stack binds the pods' loopback addresses (127.0.0.0/8), which Linux provides`);
      }
      pods.push({ name: p.name, host: p.host, pod, role: p.role });
      started.push(() => pod.close());
    }
    const token = randomBytes(24).toString('hex');
    const tokenFile = join(work, 'push-token');
    writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
    let manifests = o.manifests ?? example?.dir;
    if (!manifests) {
      manifests = join(work, 'manifests');
      mkdirSync(manifests);
      writeManifests(manifests, plan.map((p) => p.host), podPort, o.strategy);
    }
    const pool = example?.pool ?? POOL;

    const envoy = o.dataPlane === 'host' ? null : installedEnvoy();
    if (o.dataPlane === 'envoy' && !envoy?.usable) throw new Error('envoy >= 1.35 is not on PATH');
    let gateway: StackGateway;
    if (envoy?.usable) {
      const e = await startEnvoyGateway(ROOT, token, (line) => {
        const message = wasmLogMessage(line);
        if (message?.startsWith('Request Handled')) o.onGatewayLog?.({ message } as LogEntry);
        o.onEnvoyLog?.(line);
      }, example ? envoyConfigFor(example, work) : undefined);
      gateway = { kind: 'envoy', plainUrl: e.plainUrl, inferenceUrl: e.inferenceUrl, pushUrl: e.pushUrl, adminUrl: e.adminUrl, close: e.close };
    } else {
      const g = await startGateway({
        wasm: readFileSync(join(ROOT, 'build/wasm-epp.wasm')),
        backends: plan.map((p) => `${p.host}:${p.port}`),
        token, pool,
        plainPort: o.plainPort ?? 8080, inferencePort: o.inferencePort ?? 8081, pushPort: o.pushPort ?? 19100,
        bindHost: '127.0.0.1',
        onLog: o.onGatewayLog,
      });
      gateway = { kind: 'host', plainUrl: g.plainUrl, inferenceUrl: g.inferenceUrl, pushUrl: g.pushUrl, adminUrl: g.adminUrl, host: g.host, close: g.close };
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
    return { pods, example, pool, model: example?.model ?? MODEL, gateway, sidecar, tokenFile, manifests, stop: stopAll };
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
