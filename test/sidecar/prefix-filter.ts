// A stub of the wasm-epp filter's loopback push listener for sharing between replicas, answering
// as the contract says (docs/replicas.md):
//   GET  /wasm-epp/v1/share?since=S&pool=NS/NAME...   200 application/vnd.wasm-epp.share: one
//        PREFIX section with the records of sequence >= S still in the journal ring (no since:
//        from the oldest held), then one LOAD section per pool asked with an empty replica name
//        and this replica's load record of the pool; x-wasm-epp-prefix-next: N,
//        x-wasm-epp-prefix-lost: L, x-wasm-epp-prefix-records: R; 400 invalid_cursor / invalid_pool
//   POST /wasm-epp/v1/share   sections, any number, any order: 204 x-wasm-epp-prefix-merged: M,
//        x-wasm-epp-prefix-skipped: K (hashes), x-wasm-epp-load-records: L (LOAD sections taken);
//        413 beyond maxImportBytes (the message names the limit); 400 invalid_share (nothing
//        applied; the message gives the byte offset)
//   404 {"error":{"code":"prefix_sharing_off"}} when peers are disabled; 401 without the token
// Sections: u8 kind, u32 payload length (little-endian), payload. Kind 1 PREFIX: records back to
// back. Kind 2 LOAD: u8 pool length, pool, u8 replica length, replica (1..253 in a POST), the
// record to the end. Unknown kinds are skipped. The parser here is written apart from the
// sidecar's codec, so that the tests check one against the other.
// Merging: newer wins per (hash, endpoint); a time more than 5 s in the future counts as now; a
// time older than ttlMs is skipped; imported records never enter the journal. A LOAD section
// replaces the sender replica's earlier record of that pool.
// Plus a minimal state endpoint (POST stores any JSON document, 204; GET returns it), so that a
// whole sidecar can push to it and become ready.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { diff32, encode, ms32 } from "../../sidecar/peers/records.ts";

export const SHARE_PATH = "/wasm-epp/v1/share";
export const STATE_PATH = "/wasm-epp/v1/state";

export interface FilterStubOptions {
  token?: string;
  peersEnabled?: boolean;
  journal?: number;
  maxImportBytes?: number;
  ttlMs?: number;
  now?: () => number;
  port?: number;
  // This replica's load record of a pool (default: empty, before its first request).
  loadRecord?: (pool: string) => Uint8Array;
}

export interface StubLoad {
  pool: string;
  replica: string;
  record: Buffer;
}

export class PrefixFilterStub {
  port = 0;
  token: string;
  peersEnabled: boolean;
  maxImportBytes: number;
  ttlMs: number;
  readonly journalSize: number;
  private readonly now: () => number;
  // The journal: record i has sequence `firstSeq + i` (only the last journalSize are held).
  private journal: Uint8Array[] = [];
  private firstSeq = 0;
  // The index: "<hash hex>/<endpoint>" -> newest time (ms32).
  readonly index = new Map<string, number>();
  readonly pulls: Array<{ since?: number; pools: string[]; status: number; records: number }> = [];
  readonly imports: Array<{ status: number; bytes: number; records: number; merged: number; skipped: number; loads: StubLoad[]; error?: string }> = [];
  // Other replicas' loads as imported: pool -> replica -> latest record.
  readonly peerLoads = new Map<string, Map<string, Buffer>>();
  // This replica's load records, by pool (set by tests; loadRecord otherwise).
  readonly ownLoads = new Map<string, Uint8Array>();
  private readonly loadRecord?: (pool: string) => Uint8Array;
  readonly statePushes: number[] = [];
  stateDoc?: string;
  private server?: http.Server;

  constructor(opts: FilterStubOptions = {}) {
    this.token = opts.token ?? "push-secret";
    this.peersEnabled = opts.peersEnabled ?? true;
    this.journalSize = opts.journal ?? 4096;
    this.maxImportBytes = opts.maxImportBytes ?? 1024 * 1024;
    this.ttlMs = opts.ttlMs ?? 600_000;
    this.now = opts.now ?? Date.now;
    this.port = opts.port ?? 0;
    this.loadRecord = opts.loadRecord;
  }

