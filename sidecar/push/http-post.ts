// One request to the push listener, with a deadline; answers are read up to 64 KiB (they are
// small JSON errors or the stored document for GET).

import http from "node:http";

export interface Reply {
  status: number;
  body: string;
}

export type RequestResult = { ok: true; reply: Reply } | { ok: false; timeout: boolean; message: string };

const MAX_REPLY = 64 * 1024;

export function newPushAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1, timeout: 30_000 });
}

export function request(url: URL, method: "POST" | "GET", token: string, body: string | undefined, timeoutMs: number, agent: http.Agent, maxReply = MAX_REPLY): Promise<RequestResult> {
  return new Promise((resolve) => {
    let settled = false;
    const headers: Record<string, string | number> = { authorization: `Bearer ${token}` };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = Buffer.byteLength(body);
    }
    const req = http.request(url, { method, headers, agent });
    const timer = setTimeout(() => done({ ok: false, timeout: true, message: `no answer within ${timeoutMs}ms` }), timeoutMs);
    function done(r: RequestResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!r.ok) req.destroy();
      resolve(r);
    }
    req.on("error", (err: NodeJS.ErrnoException) => done({ ok: false, timeout: false, message: `${err.message}${err.code && !err.message.includes(err.code) ? ` (${err.code})` : ""}` }));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        if (size < maxReply) chunks.push(c);
        size += c.length;
      });
      res.on("end", () => done({ ok: true, reply: { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8").slice(0, maxReply) } }));
      res.on("error", (err) => done({ ok: false, timeout: false, message: err.message }));
    });
    req.end(body);
  });
}

// The `message` of a filter error reply ({"error":{"message":...}}), or the raw text.
export function errorMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown } };
    if (typeof parsed?.error?.message === "string") return parsed.error.message;
  } catch {
    // not JSON
  }
  return body.slice(0, 300);
}
