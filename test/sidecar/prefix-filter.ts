// A stub of the wasm-epp filter's loopback push listener for prefix sharing, answering as the
// contract says:
//   GET  /wasm-epp/v1/prefix?since=S  200 records with sequence >= S still in the journal ring
//        (no since: from the oldest held); x-wasm-epp-prefix-next: N, x-wasm-epp-prefix-lost: L
//   POST /wasm-epp/v1/prefix          204 x-wasm-epp-prefix-merged: M, x-wasm-epp-prefix-skipped: K;
//        413 beyond maxImportBytes (the message names the limit), 400 malformed (byte offset)
//   404 {"error":{"code":"prefix_sharing_off"}} when peers are disabled; 401 without the token
// Merging: newer wins per (hash, endpoint); a time more than 5 s in the future counts as now; a
// time older than ttlMs is skipped; imported records never enter the journal.
// Plus a minimal state endpoint (POST stores any JSON document, 204; GET returns it), so that a
// whole sidecar can push to it and become ready.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { diff32, encode, ms32, validate } from "../../sidecar/peers/records.ts";

export const PREFIX_PATH = "/wasm-epp/v1/prefix";
export const STATE_PATH = "/wasm-epp/v1/state";

export interface FilterStubOptions {
  token?: string;
  peersEnabled?: boolean;
  journal?: number;
  maxImportBytes?: number;
  ttlMs?: number;
  now?: () => number;
  port?: number;
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
  readonly pulls: Array<{ since?: number; status: number; records: number }> = [];
  readonly imports: Array<{ status: number; bytes: number; records: number; merged: number; skipped: number }> = [];
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
    if (url.pathname !== PREFIX_PATH) return this.error(res, 404, "not_found", "no such endpoint");
    if (!this.peersEnabled) {
      if (req.method === "GET") this.pulls.push({ since: undefined, status: 404, records: 0 });
      else this.imports.push({ status: 404, bytes: body.length, records: 0, merged: 0, skipped: 0 });
      return this.error(res, 404, "prefix_sharing_off", "prefix sharing is off (peers.enabled is false)");
    }
    if (req.method === "GET") {
      const sinceText = url.searchParams.get("since");
      const since = sinceText === null ? undefined : Number(sinceText);
      const from = since === undefined ? this.firstSeq : Math.max(since, this.firstSeq);
      const lost = since === undefined ? 0 : Math.max(0, Math.min(this.firstSeq, this.nextSeq) - since);
      const recs = this.journal.slice(Math.max(0, from - this.firstSeq));
      const out = Buffer.concat(recs);
      this.pulls.push({ since, status: 200, records: recs.length });
      res.writeHead(200, {
        "content-type": "application/vnd.wasm-epp.prefix-records",
        "content-length": out.length,
        "x-wasm-epp-prefix-next": String(this.nextSeq),
        "x-wasm-epp-prefix-lost": String(lost),
      }).end(out);
      return;
    }
    if (req.method !== "POST") return this.error(res, 405, "method_not_allowed", "use GET or POST");
    if (body.length > this.maxImportBytes) {
      this.imports.push({ status: 413, bytes: body.length, records: 0, merged: 0, skipped: 0 });
      return this.error(res, 413, "prefix_too_large", `the records are larger than ${this.maxImportBytes} bytes (peers.max_import_bytes)`);
    }
    const v = validate(body);
    if (!v.ok) {
      this.imports.push({ status: 400, bytes: body.length, records: 0, merged: 0, skipped: 0 });
      return this.error(res, 400, "invalid_prefix_records", `invalid prefix records at byte ${v.error.offset}`);
    }
    const now = ms32(this.now());
    let merged = 0;
    let skipped = 0;
    for (const off of v.offsets) {
      const ep = body.readUInt32LE(off);
      let t = body.readUInt32LE(off + 4);
      const n = body[off + 8];
      if (diff32(t, now) > 5000) t = now;
      for (let i = 0; i < n; i++) {
        const h = body.readBigUInt64LE(off + 9 + 8 * i);
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
    this.imports.push({ status: 204, bytes: body.length, records: v.offsets.length, merged, skipped });
    res.writeHead(204, { "x-wasm-epp-prefix-merged": String(merged), "x-wasm-epp-prefix-skipped": String(skipped) }).end();
  }
}

// n chained-looking hashes for tests: distinct per (seed, i).
export function hashes(seed: number, n: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push((BigInt(seed) << 32n) | BigInt(i + 1));
  return out;
}
