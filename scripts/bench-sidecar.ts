// npm run bench:sidecar — CPU cost of scraping model servers.
//
// 100 fake vLLM pods (a separate process, so their CPU is not counted) serve a full-size V1
// exposition (histograms and all, ~45 KB) on 127.0.1.1-100:<port>, and answer name[] as
// prometheus_client's exposition app does (test/fakes/prom-filter.ts). Then, side by side in one
// run, without and with name[] filtering:
//   1. the sidecar's scraping part (Scraper: HTTP GET, bounded read, parse, extract) runs in this
//      process, every pod every --interval ms, for --seconds (default 30) each; CPU from
//      process.cpuUsage(), per second and per scrape, and bytes per scrape;
//   2. the whole sidecar (build/sidecar.js --manifests for those pods, pushing to a receiver in
//      this process) at each --intervals value, for the same time; its CPU from /proc/<pid>/stat.
// Target: <= 0.25 core for the whole sidecar with 100 pods at the default interval, and CPU per
// scrape at least 3x lower with filtering than without.
//
//   tsx scripts/bench-sidecar.ts [--pods 100] [--seconds 30] [--interval 100] [--intervals 100,50]

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
import { answerFor } from "../test/fakes/prom-filter.ts";
import { nameQuery } from "../sidecar/metrics/runtime.ts";

const { values } = parseArgs({
  options: {
    pods: { type: "string", default: "100" },
    seconds: { type: "string", default: "30" },
    interval: { type: "string", default: "100" },
    intervals: { type: "string", default: "100,50" },
    "serve-pods": { type: "boolean", default: false },
    port: { type: "string", default: "0" },
  },
});
const PODS = Number(values.pods);
const SECONDS = Number(values.seconds);
const INTERVAL = Number(values.interval);
const INTERVALS = String(values.intervals).split(",").map(Number);
const ROOT = fileURLToPath(new URL("..", import.meta.url));

function podIp(i: number): string {
  return `127.0.1.${i + 1}`;
}

// ---- child: the fake pods ---------------------------------------------------------------------
async function servePods(): Promise<void> {
  let port = Number(values.port);
  const pages: Buffer[] = [];
  const filtered: Buffer[] = [];
  // The sidecar's query; any other name[] query is answered by the filter itself.
  const query = "/metrics" + nameQuery("vllm");
  const render = () => {
    for (let i = 0; i < PODS; i++) {
      const text = vllmV1Exposition(defaultState({ waiting: Math.floor(Math.random() * 8), running: 20 + (i % 7), kvUsage: Math.random(), served: 5000 + i }));
      pages[i] = Buffer.from(text);
      filtered[i] = Buffer.from(answerFor(query, text));
    }
  };
  render();
  setInterval(render, 1000).unref();
  for (let i = 0; i < PODS; i++) {
    const server = http.createServer((req, res) => {
      const url = req.url ?? "/metrics";
      const body = url === "/metrics" ? pages[i] : url === query ? filtered[i] : Buffer.from(answerFor(url, pages[i].toString()));
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": body.length }).end(body);
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, podIp(i), () => resolve());
    });
    port = (server.address() as { port: number }).port;
  }
  process.stdout.write(JSON.stringify({ port, bytes: pages[0].length, filteredBytes: filtered[0].length }) + "\n");
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
}

