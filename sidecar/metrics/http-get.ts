// One bounded GET of a metrics page: a deadline over connect + headers + body, a byte limit
// checked against content-length and while reading, and failures sorted into error codes.
// "Unreachable" failures (refused, timed out, reset, no route) are the ones that make a pod
// unready after --unreachable-after in a row; a server that answers, even badly, is reachable.

import http from "node:http";
import { SidecarError, type ErrorCode } from "../errors.ts";

export type GetResult =
  | { ok: true; body: Buffer }
  | { ok: false; error: SidecarError; unreachable: boolean };

export interface GetOptions {
  host: string;
  port: number;
  path: string;
  timeoutMs: number;
  maxBytes: number;
  agent: http.Agent;
}

const UNREACHABLE = new Set(["ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "ECONNABORTED", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"]);

export function newScrapeAgent(maxSockets: number): http.Agent {
  // One kept-alive connection per pod; the agent closes it after 30 s unused.
  return new http.Agent({ keepAlive: true, keepAliveMsecs: 10_000, maxSockets, maxFreeSockets: maxSockets, timeout: 30_000, scheduling: "lifo" });
}

export function httpGet(opts: GetOptions): Promise<GetResult> {
  return attempt(opts, true);
}

function attempt(opts: GetOptions, mayRetry: boolean): Promise<GetResult> {
  return new Promise<GetResult>((resolve) => {
    const where = `${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${opts.port}${opts.path}`;
    let settled = false;
    const req = http.request({
      host: opts.host,
      port: opts.port,
      path: opts.path,
      method: "GET",
      agent: opts.agent,
      headers: { accept: "text/plain;version=0.0.4;q=1,*/*;q=0.1", "accept-encoding": "identity" },
    });
    const timer = setTimeout(() => fail("scrape_timeout", `no complete answer from ${where} within ${opts.timeoutMs}ms`, true), opts.timeoutMs);

    function finish(r: GetResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    }

    function fail(code: ErrorCode, message: string, unreachable: boolean, cause?: unknown): void {
      if (settled) return;
      finish({ ok: false, error: new SidecarError(code, message, {}, { cause }), unreachable });
      req.destroy();
    }

    req.on("error", (err: NodeJS.ErrnoException) => {
      if (settled) return;
      const code = err.code ?? "";
      if (mayRetry && req.reusedSocket && (code === "ECONNRESET" || code === "EPIPE")) {
        // The server closed a kept-alive connection as we reused it: try once on a new one.
        settled = true;
        clearTimeout(timer);
        resolve(attempt(opts, false));
        return;
      }
      if (code === "ECONNREFUSED") fail("scrape_refused", `${where} refused the connection`, true, err);
      else if (code === "ETIMEDOUT") fail("scrape_timeout", `connecting to ${where} timed out`, true, err);
      else if (code.startsWith("HPE_")) fail("scrape_http_status", `${where} sent an invalid HTTP response (${code})`, false, err);
      else fail("scrape_unreachable", `${where}: ${err.message}${code && !err.message.includes(code) ? ` (${code})` : ""}`, UNREACHABLE.has(code) || code === "", err);
    });

    req.on("response", (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        fail("scrape_http_status", `${where} answered ${res.statusCode}`, false);
        return;
      }
      const announced = Number(res.headers["content-length"]);
      if (Number.isFinite(announced) && announced > opts.maxBytes) {
        fail("scrape_too_large", `${where} announced ${announced} bytes, more than --scrape-max-bytes ${opts.maxBytes}`, false);
        return;
      }
      const chunks: Buffer[] = [];
      let total = 0;
      res.on("data", (chunk: Buffer) => {
        if (settled) return;
        total += chunk.length;
        if (total > opts.maxBytes) {
          fail("scrape_too_large", `${where} sent more than --scrape-max-bytes ${opts.maxBytes} bytes`, false);
          return;
        }
        chunks.push(chunk);
      });
      res.on("end", () => {
        if (Number.isFinite(announced) && total < announced) {
          fail("scrape_truncated", `${where} ended after ${total} of ${announced} bytes`, false);
          return;
        }
        finish({ ok: true, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total) });
      });
      res.on("error", (err) => fail("scrape_truncated", `${where} broke off the exposition after ${total} bytes: ${err.message}`, false, err));
      res.on("close", () => {
        if (!res.complete) fail("scrape_truncated", `${where} broke off the exposition after ${total} bytes`, false);
      });
    });
    req.end();
  });
}
