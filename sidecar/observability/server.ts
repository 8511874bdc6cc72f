// /metrics (Prometheus), /healthz (the process is up), /readyz (a push has been accepted, and a
// replica sharing with peers has warmed up; the 503's text says which is missing).

import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { SidecarError } from "../errors.ts";

export interface ObservabilityServer {
  port: number;
  close(): Promise<void>;
}

export function startObservabilityServer(opts: { port: number; address: string; registry: Registry; ready: () => boolean; notReady?: () => string; healthy?: () => boolean }): Promise<ObservabilityServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": opts.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(err.message + "\n"),
      );
      return;
    }
    if (path === "/healthz") {
      const ok = opts.healthy ? opts.healthy() : true;
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "unhealthy\n");
      return;
    }
    if (path === "/readyz") {
      const ok = opts.ready();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ready\n" : `${opts.notReady?.() ?? "no push accepted yet"}\n`);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new SidecarError("listen_failed", `cannot listen on ${opts.address}:${opts.port}: ${err.message}`)));
    server.listen(opts.port, opts.address, () => {
      const port = (server.address() as AddressInfo).port;
      resolve({
        port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
