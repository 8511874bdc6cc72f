// npm run bench:sweep — filter configurations side by side over the whole workload suite, so
// that a scoring default is chosen on every workload and several seeds, never on one.
//
//   npm run bench:sweep -- --variants FILE.json     {"name": {plugin configuration}, ...}
//   npm run bench:sweep -- --variants FILE.json --peers gie,sglang-cache-aware,least-request
//   npm run bench:sweep -- --workloads multi-turn,shared-prefix --seeds 7,8,9 --quick
//   npm run bench:sweep -- --strategy DEFAULT       the pool's routing strategy for every variant
//
// Prints, per workload, each variant's TTFT p50/p90 (requests of all seeds pooled) and its p90
// against the best peer's, then each variant's worst ratio over the suite: the number to
// minimise. `--json` prints the same as one JSON object.

import { readFileSync } from 'node:fs';
import { simulate, type ClusterResult, type Router } from '../../test/sim/cluster.ts';
import { summarize } from '../../test/sim/stats.ts';
import { leastRequest, roundRobin } from '../../test/sim/routers.ts';
import { builtinWorkloads } from './workloads.ts';
import { gie } from './strategies/gie.ts';
import { sglangCacheAware } from './strategies/sglang.ts';
import { precise } from './strategies/precise.ts';
import { wasmEpp } from './strategies/wasm-epp.ts';

const args = process.argv.slice(2);
const value = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : undefined;
};
const list = (name: string) => (value(name) ?? '').split(',').filter(Boolean);
const quick = args.includes('--quick');
const json = args.includes('--json');
const seeds = (value('--seeds') ?? '7,8,9').split(',').map(Number);
const strategy = (value('--strategy') ?? 'PREFIX_CACHE') as 'DEFAULT' | 'PREFIX_CACHE';
const wasm = new Uint8Array(readFileSync(value('--wasm') ?? new URL('../../build/wasm-epp.wasm', import.meta.url)));
const variantsFile = value('--variants');
const variants: Record<string, Record<string, unknown>> = variantsFile ? JSON.parse(readFileSync(variantsFile, 'utf8')) : { defaults: {} };

const PEERS: Record<string, (seed: number) => Router> = {
  'round-robin': () => roundRobin(),
  'least-request': (seed) => leastRequest({ seed }),
  gie: (seed) => gie(seed),
  'sglang-cache-aware': () => sglangCacheAware(),
  precise: (seed) => precise(seed),
};
const peers = list('--peers');
for (const p of peers) if (!PEERS[p]) throw new Error(`unknown peer ${p}; known: ${Object.keys(PEERS).join(', ')}`);
const wanted = list('--workloads');
const workloads = builtinWorkloads(quick).filter((w) => wanted.length === 0 || wanted.includes(w.name));

interface Cell { p50: number; p90: number; hit: number }
const cells: Record<string, Record<string, Cell>> = {};

async function run(make: (seed: number) => Router, w: (typeof workloads)[number]): Promise<Cell> {
  const runs: ClusterResult[] = [];
  for (const seed of seeds) {
    runs.push(await simulate({ cluster: { pods: w.pods, engine: w.engine, seed }, source: w.source(), router: make(seed), arrival: w.arrival }));
  }
  const reqs = runs.flatMap((r) => r.requests);
  const t = summarize(reqs.map((q) => q.ttftMs));
  const prompt = reqs.reduce((a, q) => a + q.promptTokens, 0);
  const cached = reqs.reduce((a, q) => a + q.cachedTokens, 0);
  return { p50: t.p50, p90: t.p90, hit: prompt > 0 ? cached / prompt : 0 };
}

for (const w of workloads) {
  const row: Record<string, Cell> = (cells[w.name] = {});
  for (const p of peers) {
    row[p] = await run(PEERS[p], w);
    if (!json) process.stderr.write(`${w.name} ${p} ${(row[p].p90 / 1000).toFixed(3)}\n`);
  }
  for (const [name, config] of Object.entries(variants)) {
    row[name] = await run((seed) => wasmEpp({ wasm, seed, strategy, config }), w);
    if (!json) process.stderr.write(`${w.name} ${name} ${(row[name].p90 / 1000).toFixed(3)}\n`);
  }
}

// Each variant's p90 against the best peer's (precise excluded: it is an oracle).
const worst: Record<string, number> = {};
for (const [w, row] of Object.entries(cells)) {
  const realPeers = peers.filter((p) => p !== 'precise');
  const best = realPeers.length ? Math.min(...realPeers.map((p) => row[p].p90)) : NaN;
  for (const name of Object.keys(variants)) {
    const r = row[name].p90 / best;
    if (Number.isFinite(r)) worst[name] = Math.max(worst[name] ?? 0, r);
  }
  if (!json) {
    process.stdout.write(`\n${w}\n| strategy | TTFT p50 (s) | TTFT p90 (s) | vs best peer | prefix hit |\n|---|---|---|---|---|\n`);
    for (const [name, c] of Object.entries(row)) {
      process.stdout.write(`| ${name} | ${(c.p50 / 1000).toFixed(3)} | ${(c.p90 / 1000).toFixed(3)} | ${Number.isFinite(best) ? (c.p90 / best).toFixed(3) : '-'} | ${(c.hit * 100).toFixed(1)}% |\n`);
    }
  }
}
if (json) {
  process.stdout.write(JSON.stringify({ seeds, strategy, cells, worst }) + '\n');
} else {
  process.stdout.write(`\nworst p90 against the best peer over the suite\n`);
  for (const [name, r] of Object.entries(worst).sort((a, b) => a[1] - b[1])) process.stdout.write(`  ${name}: ${r.toFixed(3)}\n`);
}
