// Envoy's admin stats endpoints for the local stack's gateway when it runs on the project's
// proxy-wasm host (gateway.ts): the same URLs a real Envoy's admin listener serves, on the same
// port the real-Envoy path uses (127.0.0.1:19000, envoy.ts).
//
//   GET /stats/prometheus   Prometheus text exposition of the filter's metrics, tags extracted
//                           with deploy/envoy/envoy.yaml's stats_config.stats_tags
//   GET /stats              Envoy's plain-text stats (`?format=prometheus` = /stats/prometheus)
//
// Both take Envoy's `usedonly`, `filter=<regex>` and `histogram_buckets=` parameters. Rendering:
// test/host/prometheus.ts. Histograms show what the last stats flush merged: a timer flushes the
// host's stats store every stats_flush_interval of the same file (Envoy's default 5 s when it
// has none), or every admin request when it sets stats_flush_on_admin.
//
// Content types: /stats/prometheus answers `text/plain; version=0.0.4; charset=utf-8`, the
// Prometheus text format's own type; Envoy's admin sends its default `text/plain; charset=UTF-8`
// there (scrapers take either). /stats answers `text/plain; charset=UTF-8` like Envoy.

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { ProxyWasmHost } from '../../test/host/index.ts';
import { parseStatsParams, renderPrometheus, renderStatsText } from '../../test/host/prometheus.ts';
import { TagProducer, tagConfigFromBootstrap } from '../../test/host/tags.ts';

export const DEFAULT_ADMIN_PORT = 19000;
export const ENVOY_YAML = fileURLToPath(new URL('../../deploy/envoy/envoy.yaml', import.meta.url));
/** Envoy's stats_flush_interval default. */
export const DEFAULT_FLUSH_INTERVAL_MS = 5000;

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const TEXT_CONTENT_TYPE = 'text/plain; charset=UTF-8';

export interface AdminOptions {
  host: ProxyWasmHost;
  /** Default 19000; 0 for an ephemeral port. */
  port?: number;
  /** Default 127.0.0.1 (Envoy's admin is loopback-only in deploy/envoy/envoy.yaml). */
  bindHost?: string;
  /** The Envoy bootstrap whose stats_config is used (default deploy/envoy/envoy.yaml). */
  configPath?: string;
}

export interface AdminServer {
  url: string;
  port: number;
  /** Flushes the stats now (what the timer does). */
  flush(): void;
  close(): Promise<void>;
}

export interface AdminStatsConfig {
  tags: TagProducer;
  /** null: flush on every admin request instead of on a timer (stats_flush_on_admin). */
  flushIntervalMs: number | null;
}

// A google.protobuf.Duration in YAML: "5s", "0.5s", or { seconds, nanos }.
export function durationMs(v: unknown, what: string): number {
  if (typeof v === 'string') {
    const m = /^(\d+)(?:\.(\d{1,9}))?s$/.exec(v.trim());
    if (!m) throw new Error(`${what}: not a duration: ${JSON.stringify(v)}`);
    return Number(m[1]) * 1000 + Number((m[2] ?? '').padEnd(9, '0')) / 1e6;
  }
  if (v && typeof v === 'object') {
    const d = v as { seconds?: number | string; nanos?: number };
    return Number(d.seconds ?? 0) * 1000 + Number(d.nanos ?? 0) / 1e6;
  }
  throw new Error(`${what}: not a duration: ${JSON.stringify(v)}`);
}

/** The tag extraction and flush timing of an Envoy bootstrap (parsed YAML). */
export function adminStatsConfig(bootstrap: unknown): AdminStatsConfig {
  const { specifiers, useDefaultTags } = tagConfigFromBootstrap(bootstrap);
  const b = (bootstrap ?? {}) as { stats_flush_interval?: unknown; stats_flush_on_admin?: unknown };
  let flushIntervalMs: number | null = DEFAULT_FLUSH_INTERVAL_MS;
  if (b.stats_flush_on_admin === true) flushIntervalMs = null;
  else if (b.stats_flush_interval !== undefined) {
    flushIntervalMs = durationMs(b.stats_flush_interval, 'stats_flush_interval');
    if (!(flushIntervalMs > 0)) throw new Error('stats_flush_interval must be positive');
  }
  return { tags: new TagProducer(specifiers, { useDefaultTags }), flushIntervalMs };
}

export function readAdminStatsConfig(path: string = ENVOY_YAML): AdminStatsConfig {
  return adminStatsConfig(parse(readFileSync(path, 'utf8')));
}

export async function startAdmin(opts: AdminOptions): Promise<AdminServer> {
  const { host } = opts;
  const config = readAdminStatsConfig(opts.configPath);
  // Merged samples are dropped: the stack may run for days.
  const flush = () => host.stats.flush(true);

  const send = (res: ServerResponse, status: number, type: string, body: string, head: boolean) => {
    res.writeHead(status, {
      'content-type': type,
      'cache-control': 'no-cache, max-age=0',
      'x-content-type-options': 'nosniff',
      'content-length': Buffer.byteLength(body),
    });
    res.end(head ? undefined : body);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) return send(res, 405, TEXT_CONTENT_TYPE, 'method not allowed\n', head);
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    if (path !== '/stats' && path !== '/stats/prometheus') return send(res, 404, TEXT_CONTENT_TYPE, 'invalid path. this admin serves /stats and /stats/prometheus\n', head);
    const parsed = parseStatsParams(url.searchParams);
    if (!parsed.ok) return send(res, 400, TEXT_CONTENT_TYPE, parsed.error, head);
    if (config.flushIntervalMs === null) flush();
    const prometheus = path === '/stats/prometheus' || parsed.params.format === 'prometheus';
    try {
      if (prometheus) send(res, 200, PROMETHEUS_CONTENT_TYPE, renderPrometheus(host.stats, { tags: config.tags, params: parsed.params }), head);
      else send(res, 200, TEXT_CONTENT_TYPE, renderStatsText(host.stats, { tags: config.tags, params: parsed.params }), head);
    } catch (e) {
      send(res, 400, TEXT_CONTENT_TYPE, `${(e as Error).message}\n`, head);
    }
  };

  const server = http.createServer(handle);
  const bind = opts.bindHost ?? '127.0.0.1';
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? DEFAULT_ADMIN_PORT, bind, () => resolve((server.address() as AddressInfo).port));
  });
  const timer = config.flushIntervalMs === null ? null : setInterval(flush, config.flushIntervalMs);
  timer?.unref();
  let closed: Promise<void> | null = null;
  return {
    url: `http://${bind.includes(':') ? `[${bind}]` : bind}:${port}`,
    port,
    flush,
    close() {
      closed ??= new Promise<void>((resolve) => {
        if (timer) clearInterval(timer);
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
