// npm start — the local stack (docs/local-stack.md): five simulated vLLM pods serving /model/qwen
// on 127.0.0.11-15:8000, the sidecar in file mode, and the gateway:
//   :8080  plain round-robin to the pods (the seeds' HTTPRoute to the Service)
//   :8081  through the wasm-epp filter (the seeds' HTTPRoute to the InferencePool)
// The data plane is Envoy >= 1.35 with deploy/envoy/envoy.yaml when `envoy` is on PATH, and
// otherwise the project's proxy-wasm host running the same build/wasm-epp.wasm behind a small HTTP
// front.
// Prints the seeds' curl commands and every `Request Handled` line; Ctrl-C stops everything.
//
//   npm start -- --time-scale 10         simulated time 10x faster than an A10 would serve
//   npm start -- --example sglang-pd     run deploy/examples/sglang-pd/ (its pool, model, policy and
//                                        Pods, each Pod a simulated server with its role) instead

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, listExamples, readExample, startLocalStack, waitUntilRouting, type ExampleCluster } from './stack.ts';
import { installedEnvoy } from './envoy.ts';
import { formatLogLine } from '../../test/host/index.ts';

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
if (args.includes('--help')) {
  console.log([
    'npm start [-- --time-scale N] [--example NAME] [--verbose]',
    '  --time-scale N  simulated pods run N times faster than a real A10 (default 1)',
    `  --example NAME  run deploy/examples/NAME/ instead of the default cluster (${listExamples().join(', ')})`,
    '  --verbose       also print the sidecar\'s log lines and the gateway\'s other log lines',
  ].join('\n'));
  process.exit(0);
}
const timeScale = Number(arg('--time-scale') ?? 1);
const verbose = args.includes('--verbose');
const exampleName = arg('--example');
let example: ExampleCluster | undefined;
if (exampleName !== undefined) {
  try {
    example = readExample(exampleName);
    if (example.pods.length === 0) throw new Error(`the pool ${example.pool} selects no Pod with a loopback podIP`);
  } catch (err) {
    console.error(`npm start: --example ${exampleName}: ${(err as Error).message}\nexamples: ${listExamples().join(', ')}`);
    process.exit(1);
  }
  for (const s of example.skipped) console.log(`example ${exampleName}: ${s}`);
}

