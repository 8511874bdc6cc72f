// npm run bench:peers — what sharing between gateway replicas (prefix records and loads) costs
// one sidecar.
//
// One whole sidecar (scripts/bench/peers-sidecar.ts, a child process: the only one measured)
// shares with N - 1 peers. It runs in file mode with --pools InferencePools of no pod (so it
// serves those pools and scrapes nothing). This process plays everything around it:
//   - its filter's share endpoint (the stub in test/sidecar/prefix-filter.ts), journaling the
//     records of this replica's share of the traffic: 1000 requests/s over the gateway, spread
//     evenly, so 1000/N records/s, each for one of 100 pods, with n prefix hashes, n from 1 to
//     25, log-uniform (mostly small: median 5, mean 7.7); and answering each read with a load
//     record per pool of 24 + 32 bytes per pod (3224 bytes for 100 pods);
//   - N - 1 peers: each takes the sidecar's stream (POST /peers/v1/stream: one frame per interval)
//     and sends it, every interval, a frame on a stream of its own with its own 1000/N records/s
//     and its load of every pool, as the sidecars do.
// After a 3 s warm-up, --seconds (20) are measured: the sidecar's CPU (process.cpuUsage, user +
// system) as a fraction of one core, the bytes (frames) it sends to peers and receives from them,
// and its requests to its filter. The sidecar's own work besides (the same pools, no peer flags: one
// state push a second) is measured alone first, as the baseline.
//
//   tsx scripts/bench/peers.ts [--replicas 4,8,8@250] [--seconds 20] [--rate 1000] [--pods 100] [--pools 1]
// (N@MS: N replicas with --peer-interval MS, default 100 ms.)

import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { encode, endpointId, ms32 } from "../../sidecar/peers/records.ts";
import { encodeFrame, FRAME_HEADER_BYTES, FrameSplitter } from "../../sidecar/peers/frames.ts";
import { concat, encodeLoad, encodePrefix } from "../../sidecar/peers/sections.ts";
import { PrefixFilterStub } from "../../test/sidecar/prefix-filter.ts";

const { values } = parseArgs({
  options: {
    replicas: { type: "string", default: "4,8,8@250" },
    seconds: { type: "string", default: "20" },
    rate: { type: "string", default: "1000" },
    pods: { type: "string", default: "100" },
    pools: { type: "string", default: "1" },
    warmup: { type: "string", default: "3" },
  },
});
// "N" or "N@MS": N replicas, with --peer-interval MS (default 100) for the sidecar and its peers.
const REPLICAS = values.replicas!.split(",").map((t) => {
  const [n, ms] = t.split("@");
  return { n: Number(n), intervalMs: ms === undefined ? 100 : Number(ms) };
});
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const PODS = Number(values.pods);
const WARMUP = Number(values.warmup);
const POOLS = Array.from({ length: Number(values.pools) }, (_, i) => `bench/pool-${i}`);
// A load record as the filter keeps it: 24 bytes of header, 32 per endpoint.
const LOAD_RECORD_BYTES = 24 + 32 * PODS;
const TOKEN = "bench-peer-token";
const PUSH_TOKEN = "bench-push-token";
const RUNNER_SOURCE = fileURLToPath(new URL("./peers-sidecar.ts", import.meta.url));

// The measured sidecar is bundled the way build/sidecar.js is (esbuild, ESM for Node 20), into a
// temporary directory, so that it runs as shipped (no TypeScript loader in the process).
async function bundleRunner(): Promise<string> {
  const esbuild = await import("esbuild");
  const out = join(mkdtempSync(join(tmpdir(), "wasm-epp-bench-peers-bundle-")), "peers-sidecar.mjs");
  await esbuild.build({
    entryPoints: [RUNNER_SOURCE],
    outfile: out,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    banner: { js: "import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);" },
    logLevel: "warning",
  });
  return out;
}
const RUNNER = await bundleRunner();

const endpoints = Array.from({ length: PODS }, (_, i) => endpointId(`10.1.${Math.floor(i / 250)}.${(i % 250) + 1}:8000`));
let seq = 1;

// n from 1 to 25, log-uniform.
function hashCount(): number {
  return Math.min(25, Math.floor(Math.exp(Math.random() * Math.log(26))));
}

