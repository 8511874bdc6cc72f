// npm run bench:sidecar — CPU cost of scraping model servers.
//
// 100 fake vLLM pods (a separate process, so their CPU is not counted) serve a full-size V1
// exposition (histograms and all, ~45 KB) on 127.0.1.1-100:<port>. Then:
//   1. the sidecar's scraping part (Scraper: HTTP GET, bounded read, parse, extract) runs in this
//      process, every pod every 100 ms, for --seconds (default 30); CPU from process.cpuUsage();
//   2. the whole sidecar (build/sidecar.js --manifests for those pods, pushing to a receiver in
//      this process) runs for the same time; its CPU from /proc/<pid>/stat.
// Prints cores used and bytes parsed per second. Target: <= 0.25 core for 100 pods.
//
//   tsx scripts/bench-sidecar.ts [--pods 100] [--seconds 30] [--interval 100]

import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Scraper, type ScrapeTarget } from "../sidecar/metrics/scraper.ts";
import { Logger } from "../sidecar/observability/log.ts";
import { defaultState, vllmV1Exposition } from "../test/fakes/model-metrics.ts";

const { values } = parseArgs({
  options: {
    pods: { type: "string", default: "100" },
    seconds: { type: "string", default: "30" },
    interval: { type: "string", default: "100" },
    "serve-pods": { type: "boolean", default: false },
    port: { type: "string", default: "0" },
  },
});
const PODS = Number(values.pods);
const SECONDS = Number(values.seconds);
const INTERVAL = Number(values.interval);
const ROOT = fileURLToPath(new URL("..", import.meta.url));

function podIp(i: number): string {
  return `127.0.1.${i + 1}`;
}

// ---- child: the fake pods ---------------------------------------------------------------------
async function servePods(): Promise<void> {
  let port = Number(values.port);
  const pages: Buffer[] = [];
  const render = () => {
    for (let i = 0; i < PODS; i++) {
      pages[i] = Buffer.from(vllmV1Exposition(defaultState({ waiting: Math.floor(Math.random() * 8), running: 20 + (i % 7), kvUsage: Math.random(), served: 5000 + i })));
    }
  };
  render();
  setInterval(render, 1000).unref();
  for (let i = 0; i < PODS; i++) {
    const server = http.createServer((req, res) => {
      const body = pages[i];
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": body.length }).end(body);
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, podIp(i), () => resolve());
    });
    port = (server.address() as { port: number }).port;
  }
  process.stdout.write(JSON.stringify({ port, bytes: pages[0].length }) + "\n");
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
}

function startPods(): Promise<{ child: ChildProcess; port: number; bytes: number }> {
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--serve-pods", "--pods", String(PODS)], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c) => {
      out += c;
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        const info = JSON.parse(out.slice(0, nl));
        resolve({ child, port: info.port, bytes: info.bytes });
      }
    });
    child.on("exit", (code) => reject(new Error(`fake pods exited with ${code}`)));
  });
}

function cpuSecondsOf(pid: number): number {
  // utime + stime (fields 14 and 15) in clock ticks; 100 ticks/s on Linux.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function benchScraper(port: number): Promise<void> {
  let scrapes = 0;
  let errors = 0;
  const scraper = new Scraper({
    intervalMs: INTERVAL,
    jitter: 0,
    timeoutMs: 1000,
    concurrency: 64,
    maxBytes: 4 * 1024 * 1024,
    unreachableAfter: 2,
    log: new Logger("error", () => {}),
    observer: { scraped: () => scrapes++, failed: () => errors++, forget: () => {} },
    onUpdate: () => {},
  });
  const targets: ScrapeTarget[] = Array.from({ length: PODS }, (_, i) => ({ key: `p${i}`, pool: "default/bench", pod: `pod-${i}`, host: podIp(i), port, runtime: "vllm" }));
  scraper.setTargets(targets);
  await sleep(3000); // warm up: connections, JIT
  const s0 = scrapes;
  const b0 = scraper.bytesParsed;
  const e0 = errors;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const cpu = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / 1000;
  const n = scrapes - s0;
  await scraper.stop();
  const cores = (cpu.user + cpu.system) / 1e6 / wall;
  console.log(`scraping part (in process): ${PODS} pods every ${INTERVAL} ms for ${wall.toFixed(1)} s`);
  console.log(`  scrapes/s          ${(n / wall).toFixed(0)}  (errors ${errors - e0})`);
  console.log(`  bytes parsed/s     ${((scraper.bytesParsed - b0) / wall / 1e6).toFixed(1)} MB/s`);
  console.log(`  CPU                ${cores.toFixed(3)} cores  (user ${(cpu.user / 1e6 / wall).toFixed(3)}, system ${(cpu.system / 1e6 / wall).toFixed(3)})`);
  console.log(`  CPU per scrape     ${(((cpu.user + cpu.system) / n) || 0).toFixed(0)} µs`);
  console.log(`  target <= 0.25 core: ${cores <= 0.25 ? "met" : "NOT met"}`);
}

