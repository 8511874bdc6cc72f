// One bounded GET of a metrics page: a deadline over connect + headers + body, a byte limit
// checked against content-length and while reading, and failures sorted into error codes.
// "Unreachable" failures (refused, timed out, reset, no route) are the ones that make a pod
// unready after --unreachable-after in a row; a server that answers, even badly, is reachable.
//
// Requests go through undici's dispatcher (one kept-alive connection per pod, no pipelining, the
// body handed over chunk by chunk without a stream): for the small pages a name[] scrape returns
// it measured about a quarter less CPU per scrape than node:http's client (docs/sidecar.md#cost).
// A request that fails on its connection before any answer (a kept-alive connection the server
// closed as it was reused) is tried once more, on a new connection.

import { Agent, errors } from "undici";
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
  agent: Agent;
}

const UNREACHABLE = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "ECONNABORTED", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT"]);
const HEADERS = { accept: "text/plain;version=0.0.4;q=1,*/*;q=0.1", "accept-encoding": "identity" };

export function newScrapeAgent(): Agent {
  // One kept-alive connection per pod, closed after 30 s unused. Deadlines are httpGet's own.
  return new Agent({ connections: 1, pipelining: 1, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 });
}

export async function httpGet(opts: GetOptions): Promise<GetResult> {
  const r = await attempt(opts);
  if (!r.ok && r.retry) return attempt(opts);
  return r;
}

type Attempt = GetResult & { retry?: boolean };

function attempt(opts: GetOptions): Promise<Attempt> {
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  const where = `${host}:${opts.port}${opts.path}`;
  return new Promise<Attempt>((resolve) => {
    let settled = false;
    let answered = false; // a final status line arrived
    let total = 0;
    let announced = NaN;
    let control: { abort(reason: Error): void } | undefined;
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => fail("scrape_timeout", `no complete answer from ${where} within ${opts.timeoutMs}ms`, true), opts.timeoutMs);

    function finish(r: Attempt): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    }

    function fail(code: ErrorCode, message: string, unreachable: boolean, cause?: unknown, retry = false): void {
      if (settled) return;
      finish({ ok: false, error: new SidecarError(code, message, {}, { cause }), unreachable, retry });
      control?.abort(new Error(message));
    }

    function failed(err: Error): void {
      if (settled) return;
      const e = err as Error & { code?: string; cause?: { code?: string } };
      const code = e.code ?? "";
      const cause = e.cause?.code ?? "";
      if (code === "ECONNREFUSED") fail("scrape_refused", `${where} refused the connection`, true, err);
      else if (code === "UND_ERR_CONNECT_TIMEOUT" || code === "ETIMEDOUT") fail("scrape_timeout", `connecting to ${where} timed out`, true, err);
      else if (code.startsWith("HPE_") || err instanceof errors.HTTPParserError) fail("scrape_http_status", `${where} sent an invalid HTTP response (${code || err.message})`, false, err);
      else if (code === "UND_ERR_RES_CONTENT_LENGTH_MISMATCH") fail("scrape_truncated", `${where} ended after ${total} bytes, short of its content-length`, false, err);
      else if (answered) fail("scrape_truncated", `${where} broke off the exposition after ${total} bytes: ${err.message}`, false, err);
      else if (code === "UND_ERR_SOCKET" || code === "ECONNRESET" || code === "EPIPE") fail("scrape_unreachable", `${where}: ${err.message}${cause ? ` (${cause})` : ""}`, true, err, true);
      else fail("scrape_unreachable", `${where}: ${err.message}${code && !err.message.includes(code) ? ` (${code})` : ""}`, UNREACHABLE.has(code) || UNREACHABLE.has(cause) || code === "", err);
    }

    opts.agent.dispatch({ origin: `http://${host}:${opts.port}`, path: opts.path, method: "GET", headers: HEADERS }, {
      onRequestStart(controller) {
        control = controller;
        if (settled) controller.abort(new Error("scrape ended"));
      },
      onResponseStart(controller, statusCode, headers) {
        if (settled || statusCode < 200) return; // 1xx: the final answer follows
        answered = true;
        if (statusCode !== 200) {
          fail("scrape_http_status", `${where} answered ${statusCode}`, false);
          return;
        }
        const length = headers["content-length"];
        announced = typeof length === "string" ? Number(length) : NaN;
        if (Number.isFinite(announced) && announced > opts.maxBytes) {
          fail("scrape_too_large", `${where} announced ${announced} bytes, more than --scrape-max-bytes ${opts.maxBytes}`, false);
        }
      },
      onResponseData(_controller, chunk) {
        if (settled) return;
        total += chunk.length;
        if (total > opts.maxBytes) {
          fail("scrape_too_large", `${where} sent more than --scrape-max-bytes ${opts.maxBytes} bytes`, false);
          return;
        }
        chunks.push(chunk);
      },
      onResponseEnd() {
        if (settled) return;
        if (Number.isFinite(announced) && total < announced) {
          fail("scrape_truncated", `${where} ended after ${total} of ${announced} bytes`, false);
          return;
        }
        finish({ ok: true, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total) });
      },
      onResponseError(_controller, err) {
        failed(err);
      },
    });
  });
}
