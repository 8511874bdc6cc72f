// The peer port: what other replicas' sidecars call.
//   POST /peers/v1/stream    a long-lived stream (transfer-encoding: chunked) of frames (frames.ts):
//                            u32 length + a share body, one per interval (an empty one keeps it
//                            alive). The token is checked once, when it opens: 401 as below;
//                            else 200 at once (content-type application/json) and each frame is
//                            taken as a POST /peers/v1/share would be. The stream is closed, the
//                            answer ending with a JSON error, on a frame above maxBytes
//                            (frame_too_large), a malformed one (malformed_share, naming the byte
//                            offset in the frame), a frame cut short by the end of the stream, or
//                            no frame for 3 intervals (at least 1 s; stream_idle)
//   POST /peers/v1/share     sections (application/vnd.wasm-epp.share, sections.ts), at most
//                            maxBytes: the sender's new prefix records and its LOAD sections
//                            (replica = the sender's name); kinds not known here are skipped
//                            204 taken (forwarded to the own filter; records kept for snapshots),
//                            x-wasm-epp-peer-records, x-wasm-epp-peer-loads
//                            401 no or wrong bearer token, 413 too large, 400 malformed (the
//                            error names the byte offset; nothing is taken)
//   POST /peers/v1/prefix    records only (application/vnd.wasm-epp.prefix-records), as sidecars
//                            of the previous version send them during a rolling update
//   GET  /peers/v1/snapshot  200 the live records kept, oldest first; 401 as above
// Errors are JSON: {"error": {"code": "...", "message": "..."}}. Requests with a wrong token or
// too large a body are answered before their body is read, and their connection is closed.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { SidecarError } from "../errors.ts";
import type { Logger } from "../observability/log.ts";
import type { PeerErrorReason, PeerObserver } from "./observer.ts";
import { FRAME_HEADER_BYTES, FrameSplitter } from "./frames.ts";
import { CONTENT_TYPE, validate } from "./records.ts";
import { decodeShare, type Share } from "./sections.ts";
import { PEER_PORT_HEADER, PEER_PREFIX_PATH, PEER_SHARE_PATH, PEER_SNAPSHOT_PATH, PEER_STREAM_PATH } from "./sender.ts";
import type { PeerToken } from "./token.ts";

export interface PeerServerOptions {
  port: number;
  address: string;
  token: PeerToken;
  maxBytes: number;
  // --peer-interval: a stream with no frame for 3 intervals (at least 1 s) is closed.
  intervalMs: number;
  log: Logger;
  observer: PeerObserver;
  // The metrics label for a caller's address: a known peer's id, else "other".
  peerLabel: (remoteAddress: string, announcedPort?: number) => string;
  // A valid body's sections (views into the body, which is not used again).
  onShare: (share: Share, from: string) => void;
  snapshot: () => Uint8Array[];
}

export interface PeerServer {
  port: number;
  close(): Promise<void>;
}

