// One HTTP request with a binary body and a deadline over connect, headers and body, the answer
// read up to a byte limit. Used for the own filter's prefix endpoint and for peers. A kept-alive
// connection the server closed just as it was reused is retried once on a new one (the requests
// are idempotent: merging records twice changes nothing).

import http from "node:http";

export interface Target {
  host: string;
  port: number;
}

export interface BinaryReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export type FailureKind = "timeout" | "unreachable" | "too_large";

export type BinaryResult = { ok: true; reply: BinaryReply } | { ok: false; kind: FailureKind; message: string };

export interface BinaryRequest {
  target: Target;
  path: string;
  method: "GET" | "POST";
  headers?: Record<string, string>;
  body?: Uint8Array;
  timeoutMs: number;
  maxReplyBytes: number;
  agent: http.Agent;
}

export function newAgent(): http.Agent {
  // Free sockets are closed after 4 s, before a Node server's default keep-alive timeout (5 s).
  return new http.Agent({ keepAlive: true, maxSockets: 2, maxFreeSockets: 2, timeout: 4000 });
}

export function describeTarget(t: Target): string {
  return `${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`;
}

export function binaryRequest(r: BinaryRequest): Promise<BinaryResult> {
  return attempt(r, true);
}

function attempt(r: BinaryRequest, mayRetry: boolean): Promise<BinaryResult> {
  return new Promise((resolve) => {
    let settled = false;
    const headers: Record<string, string | number> = { ...r.headers };
    if (r.body !== undefined) headers["content-length"] = r.body.length;
    const req = http.request({ host: r.target.host, port: r.target.port, path: r.path, method: r.method, headers, agent: r.agent });
    const where = `${describeTarget(r.target)}${r.path}`;
    const timer = setTimeout(() => fail("timeout", `no complete answer from ${where} within ${r.timeoutMs}ms`), r.timeoutMs);

    function finish(result: BinaryResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    }

    function fail(kind: FailureKind, message: string): void {
      if (settled) return;
      finish({ ok: false, kind, message });
      req.destroy();
    }

    req.on("error", (err: NodeJS.ErrnoException) => {
      if (settled) return;
      const code = err.code ?? "";
      if (mayRetry && req.reusedSocket && (code === "ECONNRESET" || code === "EPIPE")) {
        settled = true;
        clearTimeout(timer);
        resolve(attempt(r, false));
        return;
      }
      fail(code === "ETIMEDOUT" ? "timeout" : "unreachable", `${where}: ${err.message}${code && !err.message.includes(code) ? ` (${code})` : ""}`);
    });
    req.on("response", (res) => {
      const announced = Number(res.headers["content-length"]);
      if (Number.isFinite(announced) && announced > r.maxReplyBytes) {
        fail("too_large", `${where} announced ${announced} bytes, more than ${r.maxReplyBytes}`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        if (settled) return;
        size += c.length;
        if (size > r.maxReplyBytes) {
          fail("too_large", `${where} sent more than ${r.maxReplyBytes} bytes`);
          return;
        }
        chunks.push(c);
      });
      res.on("end", () => finish({ ok: true, reply: { status: res.statusCode ?? 0, headers: res.headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size) } }));
      res.on("error", (err) => fail("unreachable", `${where}: the answer broke off: ${err.message}`));
      res.on("close", () => {
        if (!res.complete) fail("unreachable", `${where}: the answer broke off after ${size} bytes`);
      });
    });
    req.end(r.body);
  });
}

// The `code` and `message` of a JSON error answer ({"error":{"code":...,"message":...}}).
export function errorOf(body: Buffer): { code?: string; message: string } {
  const text = body.toString("utf8", 0, Math.min(body.length, 4096));
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const code = typeof parsed?.error?.code === "string" ? parsed.error.code : undefined;
    const message = typeof parsed?.error?.message === "string" ? parsed.error.message : text.slice(0, 300);
    return { code, message };
  } catch {
    return { message: text.slice(0, 300) };
  }
}