// Build what is missing or older than its sources.
function newest(dir: string): number {
  let t = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    t = Math.max(t, s.isDirectory() ? newest(p) : s.mtimeMs);
  }
  return t;
}
const wasm = join(ROOT, 'build/wasm-epp.wasm');
const sidecar = join(ROOT, 'build/sidecar.js');
if (!existsSync(wasm) || !existsSync(sidecar) || statSync(wasm).mtimeMs < newest(join(ROOT, 'assembly')) || statSync(sidecar).mtimeMs < newest(join(ROOT, 'sidecar'))) {
  console.log('building build/wasm-epp.wasm and build/sidecar.js ...');
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs')], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

let routing = false;
const envoy = installedEnvoy();
if (envoy && !envoy.usable) console.log(`envoy on PATH is ${envoy.version?.join('.') ?? 'of unknown version'}; wasm-epp needs >= 1.35 (allow_on_headers_stop_iteration): using the proxy-wasm host`);
else if (!envoy) console.log('no envoy on PATH: the gateway is the proxy-wasm host running build/wasm-epp.wasm');
const stack = await startLocalStack({
  timeScale,
  example: exampleName,
  onEnvoyLog: (line) => {
    if (verbose || / \[(warning|error|critical)\]/.test(line)) console.log(`[envoy] ${line}`);
  },
  // The seeds' pool and model, and the five Pods, as committed (or the example's directory): edits
  // apply while running.
  manifests: example ? example.dir : join(ROOT, 'deploy/examples'),
  onGatewayLog: (e) => {
    if (e.message.startsWith('Request Handled')) console.log(`[gateway] ${e.message}`);
    else if (verbose || (routing && e.level >= 3)) console.log(`[gateway] ${formatLogLine(e)}`);
  },
  onSidecarLog: (line) => {
    let ev: { level?: string; event?: string; msg?: string } = {};
    try {
      ev = JSON.parse(line);
    } catch {
      /* not JSON */
    }
    if (verbose || ev.level === 'warn' || ev.level === 'error' || ev.event === 'first_push_accepted') console.log(`[sidecar] ${line}`);
  },
}).catch((err: Error) => {
  console.error(`npm start: ${err.message}`);
  process.exit(1);
});

try {
  await waitUntilRouting(stack.gateway.inferenceUrl);
  routing = true;
} catch (err) {
  console.error(`npm start: ${(err as Error).message}`);
  await stack.stop();
  process.exit(1);
}

const gatewayKind = stack.gateway.kind === 'envoy' ? `Envoy with ${example ? "deploy/envoy/envoy.yaml (the example's pool and pods)" : 'deploy/envoy/envoy.yaml'}` : 'the proxy-wasm host running build/wasm-epp.wasm';
if (example) {
  const pods = stack.pods.map((p) => `${p.name} ${p.host}:8000${p.role ? ` (${p.role})` : ''}`).join(', ');
  const pd = example.pd ? `, prefill/decode by label ${example.pd.roleLabel}, KV bootstrap port ${example.pd.bootstrapPort}` : '';
  const body = (city: string, extra = '') => `'{"model": "${example!.model}", "max_tokens": 50${extra}, "messages": [{"role": "user", "content": "Write as if you were a critic: ${city}"}]}'`;
  console.log(`
wasm-epp local stack is up with example ${exampleName} (simulated time x${timeScale}).
  model servers  ${stack.pods.length} simulated ${example.runtime === 'sglang' ? 'SGLang' : 'vLLM'} pods serving ${example.model}${pd}:
                 ${pods}
  sidecar        build/sidecar.js --manifests ${stack.manifests} (pool ${example.pool})
  gateway        ${stack.gateway.plainUrl} plain round-robin, ${stack.gateway.inferenceUrl} through wasm-epp
                 (${gatewayKind}), push listener ${stack.gateway.pushUrl}
  admin          ${stack.gateway.adminUrl}/stats/prometheus: the filter's metrics (TTFT, tokens, cache hits)

Try it:
  curl -X POST localhost:8081/v1/chat/completions -H 'Content-Type: application/json' -d ${body('Hangzhou')}
  curl -N -X POST localhost:8081/v1/chat/completions -H 'Content-Type: application/json' -d ${body('Beijing', ', "stream": true, "stream_options": {"include_usage": true}')}
  curl -s localhost:19000/stats/prometheus | grep -E '^(inference_objective|wasm_epp_)'
${example.pd ? `
Each Request Handled line below names the decode pod (pod=) and the prefill pod (prefill=) and the room.
The plain listener (:8080) round-robins over every Pod, prefill and decode alike, as a Service would:
decode pods answer it 400 (no bootstrap room).
` : ''}
Ctrl-C stops everything.
`);
} else {
  const pods = stack.pods.map((p) => `${p.name} ${p.host}:8000`).join(', ');
  const body = (city: string) => `'{"model": "/model/qwen", "max_completion_tokens": 100, "temperature": 0, "messages": [{"role": "user", "content": "Write as if you were a critic: ${city}"}]}'`;
  console.log(`
wasm-epp local stack is up (simulated time x${timeScale}).
  model servers  5 simulated vLLM pods serving /model/qwen (Qwen2.5-7B on A10 timings): ${pods}
  sidecar        build/sidecar.js --manifests ${stack.manifests} (pool default/vllm-qwen-pool)
  gateway        ${stack.gateway.plainUrl} plain round-robin, ${stack.gateway.inferenceUrl} through wasm-epp
                 (${gatewayKind}), push listener ${stack.gateway.pushUrl}
  admin          ${stack.gateway.adminUrl}/stats/prometheus: the filter's metrics (TTFT, tokens, cache hits)

Try the seeds' requests:
  curl -X POST localhost:8080/v1/chat/completions -H 'Content-Type: application/json' -d ${body('San Francisco')}
  curl -X POST localhost:8081/v1/chat/completions -H 'Content-Type: application/json' -d ${body('Los Angeles')}

What the gateway saw of the answers (TTFT and duration histograms, tokens, cache hits; histograms
update every 5 s, Envoy's stats flush):
  curl -s localhost:19000/stats/prometheus | grep -E '^(inference_objective|wasm_epp_)'

Prefix-aware routing: annotate the pool with inference.networking.x-k8s.io/routing-strategy: PREFIX_CACHE
in deploy/examples/inference-pool.yaml (the sidecar picks the change up), send two requests sharing a long
prefix to :8081 (docs/local-stack.md has the seeds' round1/round2 pair) and see one pod in both
Request Handled lines below.

Ctrl-C stops everything.
`);
}

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping ...');
  await stack.stop();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