async function benchWholeSidecar(port: number): Promise<void> {
  const bundle = join(ROOT, "build", "sidecar.js");
  const dir = await mkdtemp(join(tmpdir(), "wasm-epp-bench-"));
  const docs: string[] = [
    JSON.stringify({ apiVersion: "inference.networking.x-k8s.io/v1alpha2", kind: "InferencePool", metadata: { name: "bench", namespace: "default" }, spec: { targetPortNumber: port, selector: { app: "bench" } } }),
    JSON.stringify({ apiVersion: "inference.networking.x-k8s.io/v1alpha2", kind: "InferenceModel", metadata: { name: "m", namespace: "default" }, spec: { modelName: "/model/qwen", criticality: "Critical", poolRef: { name: "bench" } } }),
  ];
  for (let i = 0; i < PODS; i++) {
    docs.push(JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: `pod-${String(i).padStart(3, "0")}`, namespace: "default", labels: { app: "bench" } }, status: { phase: "Running", podIP: podIp(i), conditions: [{ type: "Ready", status: "True" }] } }));
  }
  await writeFile(join(dir, "cluster.yaml"), docs.join("\n---\n"));
  let pushes = 0;
  let pushedBytes = 0;
  const receiver = http.createServer((req, res) => {
    let size = 0;
    req.on("data", (c) => (size += c.length));
    req.on("end", () => {
      pushes++;
      pushedBytes += size;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/wasm-epp/v1/state`;
  const child = spawn(process.execPath, [bundle, "--manifests", dir, "--push-url", url, "--metrics-port", "0", "--metrics-address", "127.0.0.1", "--scrape-interval", `${INTERVAL}ms`, "--scrape-jitter", "0", "--log-level", "warn"], {
    env: { ...process.env, WASM_EPP_PUSH_TOKEN: "bench" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  try {
    await sleep(3000);
    const c0 = cpuSecondsOf(child.pid!);
    const p0 = pushes;
    const pb0 = pushedBytes;
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    const wall = (performance.now() - t0) / 1000;
    const cores = (cpuSecondsOf(child.pid!) - c0) / wall;
    console.log(`whole sidecar (build/sidecar.js, file mode, pushing): ${PODS} pods for ${wall.toFixed(1)} s`);
    console.log(`  CPU                ${cores.toFixed(3)} cores`);
    console.log(`  pushes/s           ${((pushes - p0) / wall).toFixed(1)}  (document ${((pushedBytes - pb0) / Math.max(1, pushes - p0) / 1024).toFixed(1)} KiB)`);
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.on("exit", r));
    receiver.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (values["serve-pods"]) return servePods();
  const pods = await startPods();
  console.log(`fake pods: ${PODS} on 127.0.1.1-${PODS}:${pods.port}, exposition ${(pods.bytes / 1024).toFixed(1)} KiB each (separate process)`);
  try {
    await benchScraper(pods.port);
    await benchWholeSidecar(pods.port);
  } finally {
    pods.child.stdin!.end();
    pods.child.kill();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
