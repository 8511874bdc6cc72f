// The peer port: what other replicas' sidecars call.
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
import { CONTENT_TYPE, validate } from "./records.ts";
import { decodeShare, type Share } from "./sections.ts";
import { PEER_PORT_HEADER, PEER_PREFIX_PATH, PEER_SHARE_PATH, PEER_SNAPSHOT_PATH } from "./sender.ts";
import type { PeerToken } from "./token.ts";

export interface PeerServerOptions {
  port: number;
  address: string;
  token: PeerToken;
  maxBytes: number;
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
    opts.observer.peerError(from, reason);
    const now = Date.now();
    if ((complaints.get(reason) ?? -Infinity) + 60_000 <= now) {
      complaints.set(reason, now);
      opts.log.warn("peer_request_refused", `a request from ${from} was refused (${status} ${code}): ${message}`, { peer: from, status, reason });
    }
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (close) headers.connection = "close";
    res.writeHead(status, headers).end(JSON.stringify({ error: { code, message } }));
  }

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const announced = Number(req.headers[PEER_PORT_HEADER]);
    const from = opts.peerLabel(req.socket.remoteAddress ?? "", Number.isInteger(announced) && announced > 0 && announced < 65536 ? announced : undefined);
    if (path !== PEER_SHARE_PATH && path !== PEER_PREFIX_PATH && path !== PEER_SNAPSHOT_PATH) {
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
      if (method === "POST" && Number.isFinite(length) && length <= opts.maxBytes) {
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
    const length = Number(req.headers["content-length"]);
    if (Number.isFinite(length) && length > opts.maxBytes) {
      refuse(res, 413, "records_too_large", `the body of ${length} bytes is larger than ${opts.maxBytes} bytes (--peer-max-bytes)`, from, "inbound_too_large", true);
      return;
    }
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
      opts.observer.peerReceived(from, body.length);
      if (share.prefixRecords > 0) opts.observer.peerRecords("received", share.prefixRecords);
      if (share.loads.length > 0) opts.observer.peerRecords("load_received", share.loads.length);
      if (share.prefixRecords > 0 || share.loads.length > 0) opts.onShare(share, from);
      res.writeHead(204, { "x-wasm-epp-peer-records": String(share.prefixRecords), "x-wasm-epp-peer-loads": String(share.loads.length) }).end();
    });
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new SidecarError("listen_failed", `cannot listen on ${opts.address}:${opts.port} (--peer-port): ${err.message}`)));
    server.listen(opts.port, opts.address, () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
