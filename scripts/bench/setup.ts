// The benchmark's options, workloads and strategies, from its command line. The main process
// and its workers (runner.ts) build the same setup from the same arguments, so a job is named by
// indexes and a seed, and every process makes the same workload and router from them.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Router } from '../../test/sim/cluster.ts';
import { leastRequest, pdLeastRequest, pdRoundRobin, random, roundRobin } from '../../test/sim/routers.ts';
import { builtinWorkloads, loadWorkloadFile, type Workload } from './workloads.ts';
import { gie } from './strategies/gie.ts';
import { gieFlowControl } from './strategies/gie-flow-control.ts';
import { sglangCacheAware } from './strategies/sglang.ts';
import { precise } from './strategies/precise.ts';
import { wasmEpp, SIM_EPOCH_MS } from './strategies/wasm-epp.ts';
import { sglangPd } from './strategies/sglang-pd.ts';
import { spread } from './spread.ts';
import { PeerNet } from './exchange.ts';

// Strategies that route prefill/decode clusters (a decode and a prefill pod per request): only
// these run on a P/D workload, and only the others on the rest. wasm-epp serves both.
export const PD_ONLY = new Set(['pd-round-robin', 'pd-least-request', 'sglang-pd-random', 'sglang-pd-cache-aware']);
// Workloads with criticalities compare how strategies treat the bands under overload: GIE as it
// was (shedding Sheddable only), GIE's flow control, and wasm-epp (and its variants). Flow control
// runs only there.
export const PRIORITY_STRATEGIES = new Set(['gie', 'gie-flow-control', 'wasm-epp']);
export function runsOn(strategy: string, w: Workload): boolean {
  if (w.criticalities) return PRIORITY_STRATEGIES.has(strategy) || strategy.startsWith('wasm-epp:');
  if (strategy === 'gie-flow-control') return false;
  const both = strategy === 'wasm-epp' || strategy === 'wasm-epp-default' || strategy.startsWith('wasm-epp:') || strategy.startsWith('wasm-epp-default:');
  return both || (w.pd ? PD_ONLY.has(strategy) : !PD_ONLY.has(strategy));
}

const FLAGS = new Set(['--quick', '--json']);
const OPTIONS = new Set(['--scrape-ms', '--out', '--strategies', '--seeds', '--workload', '--wasm', '--pods', '--trace-block-tokens', '--trace-speed', '--trace-limit', '--jobs', '--variants', '--only', '--gateways']);

export const MAX_GATEWAYS = 64;

// --gateways N: N replicas of the strategy, each built afresh with its own seed (replica i of a
// run with seed s: s * 1000 + i), behind a uniformly random spreader (seed s * 1000 + 999), so
// replicas draw different random streams and the spreader the same stream for every strategy.
// The cluster, the workload and the arrivals keep the run's seed, whatever N. An oracle is one
// omniscient router: it runs alone, built with the run's seed as with one gateway.
// Replicas that share state the way their sidecars would (wasm-epp's prefix exchange) join one
// PeerNet; the others ignore it.
export type MakeRouter = (seed: number, peers?: PeerNet) => Router;

export function replicas(make: MakeRouter, seed: number, n: number): Router {
  const net = new PeerNet({ epochMs: SIM_EPOCH_MS });
  const first = make(seed * 1000, net);
  if (first.oracle) return make(seed);
  const all = [first];
  for (let i = 1; i < n; i++) all.push(make(seed * 1000 + i, net));
  return spread(all, seed * 1000 + 999);
}

export function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

export interface Setup {
  quick: boolean;
  json: boolean;
  outDir: string;
  seeds: number[];
  /** Processes running simulations at once. */
  jobs: number;
  /** Gateway replicas each run's requests are spread over (--gateways; 1: one router, as always). */
  gateways: number;
  /** Every pod is scraped every minMs + U(0, maxMs - minMs) (--scrape-ms MIN,MAX; default 50,100: the sidecar's default). */
  scrape: { minMs: number; maxMs: number };
  workloads: Workload[];
  strategies: string[];
  router(strategy: string, seed: number): Router;
}