  static async start(opts: FilterStubOptions = {}): Promise<PrefixFilterStub> {
    const f = new PrefixFilterStub(opts);
    await f.up();
    return f;
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pushUrl(): string {
    return `${this.origin}${STATE_PATH}`;
  }

  get nextSeq(): number {
    return this.firstSeq + this.journal.length;
  }

  // The routing filter records a request: its record goes into the index and the journal.
  route(endpoint: number, hashes: bigint[], timeMs = this.now()): Uint8Array {
    const bytes = new Uint8Array(8 * hashes.length);
    const view = new DataView(bytes.buffer);
    hashes.forEach((h, i) => view.setBigUint64(8 * i, h, true));
    const rec = encode(endpoint, ms32(timeMs), bytes);
    for (const h of hashes) this.index.set(`${h.toString(16)}/${endpoint}`, ms32(timeMs));
    this.journal.push(rec);
    if (this.journal.length > this.journalSize) {
      const drop = this.journal.length - this.journalSize;
      this.journal.splice(0, drop);
      this.firstSeq += drop;
    }
    return rec;
  }

  // Whether the index holds (hash, endpoint).
  holds(hash: bigint, endpoint: number): boolean {
    return this.index.has(`${hash.toString(16)}/${endpoint}`);
  }

  async up(): Promise<void> {
    if (this.server) return;
    const server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async down(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private error(res: http.ServerResponse, status: number, code: string, message: string): void {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ error: { message, type: "invalid_request_error", param: null, code } }));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => this.answer(req, res, Buffer.concat(chunks)));
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const url = new URL(req.url ?? "/", "http://stub");
    if (req.headers.authorization !== `Bearer ${this.token}`) return this.error(res, 401, "invalid_push_token", "a valid bearer token is required");
    if (url.pathname === STATE_PATH) {
      if (req.method === "GET") {
        if (!this.stateDoc) return this.error(res, 404, "not_found", "no state has been pushed yet");
        res.writeHead(200, { "content-type": "application/json" }).end(this.stateDoc);
        return;
      }
      try {
        JSON.parse(body.toString("utf8"));
      } catch {
        return this.error(res, 400, "invalid_state", "not JSON");
      }
      this.stateDoc = body.toString("utf8");
      this.statePushes.push(Date.now());
      res.writeHead(204).end();
      return;
    }
    if (url.pathname !== SHARE_PATH) return this.error(res, 404, "not_found", "no such endpoint");
    if (!this.peersEnabled) {
      if (req.method === "GET") this.pulls.push({ since: undefined, pools: [], status: 404, records: 0 });
      else this.imports.push({ status: 404, bytes: body.length, records: 0, merged: 0, skipped: 0, loads: [] });
      return this.error(res, 404, "prefix_sharing_off", "prefix sharing is off (peers.enabled is false)");
    }
    if (req.method === "GET") {
      const sinceText = url.searchParams.get("since");
      const pools = url.searchParams.getAll("pool");
      if (sinceText !== null && !/^\d{1,15}$/.test(sinceText)) {
        this.pulls.push({ since: undefined, pools, status: 400, records: 0 });
        return this.error(res, 400, "invalid_cursor", "since must be a sequence number");
      }
      if (pools.some((p) => !POOL.test(p))) {
        this.pulls.push({ since: undefined, pools, status: 400, records: 0 });
        return this.error(res, 400, "invalid_pool", "pool must name an inference pool as namespace/name");
      }
      const since = sinceText === null ? undefined : Number(sinceText);
      const from = since === undefined ? this.firstSeq : Math.max(since, this.firstSeq);
      const lost = since === undefined ? 0 : Math.max(0, Math.min(this.firstSeq, this.nextSeq) - since);
      const recs = this.journal.slice(Math.max(0, from - this.firstSeq));
      const sections = [section(1, Buffer.concat(recs))];
      for (const pool of pools) {
        const record = this.ownLoads.get(pool) ?? this.loadRecord?.(pool) ?? new Uint8Array(0);
        sections.push(section(2, Buffer.concat([Buffer.from([pool.length]), Buffer.from(pool, "latin1"), Buffer.from([0]), record])));
      }
      const out = Buffer.concat(sections);
      this.pulls.push({ since, pools, status: 200, records: recs.length });
      res.writeHead(200, {
        "content-type": "application/vnd.wasm-epp.share",
        "content-length": out.length,
        "x-wasm-epp-prefix-next": String(this.nextSeq),
        "x-wasm-epp-prefix-lost": String(lost),
        "x-wasm-epp-prefix-records": String(recs.length),
      }).end(out);
      return;
    }
    if (req.method !== "POST") return this.error(res, 405, "method_not_allowed", "use GET or POST");
    if (body.length > this.maxImportBytes) {
      this.imports.push({ status: 413, bytes: body.length, records: 0, merged: 0, skipped: 0, loads: [] });
      return this.error(res, 413, "share_too_large", `the body is larger than ${this.maxImportBytes} bytes (peers.max_import_bytes)`);
    }
    const parsed = parseShare(body);
    if (typeof parsed === "string") {
      this.imports.push({ status: 400, bytes: body.length, records: 0, merged: 0, skipped: 0, loads: [], error: parsed });
      return this.error(res, 400, "invalid_share", parsed);
    }
    const now = ms32(this.now());
    let merged = 0;
    let skipped = 0;
    for (const rec of parsed.records) {
      const ep = rec.readUInt32LE(0);
      let t = rec.readUInt32LE(4);
      const n = rec[8];
      if (diff32(t, now) > 5000) t = now;
      for (let i = 0; i < n; i++) {
        const h = rec.readBigUInt64LE(9 + 8 * i);
        const key = `${h.toString(16)}/${ep}`;
        const had = this.index.get(key);
        if (diff32(now, t) > this.ttlMs || (had !== undefined && diff32(t, had) <= 0)) {
          skipped++;
          continue;
        }
        this.index.set(key, t);
        merged++;
      }
    }
    for (const l of parsed.loads) {
      let byReplica = this.peerLoads.get(l.pool);
      if (!byReplica) this.peerLoads.set(l.pool, (byReplica = new Map()));
      byReplica.set(l.replica, l.record);
    }
    this.imports.push({ status: 204, bytes: body.length, records: parsed.records.length, merged, skipped, loads: parsed.loads });
    res.writeHead(204, { "x-wasm-epp-prefix-merged": String(merged), "x-wasm-epp-prefix-skipped": String(skipped), "x-wasm-epp-load-records": String(parsed.loads.length) }).end();
  }
}