function randomRecord(): Uint8Array {
  const n = hashCount();
  const h = new Uint8Array(8 * n);
  const v = new DataView(h.buffer);
  for (let i = 0; i < n; i++) v.setBigUint64(8 * i, (BigInt(seq) << 8n) | BigInt(i), true);
  seq++;
  return encode(endpoints[Math.floor(Math.random() * PODS)], ms32(Date.now()), h);
}

function hashesOf(rec: Uint8Array): bigint[] {
  const v = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  return Array.from({ length: rec[8] }, (_, i) => v.getBigUint64(9 + 8 * i, true));
}

function loadRecord(): Uint8Array {
  const r = new Uint8Array(LOAD_RECORD_BYTES);
  for (let i = 0; i < r.length; i++) r[i] = (Math.random() * 256) | 0;
  return r;
}

// A fake peer: takes the sidecar's stream (or posts), and sends its own records and loads every
// interval on a stream of its own to the sidecar, as the sidecars do.
class FakePeer {
  port = 0;
  bytesIn = 0;
  bytesOut = 0;
  framesIn = 0;
  framesOut = 0;
  failures = 0;
  private server = http.createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
    if (req.method === "GET") return void res.writeHead(200, { "content-type": "application/vnd.wasm-epp.prefix-records", "content-length": 0 }).end();
    if (req.url === "/peers/v1/stream") {
      res.writeHead(200, { "content-type": "application/json" }).flushHeaders();
      const splitter = new FrameSplitter(1024 * 1024);
      req.on("data", (c: Buffer) => {
        for (const f of splitter.push(c).frames) {
          this.bytesIn += FRAME_HEADER_BYTES + f.length;
          this.framesIn++;
        }
      });
      req.on("end", () => res.end());
      return;
    }
    let n = 0;
    req.on("data", (c: Buffer) => (n += c.length));
    req.on("end", () => {
      this.bytesIn += n;
      this.framesIn++;
      res.writeHead(204).end();
    });
  });
  private timer?: NodeJS.Timeout;
  private stream?: http.ClientRequest;
  private open = false;
  private owed = 0;

  async listen(): Promise<void> {
    this.server.keepAliveTimeout = 5000;
    this.server.requestTimeout = 0;
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", () => r()));
    this.port = (this.server.address() as AddressInfo).port;
  }

  private connect(target: number): void {
    const req = http.request({ host: "127.0.0.1", port: target, path: "/peers/v1/stream", method: "POST", agent: false, headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/vnd.wasm-epp.share-frames", "transfer-encoding": "chunked", "x-wasm-epp-peer-port": String(this.port) } });
    this.stream = req;
    this.open = false;
    const lost = () => {
      if (this.stream !== req) return;
      this.failures++;
      this.stream = undefined;
      req.destroy();
    };
    req.on("response", (res) => {
      res.resume();
      if (res.statusCode === 200 && this.stream === req) this.open = true;
      else lost();
      res.on("end", lost);
    });
    req.on("error", lost);
    req.flushHeaders();
  }

  startSending(target: number, perSecond: number, intervalMs: number, name: string): void {
    let last = Date.now();
    this.connect(target);
    this.timer = setInterval(() => {
      const now = Date.now();
      this.owed += ((now - last) / 1000) * perSecond;
      last = now;
      if (!this.stream) return this.connect(target);
      if (!this.open) return;
      const n = Math.floor(this.owed);
      this.owed -= n;
      const sections = POOLS.map((pool) => encodeLoad(pool, name, loadRecord()));
      if (n > 0) sections.push(encodePrefix(Array.from({ length: n }, () => randomRecord())));
      const frame = encodeFrame(sections.length === 0 ? new Uint8Array(0) : concat(sections));
      this.stream.write(frame);
      this.bytesOut += frame.length;
      this.framesOut++;
    }, intervalMs);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    const s = this.stream;
    this.stream = undefined;
    s?.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function ask(child: ChildProcess, cmd: string): Promise<any> {
  return new Promise((resolve) => {
    child.once("message", resolve);
    child.send({ cmd });
  });
}

function startChild(args: string[]): Promise<{ child: ChildProcess; peerPort: number | null }> {
  const child = fork(RUNNER, args, { execArgv: [...(process.env.BENCH_PEERS_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PEERS_PROFILE}`] : [])], env: { ...process.env, WASM_EPP_PUSH_TOKEN: PUSH_TOKEN }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve, reject) => {
    child.once("message", (m: any) => resolve({ child, peerPort: m.peerPort }));
    child.once("exit", (code) => reject(new Error(`the sidecar exited with ${code}`)));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  replicas: number;
  intervalMs: number;
  cpu: number;
  sysShare: number;
  ownRecordsPerSec: number;
  outBytesPerSec: number;
  inBytesPerSec: number;
  framesOutPerSec: number;
  framesInPerSec: number;
  pullsPerSec: number;
  importsPerSec: number;
  importedRecordsPerSec: number;
  importedLoadsPerSec: number;
  poolsAsked: boolean;
  failures: number;
  ready: boolean;
}

async function run(n: number, intervalMs: number): Promise<Row> {
  const filter = await PrefixFilterStub.start({ token: PUSH_TOKEN, journal: 4096, loadRecord });
  const peers: FakePeer[] = [];
  for (let i = 0; i < n - 1; i++) {
    const p = new FakePeer();
    await p.listen();
    peers.push(p);
  }
  const dir = mkdtempSync(join(tmpdir(), "wasm-epp-bench-peers-"));
  writeFileSync(join(dir, "peer-token"), TOKEN);
  const manifests = mkdtempSync(join(dir, "manifests-"));
  writeFileSync(join(manifests, "pools.yaml"), POOLS.map((p) => `apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\nmetadata: {name: ${p.split("/")[1]}, namespace: ${p.split("/")[0]}}\nspec: {targetPortNumber: 8000, selector: {app: bench-none}}\n`).join("---\n"));
  const args = ["--manifests", manifests, "--replica-name", "bench-0", "--push-url", filter.pushUrl, "--metrics-port", "0", "--log-level", "warn"];
  if (n > 1) args.push("--peer-port", "0", "--peer-address", "127.0.0.1", "--peer-token-file", join(dir, "peer-token"), "--peer-interval", `${intervalMs}ms`, ...peers.flatMap((p) => ["--peer", `127.0.0.1:${p.port}`]));
  const { child, peerPort } = await startChild(args);
  // This replica's share of the traffic, journaled by its filter.
  const own = RATE / n;
  let owed = 0;
  let last = Date.now();
  let produced = 0;
  const gen = setInterval(() => {
    const now = Date.now();
    owed += ((now - last) / 1000) * own;
    last = now;
    for (; owed >= 1; owed--) {
      const rec = randomRecord();
      filter.route(new DataView(rec.buffer).getUint32(0, true), hashesOf(rec), now);
      produced++;
    }
  }, 10);
  if (peerPort !== null) peers.forEach((p, i) => p.startSending(peerPort, own, intervalMs, `bench-${i + 1}`));
  await sleep(WARMUP * 1000);
  const snap = () => ({
    cpu: 0,
    out: peers.reduce((s, p) => s + p.bytesIn, 0),
    in: peers.reduce((s, p) => s + p.bytesOut, 0),
    framesOut: peers.reduce((s, p) => s + p.framesIn, 0),
    framesIn: peers.reduce((s, p) => s + p.framesOut, 0),
    pulls: filter.pulls.length,
    imports: filter.imports.length,
    importedRecords: filter.imports.reduce((s, i) => s + i.records, 0),
    importedLoads: filter.imports.reduce((s, i) => s + i.loads.length, 0),
    failures: peers.reduce((s, p) => s + p.failures, 0),
    pulledWithPools: filter.pulls.filter((p) => p.pools.length === POOLS.length).length,
    produced,
    at: performance.now(),
  });
  const a = snap();
  const c0 = (await ask(child, "cpu")).cpu;
  await sleep(SECONDS * 1000);
  const m1 = await ask(child, "cpu");
  const b = snap();
  const secs = (b.at - a.at) / 1000;
  clearInterval(gen);
  const exited = new Promise((r) => child.once("exit", r));
  child.send({ cmd: "stop" });
  await exited;
  for (const p of peers) await p.close();
  await filter.down();
  const cpuSec = (m1.cpu.user - c0.user + m1.cpu.system - c0.system) / 1e6;
  const sysShare = (m1.cpu.system - c0.system) / 1e6 / cpuSec;
  return {
    replicas: n,
    intervalMs,
    cpu: cpuSec / secs,
    sysShare,
    ownRecordsPerSec: (b.produced - a.produced) / secs,
    outBytesPerSec: (b.out - a.out) / secs,
    inBytesPerSec: (b.in - a.in) / secs,
    framesOutPerSec: (b.framesOut - a.framesOut) / secs,
    framesInPerSec: (b.framesIn - a.framesIn) / secs,
    pullsPerSec: (b.pulls - a.pulls) / secs,
    importsPerSec: (b.imports - a.imports) / secs,
    importedRecordsPerSec: (b.importedRecords - a.importedRecords) / secs,
    importedLoadsPerSec: (b.importedLoads - a.importedLoads) / secs,
    poolsAsked: b.pulledWithPools - a.pulledWithPools === b.pulls - a.pulls,
    failures: b.failures - a.failures, // while measured (not when the sidecar stops)
    ready: m1.ready,
  };
}

const rows: Row[] = [];
console.log(`bench:peers — ${RATE} requests/s over the gateway, ${PODS} pods, ${POOLS.length} pool(s) (load records of ${LOAD_RECORD_BYTES} bytes), ${SECONDS} s measured per run (after ${WARMUP} s)`);
for (const { n, intervalMs } of [{ n: 1, intervalMs: 100 }, ...REPLICAS]) {
  const r = await run(n, intervalMs);
  rows.push(r);
  console.log(`  ${n === 1 ? "baseline (no peers)" : `N = ${n}, --peer-interval ${intervalMs}ms`}: ${(r.cpu * 100).toFixed(2)}% of a core (${(r.sysShare * 100).toFixed(0)}% of it in the kernel)`);
}
const base = rows[0].cpu;
const kb = (x: number) => `${(x / 1024).toFixed(1)} KiB/s`;
console.log("");
console.log("| replicas | --peer-interval | own records/s | sent to peers | received from peers | frames out/in per s | filter reads/s, posts/s | CPU (fraction of a core) | CPU above baseline |");
console.log("|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  if (r.replicas === 1) {
    console.log(`| baseline (no peer flags) | — | — | — | — | — | — | ${r.cpu.toFixed(4)} | — |`);
    continue;
  }
  console.log(`| ${r.replicas} | ${r.intervalMs} ms | ${r.ownRecordsPerSec.toFixed(0)} | ${kb(r.outBytesPerSec)} | ${kb(r.inBytesPerSec)} | ${r.framesOutPerSec.toFixed(0)} / ${r.framesInPerSec.toFixed(0)} | ${r.pullsPerSec.toFixed(1)}, ${r.importsPerSec.toFixed(1)} (${r.importedRecordsPerSec.toFixed(0)} records/s, ${r.importedLoadsPerSec.toFixed(0)} loads/s) | ${r.cpu.toFixed(4)} | ${(r.cpu - base).toFixed(4)} |`);
}
// The target prices the exchange: what sharing adds to the sidecar (above the same sidecar with no
// peer flags). The whole process is shown beside it.
console.log("\ntarget: the exchange <= 0.05 core (CPU above the sidecar alone); the whole sidecar beside it");
for (const r of rows.filter((x) => x.replicas > 1)) console.log(`  N = ${r.replicas}, ${r.intervalMs} ms: exchange ${(r.cpu - base).toFixed(4)} — ${r.cpu - base <= 0.05 ? "met" : "NOT met"}; whole sidecar ${r.cpu.toFixed(4)}${r.cpu <= 0.05 ? "" : " (above 0.05)"}`);
for (const r of rows.filter((x) => x.replicas > 1 && !x.poolsAsked)) console.log(`note: N = ${r.replicas}: some reads of the filter did not name every pool`);
if (rows.some((r) => r.failures > 0)) console.log(`note: ${rows.reduce((s, r) => s + r.failures, 0)} peer streams to the sidecar failed or closed`);