export function setup(args: string[]): Setup {
  for (let i = 0; i < args.length; i++) {
    if (OPTIONS.has(args[i])) {
      if (i + 1 >= args.length) fail(`${args[i]} needs a value`);
      i++;
    } else if (!FLAGS.has(args[i])) {
      fail(`unknown argument ${args[i]}; options: ${[...FLAGS, ...OPTIONS].join(' ')}`);
    }
  }
  const values = (name: string) => args.flatMap((a, i) => (a === name && i + 1 < args.length ? [args[i + 1]] : []));
  const number = (name: string, ok: (v: number) => boolean): number | undefined => {
    const v = values(name)[0];
    if (v === undefined) return undefined;
    if (!ok(Number(v))) fail(`${name} ${v}: not a valid value`);
    return Number(v);
  };
  const positiveInt = (v: number) => Number.isInteger(v) && v >= 1;
  const quick = args.includes('--quick');
  const gatewaysArg = values('--gateways')[0];
  const gateways = gatewaysArg === undefined ? 1 : Number(gatewaysArg);
  if (!Number.isInteger(gateways) || gateways < 1 || gateways > MAX_GATEWAYS) fail(`--gateways ${gatewaysArg}: an integer from 1 to ${MAX_GATEWAYS}`);
  const pods = number('--pods', positiveInt);
  const scrapeArg = values('--scrape-ms')[0] ?? '50,100';
  const [scrapeMin, scrapeMax] = scrapeArg.split(',').map(Number);
  if (!(Number.isFinite(scrapeMin) && Number.isFinite(scrapeMax) && scrapeMin >= 1 && scrapeMax >= scrapeMin)) fail(`--scrape-ms ${scrapeArg}: MIN,MAX in milliseconds, 1 <= MIN <= MAX`);
  const trace = { blockTokens: number('--trace-block-tokens', positiveInt), speed: number('--trace-speed', (v) => v > 0), limit: number('--trace-limit', positiveInt) };

  const wasmPath = values('--wasm')[0] ?? new URL('../../build/wasm-epp.wasm', import.meta.url);
  let wasmBytes: Uint8Array | undefined;
  const wasm = () => {
    try {
      return (wasmBytes ??= new Uint8Array(readFileSync(wasmPath)));
    } catch (e) {
      fail(`cannot read the filter module ${wasmPath}: ${(e as Error).message}`);
    }
  };
  const STRATEGIES: Record<string, MakeRouter> = {
    'round-robin': () => roundRobin(),
    random: (seed) => random(seed),
    'least-request': (seed) => leastRequest({ seed }),
    gie: (seed) => gie(seed),
    'gie-flow-control': (seed) => gieFlowControl(seed),
    'sglang-cache-aware': () => sglangCacheAware(),
    'wasm-epp': (seed, peers) => wasmEpp({ wasm: wasm(), seed, peers }),
    'wasm-epp-default': (seed, peers) => Object.assign(wasmEpp({ wasm: wasm(), seed, peers, strategy: 'DEFAULT', pd: { prefillPrefix: false, decodePrefix: false } }), { name: 'wasm-epp-default' }),
    precise: (seed) => precise(seed),
    'pd-round-robin': () => pdRoundRobin(),
    'pd-least-request': (seed) => pdLeastRequest({ seed }),
    'sglang-pd-random': (seed) => sglangPd('random', seed),
    'sglang-pd-cache-aware': (seed) => sglangPd('cache-aware', seed),
  };
  // --variants FILE.json: {"name": {plugin configuration}} adds wasm-epp:name and
  // wasm-epp-default:name, the filter with that configuration (to choose defaults on the suite).
  const variantsFile = values('--variants')[0];
  if (variantsFile !== undefined) {
    let variants: Record<string, Record<string, unknown>>;
    try {
      variants = JSON.parse(readFileSync(variantsFile, 'utf8'));
    } catch (e) {
      fail(`--variants ${variantsFile}: ${(e as Error).message}`);
    }
    if (typeof variants !== 'object' || variants === null || Array.isArray(variants)) fail(`--variants ${variantsFile}: an object of name -> plugin configuration`);
    for (const [name, raw] of Object.entries(variants)) {
      // "pd_prefix": {"prefill": bool, "decode": bool} is the variant's InferenceTrafficPolicy on
      // prefill/decode workloads (which roles are prefix-aware), not plugin configuration.
      const { pd_prefix: pdPrefix, ...config } = raw as Record<string, unknown> & { pd_prefix?: { prefill?: boolean; decode?: boolean } };
      const pd = pdPrefix ? { prefillPrefix: pdPrefix.prefill ?? true, decodePrefix: pdPrefix.decode ?? true } : undefined;
      STRATEGIES[`wasm-epp:${name}`] = (seed, peers) => Object.assign(wasmEpp({ wasm: wasm(), seed, config, pd, peers }), { name: `wasm-epp:${name}` });
      STRATEGIES[`wasm-epp-default:${name}`] = (seed, peers) => Object.assign(wasmEpp({ wasm: wasm(), seed, peers, strategy: 'DEFAULT', config, pd: { prefillPrefix: false, decodePrefix: false } }), { name: `wasm-epp-default:${name}` });
    }
  }
  const chosen = values('--strategies').flatMap((s) => s.split(',')).filter(Boolean);
  for (const s of chosen) if (!STRATEGIES[s]) fail(`unknown strategy ${s}; known: ${Object.keys(STRATEGIES).join(', ')}`);
  const strategies = chosen.length ? chosen : Object.keys(STRATEGIES);
  if (strategies.some((s) => s.startsWith('wasm-epp'))) wasm(); // fail before any run

  const files = values('--workload');
  let workloads: Workload[];
  try {
    workloads = files.length ? files.map((f) => loadWorkloadFile(f, { ...trace, pods })) : builtinWorkloads(quick);
  } catch (e) {
    fail((e as Error).message);
  }
  const only = values('--only').flatMap((s) => s.split(',')).filter(Boolean);
  for (const o of only) if (!workloads.some((w) => w.name === o)) fail(`--only ${o}: no such workload; known: ${workloads.map((w) => w.name).join(', ')}`);
  if (only.length) workloads = workloads.filter((w) => only.includes(w.name));
  if (pods !== undefined) workloads = workloads.map((w) => (w.pods === pods ? w : { ...w, pods, description: `${w.description} (run on ${pods} pods)` }));

  // A closed-loop load test is chaotic (one policy, one workload: TTFT p90 from 0.7 s to 3.2 s
  // across seeds), so results pool several runs.
  const seeds = (values('--seeds')[0] ?? (quick ? '7' : '7,8,9')).split(',').map(Number);
  if (!seeds.every(Number.isInteger)) fail('--seeds: integers separated by commas');
  return {
    quick,
    json: args.includes('--json'),
    outDir: values('--out')[0] ?? 'build/bench',
    seeds,
    jobs: number('--jobs', positiveInt) ?? availableParallelism(),
    workloads,
    strategies,
    gateways,
    scrape: { minMs: scrapeMin, maxMs: scrapeMax },
    router: (name, seed) => (gateways === 1 ? STRATEGIES[name](seed) : replicas(STRATEGIES[name], seed, gateways)),
  };
}
