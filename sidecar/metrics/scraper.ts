// Scrapes every ready pod's /metrics on its own jittered timer.
//
// Each target runs independently: a slow, hung or garbage-serving pod only delays itself. A
// global limit bounds the scrapes in flight. Each completed scrape (or failure) updates the
// target's record and calls onUpdate; the reconciler turns records into the state document.
// A failed scrape keeps the last good values (their age keeps growing); refused/timed-out/reset
// scrapes counted in a row beyond `unreachableAfter` mark the target unreachable until one
// succeeds.

import type http from "node:http";
import type { ErrorCode } from "../errors.ts";
import type { PdRole } from "../k8s/pd.ts";
import type { Runtime } from "../k8s/pool-spec.ts";
import type { Logger } from "../observability/log.ts";
import { httpGet, newScrapeAgent } from "./http-get.ts";
import { extract, selectorFor, type Extraction, type ServerMetrics } from "./runtime.ts";
import { Semaphore } from "./semaphore.ts";

export interface ScrapeTarget {
  key: string; // identity: pool, pod, address, runtime and role; a change is a new target
  pool: string;
  pod: string;
  host: string;
  port: number;
  runtime: Runtime;
  role?: PdRole; // pods of a prefill/decode pool: which role's queues to read
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

  constructor(
    readonly target: ScrapeTarget,
    readonly record: TargetRecord,
  ) {}
}

export class Scraper {
  private readonly loops = new Map<string, Loop>();
  private readonly agent: http.Agent;
  private readonly sem: Semaphore;
  private readonly now: () => number;
  private readonly random: () => number;
  private stopped = false;
  bytesParsed = 0;

  constructor(private readonly opts: ScraperOptions) {
    this.agent = newScrapeAgent(1);
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
      if (this.loops.has(key)) continue;
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
    this.agent.destroy();
  }

  private schedule(loop: Loop, delayMs: number): void {
    if (loop.stopped) return;
    loop.timer = setTimeout(() => {
      loop.running = this.scrapeOnce(loop).finally(() => {
        loop.running = undefined;
      });
    }, Math.max(0, delayMs));
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
    let result;
    try {
      result = await httpGet({ host: t.host, port: t.port, path: this.opts.path ?? "/metrics", timeoutMs: this.opts.timeoutMs, maxBytes: this.opts.maxBytes, agent: this.agent });
    } finally {
      this.sem.release();
    }
    if (loop.stopped) return;
    const rec = loop.record;
    rec.attempts++;
    let code: ErrorCode | undefined;
    let message = "";
    if (result.ok) {
      this.bytesParsed += result.body.length;
      let x: Extraction;
      let invalid = 0;
      try {
        const selection = selectorFor(t.runtime, t.role).select(result.body);
        invalid = selection.invalid;
        x = extract(t.runtime, selection.samples, t.role);
      } catch (err) {
        // Not expected from the parser; a page must never stop the loop.
        x = { ok: false, missing: [`anything parseable (${(err as Error).message})`] };
      }
      if (x.ok) {
        rec.metrics = x.metrics;
        rec.lastSuccessMs = this.now();
        rec.completedAt = performance.now();
        rec.consecutiveUnreachable = 0;
        rec.lastError = undefined;
        this.opts.observer?.scraped(t, (performance.now() - t0) / 1000, result.body.length);
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
        message = `the exposition (${result.body.length} bytes${invalid > 0 ? `, ${invalid} malformed lines` : ""}) has no ${x.missing.join(", ")}`;
        rec.consecutiveUnreachable = 0;
      }
    } else {
      code = result.error.code;
      message = result.error.message;
      if (result.unreachable) rec.consecutiveUnreachable++;
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
