// The own filter's share endpoint on the loopback push listener (same origin and bearer token as
// the state push), prefix records and loads in one request each way (sections.ts):
//   GET  /wasm-epp/v1/share?since=S&pool=NS/NAME...   200 sections: one PREFIX (the journal from
//        S on), one LOAD per pool asked (replica name empty: this replica's load);
//        x-wasm-epp-prefix-next, x-wasm-epp-prefix-lost
//   POST /wasm-epp/v1/share                            204 x-wasm-epp-prefix-merged,
//        x-wasm-epp-prefix-skipped, x-wasm-epp-load-records
//   404 prefix_sharing_off (peers.enabled false), 401 wrong token, 400 malformed or a bad cursor
//   or pool, 413 too large (the message names peers.max_import_bytes).

import type http from "node:http";
import type { TokenSource } from "../push/token.ts";
import { binaryRequest, errorOf, newAgent, type BinaryResult, type Target } from "./http.ts";
import { decodeShare, encodePrefix, SHARE_CONTENT_TYPE } from "./sections.ts";

export const SHARE_PATH = "/wasm-epp/v1/share";

// Why a request to the filter or a peer failed; the `reason` label of
// wasm_epp_sidecar_peer_errors_total.
export type FailReason = "timeout" | "unreachable" | "unauthorized" | "too_large" | "rejected" | "http_status" | "bad_reply" | "sharing_off";

export type Failure = { ok: false; reason: FailReason; message: string; limit?: number };
// records: the journal's new records (one batch, possibly empty); loads: this replica's load
// record of each pool asked, as the filter keeps it (possibly empty).
export type PullResult = { ok: true; records: Uint8Array; count: number; next: number; lost: number; loads: Array<{ pool: string; record: Uint8Array }> } | Failure;
export type ImportResult = { ok: true; merged: number; skipped: number; loads: number } | Failure;

export interface FilterClientOptions {
  origin: URL; // the push URL's origin
  token: TokenSource;
  timeoutMs: number;
  maxReplyBytes?: number;
}

export class FilterClient {
  private readonly target: Target;
  private readonly agent: http.Agent = newAgent();
  readonly where: string;

  constructor(private readonly opts: FilterClientOptions) {
    const host = opts.origin.hostname.replace(/^\[|\]$/g, "");
    this.target = { host, port: Number(opts.origin.port || 80) };
    this.where = `${opts.origin.origin}${SHARE_PATH}`;
  }

  // The records journaled from `since` on (from the oldest held without it) and this replica's
  // load of each pool in `pools` (none asked when empty).
  async pull(since: number | undefined, pools: readonly string[] = []): Promise<PullResult> {
    const query = [...(since === undefined ? [] : [`since=${since}`]), ...pools.map((p) => `pool=${p}`)];
    const path = query.length === 0 ? SHARE_PATH : `${SHARE_PATH}?${query.join("&")}`;
    const r = await this.send("GET", path, undefined);
    if (!r.ok) return failure(r);
    const { status, headers, body } = r.reply;
    if (status !== 200) return this.refused(status, body);
    const next = Number(headers["x-wasm-epp-prefix-next"]);
    const lost = Number(headers["x-wasm-epp-prefix-lost"] ?? 0);
    if (!Number.isSafeInteger(next) || next < 0) return { ok: false, reason: "bad_reply", message: `${this.where}: 200 without a valid x-wasm-epp-prefix-next header` };
    const d = decodeShare(body, { emptyReplica: true });
    if (!d.ok) return { ok: false, reason: "bad_reply", message: `${this.where}: ${d.error.message}` };
    const { prefix, prefixRecords, loads } = d.share;
    const records = prefix.length === 0 ? new Uint8Array(0) : prefix.length === 1 ? prefix[0] : Buffer.concat(prefix);
    // Only the sections about this replica (empty name); the filter sends no other.
    const own = loads.filter((l) => l.replica === "").map((l) => ({ pool: l.pool, record: l.record }));
    return { ok: true, records, count: prefixRecords, next, lost: Number.isSafeInteger(lost) && lost > 0 ? lost : 0, loads: own };
  }

  // Posts sections (a share body) into the filter.
  async import(body: Uint8Array, timeoutMs = this.opts.timeoutMs): Promise<ImportResult> {
    const r = await this.send("POST", SHARE_PATH, body, timeoutMs);
    if (!r.ok) return failure(r);
    const { status, headers } = r.reply;
    if (status !== 204 && status !== 200) return this.refused(status, r.reply.body);
    const n = (h: string) => Number(headers[h] ?? 0) || 0;
    return { ok: true, merged: n("x-wasm-epp-prefix-merged"), skipped: n("x-wasm-epp-prefix-skipped"), loads: n("x-wasm-epp-load-records") };
  }

  // Posts a batch of prefix records (one PREFIX section).
  importRecords(batch: Uint8Array, timeoutMs = this.opts.timeoutMs): Promise<ImportResult> {
    return this.import(encodePrefix(batch), timeoutMs);
  }

  close(): void {
    this.agent.destroy();
  }

  private send(method: "GET" | "POST", path: string, body: Uint8Array | undefined, timeoutMs = this.opts.timeoutMs): Promise<BinaryResult> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.token.token}` };
    if (body !== undefined) headers["content-type"] = SHARE_CONTENT_TYPE;
    return binaryRequest({ target: this.target, path, method, headers, body, timeoutMs, maxReplyBytes: this.opts.maxReplyBytes ?? 64 * 1024 * 1024, agent: this.agent });
  }

  private refused(status: number, body: Buffer): Failure {
    const e = errorOf(body);
    switch (status) {
      case 404:
        return {
          ok: false,
          reason: "sharing_off",
          message:
            e.code === "prefix_sharing_off"
              ? `${this.where}: prefix sharing is off in the filter (${e.message}); set "peers": {"enabled": true} in the routing filter's configuration`
              : `${this.where} answered 404 (${e.message}): the filter does not serve the share endpoint; it needs a module of this sidecar's version with "peers": {"enabled": true}`,
        };
      case 401:
        return { ok: false, reason: "unauthorized", message: `${this.where}: ${e.message}${this.opts.token.reload() ? "; the token file changed, retrying with the new token" : ""}` };
      case 413: {
        const m = /(\d{3,12})/.exec(e.message);
        return { ok: false, reason: "too_large", message: `${this.where}: ${e.message}`, limit: m ? Number(m[1]) : undefined };
      }
      case 400:
        return { ok: false, reason: "rejected", message: `${this.where}: ${e.message}` };
      default:
        return { ok: false, reason: "http_status", message: `${this.where} answered ${status}: ${e.message}` };
    }
  }
}

function failure(r: { kind: "timeout" | "unreachable" | "too_large"; message: string }): Failure {
  return { ok: false, reason: r.kind === "too_large" ? "bad_reply" : r.kind, message: r.message };
}