const POOL = /^[a-z0-9.-]+\/[a-z0-9.-]+$/;

function section(kind: number, payload: Buffer | Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head[0] = kind;
  head.writeUInt32LE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

// A POST body's records and loads, or what is wrong with it (naming the byte offset).
function parseShare(body: Buffer): { records: Buffer[]; loads: StubLoad[] } | string {
  const records: Buffer[] = [];
  const loads: StubLoad[] = [];
  let off = 0;
  while (off < body.length) {
    if (body.length - off < 5) return `invalid share at byte ${off}: a section header is cut short`;
    const kind = body[off];
    const len = body.readUInt32LE(off + 1);
    const start = off + 5;
    const end = start + len;
    if (end > body.length) return `invalid share at byte ${off}: the section runs past the end`;
    if (kind === 1) {
      let r = start;
      while (r < end) {
        if (end - r < 9) return `invalid share at byte ${r}: a record is cut short`;
        const n = body[r + 8];
        if (n === 0 || n > 64) return `invalid share at byte ${r + 8}: n is ${n}`;
        if (r + 9 + 8 * n > end) return `invalid share at byte ${r}: a record is cut short`;
        records.push(body.subarray(r, r + 9 + 8 * n));
        r += 9 + 8 * n;
      }
    } else if (kind === 2) {
      if (len < 2) return `invalid share at byte ${start}: a load section is cut short`;
      const pl = body[start];
      if (start + 1 + pl + 1 > end) return `invalid share at byte ${start}: the pool runs past the section`;
      const pool = body.toString("latin1", start + 1, start + 1 + pl);
      if (!POOL.test(pool)) return `invalid share at byte ${start + 1}: invalid pool`;
      const rl = body[start + 1 + pl];
      const rStart = start + 2 + pl;
      if (rl === 0 || rStart + rl > end) return `invalid share at byte ${rStart - 1}: invalid replica`;
      const replica = body.toString("latin1", rStart, rStart + rl);
      if (!/^[\x21-\x7e]+$/.test(replica)) return `invalid share at byte ${rStart}: invalid replica`;
      loads.push({ pool, replica, record: Buffer.from(body.subarray(rStart + rl, end)) });
    }
    off = end;
  }
  return { records, loads };
}

// n chained-looking hashes for tests: distinct per (seed, i).
export function hashes(seed: number, n: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push((BigInt(seed) << 32n) | BigInt(i + 1));
  return out;
}
