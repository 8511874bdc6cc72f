// The seeds' load test, simulated: five vLLM pods serving Qwen2.5-7B-Instruct on A10s
// (`vllm serve --max-model-len 8192 --gpu-memory-utilization 0.95 --enforce-eager --enable-lora
// --max-loras 2`), driven like `benchmark_serving.py --dataset-name random --random-prefix-len 10
// --random-input-len 1550 --random-output-len 1800 --random-range-ratio 0.2 --num-prompts 3000
// --max-concurrency 200`.
//
//   npx tsx test/sim/seeds-benchmark.ts                       # round-robin, random, least-request
//   npx tsx test/sim/seeds-benchmark.ts least-request --json  # one router, JSON summary

import { fileURLToPath } from "node:url";
import { simulate, type ClusterResult, type Router, type SimulateOptions } from "./cluster.ts";
import { leastRequest, random, roundRobin } from "./routers.ts";
import { randomDataset } from "./workload.ts";

export interface SeedsBenchmarkOptions {
  pods?: number;
  numPrompts?: number;
  concurrency?: number;
  seed?: number;
}

/** Simulation options for the seeds' benchmark with the given router. */
export function seedsBenchmark(router: Router, o: SeedsBenchmarkOptions = {}): SimulateOptions {
  const seed = o.seed ?? 1;
  return {
    cluster: { pods: o.pods ?? 5, engine: { maxLoras: 2, maxCpuLoras: 4, maxModelLen: 8192 }, seed },
    source: randomDataset({ numPrompts: o.numPrompts ?? 3000, inputLen: 1550, outputLen: 1800, rangeRatio: 0.2, prefixLen: 10, seed }),
    router,
    arrival: { kind: "closed", concurrency: o.concurrency ?? 200 },
  };
}

export function summaryLine(r: ClusterResult): Record<string, number | string> {
  const s = (ms: number) => Math.round(ms) / 1000;
  return {
    router: r.router,
    wallMs: Math.round(r.wallMs),
    makespanS: s(r.makespanMs),
    ttftP50S: s(r.ttft.p50),
    ttftP90S: s(r.ttft.p90),
    ttftP99S: s(r.ttft.p99),
    tpotP50Ms: Math.round(r.tpot.p50 * 10) / 10,
    e2eP50S: s(r.e2e.p50),
    outputTokPerS: Math.round(r.outputTokensPerSec),
    preemptions: r.preemptions,
    kvMeanPerPod: r.pods.map((p) => p.meanKvUsage.toFixed(2)).join(" "),
    kvSpreadRange: Math.round(r.kvSpread.meanRange * 1000) / 1000,
    kvSpreadStdDev: Math.round(r.kvSpread.meanStdDev * 1000) / 1000,
    requestsPerPod: r.pods.map((p) => p.requests).join(" "),
  };
}

const ROUTERS: Record<string, () => Router> = {
  "round-robin": roundRobin,
  random: () => random(1),
  "least-request": () => leastRequest(),
};

async function main(argv: string[]): Promise<void> {
  const json = argv.includes("--json");
  const names = argv.filter((a) => !a.startsWith("--"));
  const chosen = names.length ? names : Object.keys(ROUTERS);
  const rows = [];
  for (const name of chosen) {
    const make = ROUTERS[name];
    if (!make) throw new Error(`unknown router ${name}; one of ${Object.keys(ROUTERS).join(", ")}`);
    rows.push(summaryLine(await simulate(seedsBenchmark(make()))));
  }
  if (json) console.log(JSON.stringify(rows, null, 2));
  else console.table(rows);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