export function startPeerServer(opts: PeerServerOptions): Promise<PeerServer> {
  const complaints = new Map<string, number>(); // reason -> last log time, so floods log once a minute
  function refuse(res: http.ServerResponse, status: number, code: string, message: string, from: string, reason: PeerErrorReason, close: boolean): void {
    complain(status, code, message, from, reason);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (close) headers.connection = "close";
    res.writeHead(status, headers).end(JSON.stringify({ error: { code, message } }));
  }

  // What a valid body brings: counted, then handed on.
  function take(share: Share, bytes: number, from: string): void {
    opts.observer.peerReceived(from, bytes);
    if (share.prefixRecords > 0) opts.observer.peerRecords("received", share.prefixRecords);
    if (share.loads.length > 0) opts.observer.peerRecords("load_received", share.loads.length);
    if (share.prefixRecords > 0 || share.loads.length > 0) opts.onShare(share, from);
  }

  const idleMs = Math.max(1000, 3 * opts.intervalMs);
  const streams = new Set<http.ServerResponse>();

  // An open stream: frames go where POST bodies go, until the sender ends it or it is closed.
  function stream(req: http.IncomingMessage, res: http.ServerResponse, from: string): void {
    streams.add(res);
    res.writeHead(200, { "content-type": "application/json", connection: "close" });
    res.flushHeaders();
    const splitter = new FrameSplitter(opts.maxBytes);
    let closed = false;
    const close = (error?: { status: number; code: string; message: string; reason?: PeerErrorReason }) => {
      if (closed) return;
      closed = true;
      clearTimeout(idle);
      streams.delete(res);
      req.removeListener("data", onData);
      req.resume(); // whatever still comes is read and dropped until the connection closes
      if (error?.reason) complain(error.status, error.code, error.message, from, error.reason);
      res.end(error ? JSON.stringify({ error: { code: error.code, message: error.message } }) : undefined);
    };
    const idle = setTimeout(() => close({ status: 408, code: "stream_idle", message: `no frame for ${idleMs}ms` }), idleMs);
    const onData = (chunk: Buffer) => {
      const r = splitter.push(chunk);
      for (const frame of r.frames) {
        if (closed) return;
        idle.refresh();
        if (frame.length === 0) {
          opts.observer.peerReceived(from, FRAME_HEADER_BYTES);
          continue;
        }
        const d = decodeShare(frame);
        if (!d.ok) {
          close({ status: 400, code: "malformed_share", message: `in a frame: ${d.error.message}`, reason: "inbound_malformed" });
          return;
        }
        take(d.share, FRAME_HEADER_BYTES + frame.length, from);
      }
      if (!r.ok) close({ status: 413, code: "frame_too_large", message: `a frame of ${r.length} bytes is larger than ${opts.maxBytes} bytes (--peer-max-bytes)`, reason: "inbound_too_large" });
    };
    req.on("data", onData);
    req.on("end", () => {
      if (splitter.pending > 0) close({ status: 400, code: "malformed_share", message: `the stream ended inside a frame (${splitter.pending} bytes of it)`, reason: "inbound_malformed" });
      else close();
    });
    req.on("close", () => {
      closed = true;
      clearTimeout(idle);
      streams.delete(res);
    });
  }

  function complain(status: number, code: string, message: string, from: string, reason: PeerErrorReason): void {
    opts.observer.peerError(from, reason);
    const now = Date.now();
    if ((complaints.get(reason) ?? -Infinity) + 60_000 <= now) {
      complaints.set(reason, now);
      opts.log.warn("peer_request_refused", `a request from ${from} was refused (${status} ${code}): ${message}`, { peer: from, status, reason });
    }
  }

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const announced = Number(req.headers[PEER_PORT_HEADER]);
    const from = opts.peerLabel(req.socket.remoteAddress ?? "", Number.isInteger(announced) && announced > 0 && announced < 65536 ? announced : undefined);
    if (path !== PEER_SHARE_PATH && path !== PEER_PREFIX_PATH && path !== PEER_SNAPSHOT_PATH && path !== PEER_STREAM_PATH) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { code: "not_found", message: `no such endpoint: ${path}` } }));
      req.resume();
      return;
    }
    const method = path === PEER_SNAPSHOT_PATH ? "GET" : "POST";
    if (req.method !== method) {
      res.writeHead(405, { allow: method, "content-type": "application/json" }).end(JSON.stringify({ error: { code: "method_not_allowed", message: `use ${method}` } }));
      req.resume();
      return;
    }
    if (!opts.token.check(req.headers.authorization)) {
      const deny = () => refuse(res, 401, "invalid_peer_token", "a valid bearer token (the replicas' shared peer token) is required", from, "inbound_unauthorized", true);
      const length = Number(req.headers["content-length"]);
      if (method === "POST" && path !== PEER_STREAM_PATH && Number.isFinite(length) && length <= opts.maxBytes) {
        // Read (and discard) a body of acceptable size first, so the caller sees the 401 rather
        // than a connection reset in the middle of its upload.
        req.resume();
        req.once("end", deny);
      } else deny();
      return;
    }
    if (method === "GET") {
      const batches = opts.snapshot();
      let total = 0;
      for (const b of batches) total += b.length;
      res.writeHead(200, { "content-type": CONTENT_TYPE, "content-length": total });
      let i = 0;
      const write = () => {
        while (i < batches.length) {
          if (!res.write(batches[i++])) {
            res.once("drain", write);
            return;
          }
        }
        res.end();
      };
      write();
      return;
    }
    if (path === PEER_STREAM_PATH) {
      stream(req, res, from);
      return;
    }
    const length = Number(req.headers["content-length"]);
    if (Number.isFinite(length) && length > opts.maxBytes) {
      refuse(res, 413, "records_too_large", `the body of ${length} bytes is larger than ${opts.maxBytes} bytes (--peer-max-bytes)`, from, "inbound_too_large", true);
      return;
    }
    // A body that does not arrive within 30 s is given up (streams have their own liveness).
    const deadline = setTimeout(() => req.destroy(), 30_000);
    req.once("close", () => clearTimeout(deadline));
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (c: Buffer) => {
      if (refused) return;
      size += c.length;
      if (size > opts.maxBytes) {
        refused = true;
        refuse(res, 413, "records_too_large", `the body is larger than ${opts.maxBytes} bytes (--peer-max-bytes)`, from, "inbound_too_large", true);
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (refused) return;
      const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
      let share: Share;
      if (path === PEER_SHARE_PATH) {
        const d = decodeShare(body);
        if (!d.ok) {
          refuse(res, 400, "malformed_share", d.error.message, from, "inbound_malformed", false);
          return;
        }
        share = d.share;
      } else {
        const v = validate(body);
        if (!v.ok) {
          refuse(res, 400, "malformed_records", v.error.message, from, "inbound_malformed", false);
          return;
        }
        share = { prefix: body.length > 0 ? [body] : [], prefixBytes: body.length, prefixRecords: v.offsets.length, loads: [], unknown: 0 };
      }
      take(share, body.length, from);
      res.writeHead(204, { "x-wasm-epp-peer-records": String(share.prefixRecords), "x-wasm-epp-peer-loads": String(share.loads.length) }).end();
    });
  });
  server.keepAliveTimeout = 5000;
  // Streams last: their liveness is the idle timer above, not a deadline on the whole request.
  // Headers must still come promptly, and connections are bounded (a few per peer is the norm).
  server.requestTimeout = 0;
  server.headersTimeout = 10_000;
  server.maxConnections = 1024;
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new SidecarError("listen_failed", `cannot listen on ${opts.address}:${opts.port} (--peer-port): ${err.message}`)));
    server.listen(opts.port, opts.address, () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            for (const res of [...streams]) res.end(JSON.stringify({ error: { code: "shutting_down", message: "the peer port is closing" } }));
            streams.clear();
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
