// Scrapes every ready pod's /metrics on its own jittered timer.
//
// A target with `nameFilter` asks for only the series the sidecar reads (`?name[]=...`, which
// prometheus_client's exposition app honours): a vLLM page is ~45 KB, mostly histograms, against
// ~2 KB of the gauges read. A server that ignores the parameter sends the whole page, which works
// as before. One that answers the filtered request without the series (a multiprocess registry
// in recent prometheus_client answers an empty page) or refuses it (a proxy that rejects query
// strings) is asked again at once without the parameter; when that works, the target is
// scraped unfiltered from then on (logged once, `scrape_unfiltered`).
//
// Each target runs independently: a slow, hung or garbage-serving pod only delays itself. A
// global limit bounds the scrapes in flight. Each completed scrape (or failure) updates the
// target's record and calls onUpdate; the reconciler turns records into the state document.
// A failed scrape keeps the last good values (their age keeps growing); refused/timed-out/reset
// scrapes counted in a row beyond `unreachableAfter` mark the target unreachable until one
// succeeds.

import type { Agent } from "undici";
import type { ErrorCode } from "../errors.ts";
import type { PdRole } from "../k8s/pd.ts";
import type { Runtime } from "../k8s/pool-spec.ts";
import type { Logger } from "../observability/log.ts";
import { httpGet, newScrapeAgent } from "./http-get.ts";
import { extract, nameQuery, selectorFor, type Extraction, type ServerMetrics } from "./runtime.ts";
import { Semaphore } from "./semaphore.ts";

export interface ScrapeTarget {
  key: string; // identity: pool, pod, address, runtime and role; a change is a new target
  pool: string;
  pod: string;
  host: string;
  port: number;
  runtime: Runtime;
  role?: PdRole; // pods of a prefill/decode pool: which role's queues to read
  nameFilter?: boolean; // ask for the series read with name[] (the pool's setting)
}

export interface TargetRecord {
  metrics?: ServerMetrics;
  lastSuccessMs?: number;
  // performance.now() when the last successful scrape completed: tells one scrape's values from
  // the next and starts their scrape-to-push latency.
  completedAt?: number;
  firstSeenMs: number;
  attempts: number;
  consecutiveUnreachable: number;
  unreachable: boolean;
  lastError?: ErrorCode;
}

export interface ScrapeObserver {
  scraped(t: ScrapeTarget, seconds: number, bytes: number): void;
  failed(t: ScrapeTarget, code: ErrorCode, seconds: number): void;
  forget(t: ScrapeTarget): void;
}

export interface ScraperOptions {
  intervalMs: number;
  jitter: number;
  timeoutMs: number;
  concurrency: number;
  maxBytes: number;
  unreachableAfter: number;
  path?: string;
  log: Logger;
  observer?: ScrapeObserver;
  onUpdate: (key: string) => void;
  now?: () => number;
  random?: () => number;
}

class Loop {
  timer?: NodeJS.Timeout;
  stopped = false;
  running?: Promise<void>;
  loggedError?: ErrorCode;
  // Asking with name[]: the target's setting, until the server shows it cannot answer that way.
  filtered: boolean;

  constructor(
    public target: ScrapeTarget,
    readonly record: TargetRecord,
  ) {
    this.filtered = target.nameFilter === true;
  }
}

type Attempt =
  | { ok: true; body: Buffer; x: Extraction; invalid: number }
  | { ok: false; code: ErrorCode; message: string; unreachable: boolean };

export class Scraper {
  private readonly loops = new Map<string, Loop>();
  private readonly agent: Agent;
  private readonly sem: Semaphore;
  private readonly now: () => number;
  private readonly random: () => number;
  private stopped = false;
  bytesParsed = 0;

  constructor(private readonly opts: ScraperOptions) {
    this.agent = newScrapeAgent();
    this.sem = new Semaphore(opts.concurrency);
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
  }

  // Replaces the set of targets: new ones start at once, removed ones stop and are forgotten.
  setTargets(targets: ScrapeTarget[]): void {
    if (this.stopped) return;
    const wanted = new Map(targets.map((t) => [t.key, t]));
    for (const [key, loop] of this.loops) {
      if (wanted.has(key)) continue;
      loop.stopped = true;
      clearTimeout(loop.timer);
      this.loops.delete(key);
      this.opts.observer?.forget(loop.target);
    }
    for (const [key, t] of wanted) {
      const existing = this.loops.get(key);
      if (existing) {
        // The pool's name[] setting changed: the next scrape follows it; the record stays.
        if ((t.nameFilter === true) !== (existing.target.nameFilter === true)) {
          existing.target = t;
          existing.filtered = t.nameFilter === true;
        }
        continue;
      }
      const loop = new Loop(t, { firstSeenMs: this.now(), attempts: 0, consecutiveUnreachable: 0, unreachable: false });
      this.loops.set(key, loop);
      this.schedule(loop, 0);
    }
  }

  record(key: string): TargetRecord | undefined {
    return this.loops.get(key)?.record;
  }

  // Every current target has finished at least one attempt.
  allAttempted(): boolean {
    for (const loop of this.loops.values()) if (loop.record.attempts === 0) return false;
    return true;
  }

