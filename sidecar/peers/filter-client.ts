// The own filter's prefix endpoint on the loopback push listener (same origin and bearer token as
// the state push):
//   GET  /wasm-epp/v1/prefix?since=S   200 records; x-wasm-epp-prefix-next, x-wasm-epp-prefix-lost
//   POST /wasm-epp/v1/prefix           204 x-wasm-epp-prefix-merged, x-wasm-epp-prefix-skipped
//   404 prefix_sharing_off (peers.enabled false), 401 wrong token, 400 malformed, 413 too large.

import type http from "node:http";
import type { TokenSource } from "../push/token.ts";
import { binaryRequest, errorOf, newAgent, type BinaryResult, type Target } from "./http.ts";
import { CONTENT_TYPE, validate } from "./records.ts";

export const PREFIX_PATH = "/wasm-epp/v1/prefix";

// Why a request to the filter or a peer failed; the `reason` label of
// wasm_epp_sidecar_peer_errors_total.
export type FailReason = "timeout" | "unreachable" | "unauthorized" | "too_large" | "rejected" | "http_status" | "bad_reply" | "sharing_off";

export type Failure = { ok: false; reason: FailReason; message: string; limit?: number };
export type PullResult = { ok: true; records: Buffer; count: number; next: number; lost: number } | Failure;
export type ImportResult = { ok: true; merged: number; skipped: number } | Failure;

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
    this.where = `${opts.origin.origin}${PREFIX_PATH}`;
  }

  async pull(since: number | undefined): Promise<PullResult> {
    const path = since === undefined ? PREFIX_PATH : `${PREFIX_PATH}?since=${since}`;
    const r = await this.send("GET", path, undefined);
    if (!r.ok) return failure(r);
    const { status, headers, body } = r.reply;
    if (status !== 200) return this.refused(status, body);
    const next = Number(headers["x-wasm-epp-prefix-next"]);
    const lost = Number(headers["x-wasm-epp-prefix-lost"] ?? 0);
    if (!Number.isSafeInteger(next) || next < 0) return { ok: false, reason: "bad_reply", message: `${this.where}: 200 without a valid x-wasm-epp-prefix-next header` };
    const v = validate(body);
    if (!v.ok) return { ok: false, reason: "bad_reply", message: `${this.where}: ${v.error.message}` };
    return { ok: true, records: body, count: v.offsets.length, next, lost: Number.isSafeInteger(lost) && lost > 0 ? lost : 0 };
  }

  async import(batch: Uint8Array, timeoutMs = this.opts.timeoutMs): Promise<ImportResult> {
    const r = await this.send("POST", PREFIX_PATH, batch, timeoutMs);
    if (!r.ok) return failure(r);
    const { status, headers, body } = r.reply;
    if (status !== 204 && status !== 200) return this.refused(status, body);
    return { ok: true, merged: Number(headers["x-wasm-epp-prefix-merged"] ?? 0) || 0, skipped: Number(headers["x-wasm-epp-prefix-skipped"] ?? 0) || 0 };
  }

  close(): void {
    this.agent.destroy();
  }

  private send(method: "GET" | "POST", path: string, body: Uint8Array | undefined, timeoutMs = this.opts.timeoutMs): Promise<BinaryResult> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.token.token}` };
    if (body !== undefined) headers["content-type"] = CONTENT_TYPE;
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
              : `${this.where} answered 404 (${e.message}): the filter does not serve prefix records; it needs a module with prefix sharing and "peers": {"enabled": true}`,
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