function startPods(): Promise<{ child: ChildProcess; port: number; bytes: number; filteredBytes: number }> {
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--serve-pods", "--pods", String(PODS)], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c) => {
      out += c;
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        const info = JSON.parse(out.slice(0, nl));
        resolve({ child, port: info.port, bytes: info.bytes, filteredBytes: info.filteredBytes });
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

interface ScrapeFigures {
  cores: number;
  user: number;
  system: number;
  scrapesPerSecond: number;
  errors: number;
  bytesPerScrape: number;
  cpuPerScrapeUs: number;
}

async function benchScraper(port: number, nameFilter: boolean): Promise<ScrapeFigures> {
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
  const targets: ScrapeTarget[] = Array.from({ length: PODS }, (_, i) => ({ key: `p${i}`, pool: "default/bench", pod: `pod-${i}`, host: podIp(i), port, runtime: "vllm", nameFilter }));
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
  const bytes = scraper.bytesParsed - b0;
  await scraper.stop();
  return {
    cores: (cpu.user + cpu.system) / 1e6 / wall,
    user: cpu.user / 1e6 / wall,
    system: cpu.system / 1e6 / wall,
    scrapesPerSecond: n / wall,
    errors: errors - e0,
    bytesPerScrape: n > 0 ? bytes / n : 0,
    cpuPerScrapeUs: n > 0 ? (cpu.user + cpu.system) / n : 0,
  };
}

function printScrapers(whole: ScrapeFigures, filtered: ScrapeFigures): void {
  console.log(`scraping part (in process): ${PODS} pods every ${INTERVAL} ms, ${SECONDS} s each`);
  const row = (label: string, f: (x: ScrapeFigures) => string) => console.log(`  ${label.padEnd(18)} ${f(whole).padStart(14)} ${f(filtered).padStart(14)}`);
  console.log(`  ${"".padEnd(18)} ${"whole page".padStart(14)} ${"name[]".padStart(14)}`);
  row("scrapes/s", (x) => `${x.scrapesPerSecond.toFixed(0)} (${x.errors} err)`);
  row("bytes per scrape", (x) => `${x.bytesPerScrape.toFixed(0)}`);
  row("CPU", (x) => `${x.cores.toFixed(3)} cores`);
  row("  user / system", (x) => `${x.user.toFixed(3)} / ${x.system.toFixed(3)}`);
  row("CPU per scrape", (x) => `${x.cpuPerScrapeUs.toFixed(0)} µs`);
  const ratio = whole.cpuPerScrapeUs / Math.max(1e-9, filtered.cpuPerScrapeUs);
  console.log(`  CPU per scrape, whole / name[]: ${ratio.toFixed(2)}x (target >= 3x: ${ratio >= 3 ? "met" : "NOT met"})`);
}

async function benchWholeSidecar(port: number, interval: number, nameFilter: boolean): Promise<number> {
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
  const child = spawn(process.execPath, [bundle, "--manifests", dir, "--push-url", url, "--metrics-port", "0", "--metrics-address", "127.0.0.1", "--scrape-interval", `${interval}ms`, "--scrape-jitter", "0", "--scrape-name-filter", nameFilter ? "on" : "off", "--log-level", "warn"], {
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
    console.log(`  every ${String(interval).padStart(3)} ms, ${nameFilter ? "name[]    " : "whole page"}: ${cores.toFixed(3)} cores; ${((pushes - p0) / wall).toFixed(1)} pushes/s (document ${((pushedBytes - pb0) / Math.max(1, pushes - p0) / 1024).toFixed(1)} KiB)${nameFilter && interval === INTERVALS[0] ? `  target <= 0.25 core: ${cores <= 0.25 ? "met" : "NOT met"}` : ""}`);
    return cores;
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
  console.log(`fake pods: ${PODS} on 127.0.1.1-${PODS}:${pods.port}, exposition ${(pods.bytes / 1024).toFixed(1)} KiB each, ${(pods.filteredBytes / 1024).toFixed(1)} KiB with the sidecar's name[] (separate process)`);
  try {
    const whole = await benchScraper(pods.port, false);
    const filtered = await benchScraper(pods.port, true);
    printScrapers(whole, filtered);
    console.log(`whole sidecar (build/sidecar.js, file mode, pushing): ${PODS} pods, ${SECONDS} s each`);
    for (const interval of INTERVALS) {
      await benchWholeSidecar(pods.port, interval, false);
      await benchWholeSidecar(pods.port, interval, true);
    }
  } finally {
    pods.child.stdin!.end();
    pods.child.kill();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
