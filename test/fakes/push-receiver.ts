// A push listener that answers like the wasm-epp filter's ext-config listener:
//   POST /wasm-epp/v1/state   204 stored; 401 missing/wrong token; 400 invalid document (JSON error
//                             body); 409 generated_at_ms older than the stored one; 413 too large
//   GET  /wasm-epp/v1/state   200 the stored document; 404 none yet
// It can go down (connections refused) and come back on the same port, and answer slowly.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { validateState } from "./state-validator.ts";

export const STATE_PATH = "/wasm-epp/v1/state";

export interface StoredDoc {
  version: number;
  generated_at_ms: number;
  pools: Array<{ name: string; strategy: string; runtime: string; endpoints: Array<Record<string, any>>; default_targets?: Array<{ name: string; weight?: number }> }>;
  models: Array<{ name: string; pool: string; criticality?: string; targets?: Array<{ name: string; weight?: number }> }>;
  objectives?: Array<{ name: string; pool: string; priority: number; criticality: string }>;
}

export interface Answer {
  status: number;
  at: number;
  version?: number;
  generatedAt?: number;
}

export class PushReceiver {
  port = 0;
  token: string;
  maxBytes: number;
  delayMs = 0;
  // Accepted documents, in order.
  readonly docs: StoredDoc[] = [];
  readonly answers: Answer[] = [];
  stored?: { raw: string; doc: StoredDoc };
  private server?: http.Server;
  private waiters: Array<{ pred: (d: StoredDoc) => boolean; resolve: (d: StoredDoc) => void }> = [];

  constructor(opts: { token?: string; maxBytes?: number; port?: number } = {}) {
    this.token = opts.token ?? "push-secret";
    this.maxBytes = opts.maxBytes ?? 4 * 1024 * 1024;
    this.port = opts.port ?? 0;
  }

  static async start(opts: { token?: string; maxBytes?: number; port?: number } = {}): Promise<PushReceiver> {
    const r = new PushReceiver(opts);
    await r.up();
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}${STATE_PATH}`;
  }

  get latest(): StoredDoc | undefined {
    return this.docs[this.docs.length - 1];
  }

  // Stores a document directly, as if another writer had pushed it.
  preload(doc: StoredDoc): void {
    this.stored = { raw: JSON.stringify(doc), doc };
  }

  // Resolves with the first accepted document (already accepted or future) that satisfies pred.
  waitFor(pred: (d: StoredDoc) => boolean, timeoutMs = 5000, what = "a matching document"): Promise<StoredDoc> {
    const latest = this.latest;
    if (latest && pred(latest)) return Promise.resolve(latest);
    return this.next(pred, timeoutMs, what);
  }

  // Like waitFor, but only documents accepted from now on.
  next(pred: (d: StoredDoc) => boolean = () => true, timeoutMs = 5000, what = "a matching document"): Promise<StoredDoc> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}; last accepted: ${JSON.stringify(this.latest)?.slice(0, 1500)}`));
      }, timeoutMs);
      const done = (d: StoredDoc) => {
        clearTimeout(timer);
        resolve(d);
      };
      this.waiters.push({ pred, resolve: done });
    });
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
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= this.maxBytes) chunks.push(c);
    });
    req.on("end", () => {
      const reply = () => this.answer(req, res, Buffer.concat(chunks).toString("utf8"), size);
      if (this.delayMs > 0) setTimeout(reply, this.delayMs);
      else reply();
    });
  }

  private error(res: http.ServerResponse, status: number, type: string, code: string, message: string): void {
    this.answers.push({ status, at: Date.now() });
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ error: { message, type, param: null, code } }));
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse, body: string, size: number): void {
    if ((req.url ?? "").split("?")[0] !== STATE_PATH) return this.error(res, 404, "not_found_error", "not_found", "no such endpoint");
    if (req.headers.authorization !== `Bearer ${this.token}`) return this.error(res, 401, "authentication_error", "invalid_push_token", "a valid bearer token is required to push state");
    if (req.method === "GET") {
      if (!this.stored) return this.error(res, 404, "not_found_error", "not_found", "no state has been pushed yet");
      this.answers.push({ status: 200, at: Date.now() });
      res.writeHead(200, { "content-type": "application/json" }).end(this.stored.raw);
      return;
    }
    if (req.method !== "POST" && req.method !== "PUT") return this.error(res, 405, "invalid_request_error", "method_not_allowed", "use GET or POST");
    if (size > this.maxBytes) return this.error(res, 413, "invalid_request_error", "state_too_large", `the state document is larger than ${this.maxBytes} bytes`);
    let doc: StoredDoc;
    try {
      doc = JSON.parse(body) as StoredDoc;
    } catch (err) {
      return this.error(res, 400, "invalid_request_error", "invalid_state", `invalid state document: not valid JSON: ${(err as Error).message}`);
    }
    const problem = validateState(doc);
    if (problem) return this.error(res, 400, "invalid_request_error", "invalid_state", `invalid state document: ${problem}`);
    if (this.stored && this.stored.doc.generated_at_ms > doc.generated_at_ms) {
      this.answers.push({ status: 409, at: Date.now(), version: doc.version, generatedAt: doc.generated_at_ms });
      res.writeHead(409, { "content-type": "application/json" }).end(
        JSON.stringify({ error: { message: `generated_at_ms is older than the stored state's (${this.stored.doc.generated_at_ms})`, type: "conflict_error", param: null, code: "stale_state" } }),
      );
      return;
    }
    this.stored = { raw: body, doc };
    this.docs.push(doc);
    this.answers.push({ status: 204, at: Date.now(), version: doc.version, generatedAt: doc.generated_at_ms });
    res.writeHead(204, { "x-wasm-epp-state-version": String(doc.version) }).end();
    const ready = this.waiters.filter((w) => w.pred(doc));
    this.waiters = this.waiters.filter((w) => !w.pred(doc));
    for (const w of ready) w.resolve(doc);
  }
}