  get size(): number {
    return this.loops.size;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const running: Promise<void>[] = [];
    for (const loop of this.loops.values()) {
      loop.stopped = true;
      clearTimeout(loop.timer);
      if (loop.running) running.push(loop.running);
    }
    await Promise.all(running);
    await this.agent.destroy();
  }

  private schedule(loop: Loop, delayMs: number): void {
    if (loop.stopped) return;
    loop.timer = setTimeout(() => {
      loop.running = this.scrapeOnce(loop).finally(() => {
        loop.running = undefined;
      });
    }, Math.max(0, delayMs));
  }

  // One GET of `path` and, when it answers 200, the extraction of the target's series.
  private async fetch(t: ScrapeTarget, path: string): Promise<Attempt> {
    const result = await httpGet({ host: t.host, port: t.port, path, timeoutMs: this.opts.timeoutMs, maxBytes: this.opts.maxBytes, agent: this.agent });
    if (!result.ok) return { ok: false, code: result.error.code, message: result.error.message, unreachable: result.unreachable };
    this.bytesParsed += result.body.length;
    try {
      const selection = selectorFor(t.runtime, t.role).select(result.body);
      return { ok: true, body: result.body, x: extract(t.runtime, selection.samples, t.role), invalid: selection.invalid };
    } catch (err) {
      // Not expected from the parser; a page must never stop the loop.
      return { ok: true, body: result.body, x: { ok: false, missing: [`anything parseable (${(err as Error).message})`] }, invalid: 0 };
    }
  }

  private async scrapeOnce(loop: Loop): Promise<void> {
    const startedAt = this.now();
    await this.sem.acquire();
    if (loop.stopped) {
      this.sem.release();
      return;
    }
    const t = loop.target;
    const t0 = performance.now();
    const base = this.opts.path ?? "/metrics";
    let a: Attempt;
    try {
      a = await this.fetch(t, loop.filtered ? base + nameQuery(t.runtime, t.role) : base);
      if (loop.filtered && !loop.stopped && !(a.ok && a.x.ok) && !(!a.ok && a.unreachable)) {
        // The server answered the filtered request, but not with the series: ask for the page.
        const whole = await this.fetch(t, base);
        if (whole.ok && whole.x.ok) {
          loop.filtered = false;
          this.opts.log.info("scrape_unfiltered", `${t.pool} ${t.pod}: the page asked for with name[] ${a.ok ? "lacked the series read" : `failed (${a.code})`}; scraping the whole page from now on`, { pool: t.pool, pod: t.pod });
        }
        a = whole;
      }
    } finally {
      this.sem.release();
    }
    if (loop.stopped) return;
    const rec = loop.record;
    rec.attempts++;
    let code: ErrorCode | undefined;
    let message = "";
    if (a.ok) {
      const x = a.x;
      if (x.ok) {
        rec.metrics = x.metrics;
        rec.lastSuccessMs = this.now();
        rec.completedAt = performance.now();
        rec.consecutiveUnreachable = 0;
        rec.lastError = undefined;
        this.opts.observer?.scraped(t, (performance.now() - t0) / 1000, a.body.length);
        if (rec.unreachable) {
          rec.unreachable = false;
          this.opts.log.info("pod_reachable", `${t.pool} ${t.pod}: metrics endpoint answers again; published as ready`, { pool: t.pool, pod: t.pod });
        }
        if (loop.loggedError) {
          this.opts.log.info("scrape_recovered", `${t.pool} ${t.pod}: scraping works again`, { pool: t.pool, pod: t.pod, after: loop.loggedError });
          loop.loggedError = undefined;
        }
      } else {
        code = "metrics_missing";
        message = `the exposition (${a.body.length} bytes${a.invalid > 0 ? `, ${a.invalid} malformed lines` : ""}) has no ${x.missing.join(", ")}`;
        rec.consecutiveUnreachable = 0;
      }
    } else {
      code = a.code;
      message = a.message;
      if (a.unreachable) rec.consecutiveUnreachable++;
      else rec.consecutiveUnreachable = 0;
    }
    if (code !== undefined) {
      rec.lastError = code;
      this.opts.observer?.failed(t, code, (performance.now() - t0) / 1000);
      if (loop.loggedError !== code) {
        loop.loggedError = code;
        this.opts.log.warn("scrape_failed", `${t.pool} ${t.pod}: ${message}; keeping the last values`, { pool: t.pool, pod: t.pod, code });
      }
      if (!rec.unreachable && rec.consecutiveUnreachable >= this.opts.unreachableAfter) {
        rec.unreachable = true;
        this.opts.log.warn("pod_unreachable", `${t.pool} ${t.pod}: ${rec.consecutiveUnreachable} scrapes in a row failed (${code}); published as not ready until a scrape succeeds`, { pool: t.pool, pod: t.pod, code });
      }
    }
    this.opts.onUpdate(t.key);
    const interval = this.opts.intervalMs * (1 - this.opts.jitter * this.random());
    this.schedule(loop, startedAt + interval - this.now());
  }
}
