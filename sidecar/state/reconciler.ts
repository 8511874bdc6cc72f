// Level-triggered reconciliation: watch handlers and scrape completions only call markDirty();
// one run() rebuilds everything from the caches (resources from the source, metrics from the
// scraper), updates the scrape targets and Pod watches, and hands the document to the pusher
// when it differs from the last one.
//
// Runs are spaced at least `spacingMs` (--push-coalesce) apart, with a leading and a trailing
// edge: fresh metrics are worth most the moment they arrive, so a change after a quiet window is
// reconciled on the next turn of the event loop, and changes within the window are folded into
// one run at its end. The end is fixed by the previous run, so a steady stream of scrapes can
// neither push it back nor make runs more frequent than one per window.
//
// The first document waits until every resource has been listed once and every ready Pod has
// been scraped once (or `firstPushWaitMs` passed), so a restarting sidecar does not replace the
// filter's state with an empty or metric-less one.

import type { ErrorCode } from "../errors.ts";
import type { Logger } from "../observability/log.ts";
import type { SidecarMetrics } from "../observability/metrics.ts";
import { podRole } from "../k8s/pd.ts";
import { parsePool, parsePoolV1, type PoolSpec } from "../k8s/pool-spec.ts";
import { podHost, podReady } from "../k8s/pods.ts";
import type { ResourceSource } from "../k8s/types.ts";
import { nameOf } from "../k8s/types.ts";
import type { ScrapeTarget, TargetRecord } from "../metrics/scraper.ts";
import type { Payload } from "../push/pusher.ts";
import { buildDocument, type Built, type EndpointInput, type PoolInput } from "./document.ts";

export interface ScrapeSet {
  setTargets(targets: ScrapeTarget[]): void;
  record(key: string): TargetRecord | undefined;
  allAttempted(): boolean;
}

// The clock and timer the runs are scheduled with; tests pass a manual one.
export interface Timers {
  now(): number; // monotonic milliseconds
  // Calls fn after `ms`, or when ms <= 0 on the next turn of the event loop (setImmediate: after
  // the other I/O callbacks of this turn, so scrapes completing together make one document).
  // Returns a function that cancels the call.
  after(ms: number, fn: () => void): () => void;
}

export const realTimers: Timers = {
  now: () => performance.now(),
  after(ms, fn) {
    if (ms <= 0) {
      const h = setImmediate(fn);
      return () => clearImmediate(h);
    }
    const h = setTimeout(fn, ms);
    return () => clearTimeout(h);
  },
};

export interface ReconcilerOptions {
  source: ResourceSource;
  scraper: ScrapeSet;
  offer: (payload: Payload) => void;
  pools: string[]; // --pool; empty: all
  scrapeNameFilter?: boolean; // --scrape-name-filter, for pools without the annotation
  defaultNamespace: string;
  metricsStaleMs: number;
  spacingMs: number; // --push-coalesce: least time between two runs
  firstPushWaitMs: number;
  tickMs: number;
  log: Logger;
  metrics?: SidecarMetrics;
  now?: () => number; // wall clock, for the document
  timers?: Timers;
}

export class Reconciler {
  private cancelRun?: () => void; // set while a run is scheduled
  private cancelGate?: () => void; // the first push's deadline
  private lastRunAt = -Infinity; // timers.now() at the start of the last run
  private tick?: NodeJS.Timeout;
  private stopped = false;
  private lastKey = "";
  private versionNo = 0;
  private started = false;
  private gateSince?: number;
  private readonly firstSeen = new Map<string, number>();
  private reported = new Map<string, ErrorCode>();
  private readonly now: () => number;
  private readonly timers: Timers;
  last?: Built;

  constructor(private readonly opts: ReconcilerOptions) {
    this.now = opts.now ?? Date.now;
    this.timers = opts.timers ?? realTimers;
  }

  get version(): number {
    return this.versionNo;
  }

  // Continues the version numbering after `version` (the one stored in Envoy by an earlier run);
  // only before the first document.
  continueFrom(version: number): void {
    if (this.versionNo === 0 && Number.isSafeInteger(version) && version > 0) this.versionNo = version;
  }

  start(): void {
    this.tick = setInterval(() => this.markDirty(), this.opts.tickMs);
    this.tick.unref();
    this.markDirty();
  }

  stop(): void {
    this.stopped = true;
    this.cancelRun?.();
    this.cancelGate?.();
    clearInterval(this.tick);
  }

  markDirty(): void {
    if (this.stopped || this.cancelRun) return; // the scheduled run will see this change too
    // At once after a quiet window (leading edge), else when the window since the last run ends
    // (trailing edge). Clamped to the window so that nothing waits longer, whatever the clock did.
    const wait = Math.min(this.opts.spacingMs, this.lastRunAt + this.opts.spacingMs - this.timers.now());
    this.cancelRun = this.timers.after(wait, () => {
      this.cancelRun = undefined;
      this.run();
    });
  }

  // One reconciliation. Public for tests.
  run(): void {
    if (this.stopped) return;
    this.lastRunAt = this.timers.now();
    const { source, scraper, log } = this.opts;
    const now = this.now();
    const snap = source.snapshot();
    const issues: Array<{ code: ErrorCode; message: string }> = [];

    // v1 pools first: a v1alpha2 pool with the same namespace/name is left out (pool_conflict).
    const specs: PoolSpec[] = [];
    const parsedPools = [
      ...snap.poolsV1.filter((p) => nameOf(p).length > 0).map((p) => parsePoolV1(p, this.opts.defaultNamespace, snap.policies)),
      ...snap.pools.filter((p) => nameOf(p).length > 0).map((p) => parsePool(p, this.opts.defaultNamespace, snap.policies)),
    ];
    for (const parsed of parsedPools) {
      if (this.opts.pools.length > 0 && !this.opts.pools.includes(parsed.spec.key)) continue;
      const first = specs.find((s) => s.key === parsed.spec.key);
      if (first) {
        if (first.api !== parsed.spec.api) {
          issues.push({ code: "pool_conflict", message: `InferencePool ${parsed.spec.key} exists in both inference.networking.k8s.io/v1 and inference.networking.x-k8s.io/v1alpha2; the v1 pool is served, the v1alpha2 one ignored` });
        }
        continue;
      }
      specs.push(parsed.spec);
      issues.push(...parsed.issues);
    }
    const usable = specs.filter((s) => s.port > 0 && Object.keys(s.selector).length > 0 && !s.pdBlocked);
    source.setPodSelectors?.(usable.map((s) => ({ namespace: s.namespace, selector: s.selector })));

    // Pods of each pool; Kubernetes-ready ones with an IP (and, in a prefill/decode pool, a role)
    // are scrape targets.
    const targets: ScrapeTarget[] = [];
    type Row = { pod: string; ip: unknown; port: number; ready: boolean; firstSeenMs: number; target?: string; labels?: Record<string, string> | null };
    const pending: Array<{ spec: PoolSpec; rows: Row[] }> = [];
    const seen = new Set<string>();
    for (const spec of specs) {
      const rows: Row[] = [];
      const pods = usable.includes(spec) ? snap.podsFor(spec.namespace, spec.selector) : [];
      for (const pod of pods) {
        const podName = nameOf(pod);
        if (podName.length === 0) continue;
        const ip = pod.status?.podIP ?? undefined;
        const host = podHost(pod);
        const ready = podReady(pod) && host !== undefined;
        const labels = pod.metadata?.labels;
        const role = spec.pd ? podRole(labels, spec.pd.roleLabel) : undefined;
        // Several target ports: one endpoint (and one model server to scrape) per port.
        spec.ports.forEach((port, rank) => {
          const name = spec.ports.length > 1 ? `${podName}-rank-${rank}` : podName;
          const idKey = `${spec.key}|${name}|${String(ip)}`;
          seen.add(idKey);
          let firstSeenMs = this.firstSeen.get(idKey);
          if (firstSeenMs === undefined) {
            firstSeenMs = now;
            this.firstSeen.set(idKey, now);
          }
          let target: string | undefined;
          if (ready && (spec.pd === undefined || role !== undefined)) {
            target = `${spec.key}|${name}|${host}|${port}|${spec.runtime}|${role ?? ""}`;
            const nameFilter = spec.nameFilter ?? this.opts.scrapeNameFilter ?? false;
            const t: ScrapeTarget = { key: target, pool: spec.key, pod: name, host: host!, port, runtime: spec.runtime, nameFilter };
            if (role !== undefined) t.role = role;
            targets.push(t);
          }
          rows.push({ pod: name, ip, port, ready, firstSeenMs, target, labels });
        });
      }
      pending.push({ spec, rows });
    }
    for (const k of this.firstSeen.keys()) if (!seen.has(k)) this.firstSeen.delete(k);
    scraper.setTargets(targets);

    const pools: PoolInput[] = pending.map(({ spec, rows }) => ({
      spec,
      endpoints: rows.map((r): EndpointInput => ({ pod: r.pod, ip: r.ip, port: r.port, k8sReady: r.ready, firstSeenMs: r.firstSeenMs, record: r.target ? scraper.record(r.target) : undefined, labels: r.labels })),
    }));
    const built = buildDocument({ pools, models: snap.models, objectives: snap.objectives, rewrites: snap.rewrites, defaultNamespace: this.opts.defaultNamespace, metricsStaleMs: this.opts.metricsStaleMs, nowMs: now });
    issues.push(...built.issues);
    this.report(issues);
    this.opts.metrics?.poolStats(built.stats);

    if (!this.started) {
      if (!source.synced()) return; // the next change (a list completing) runs again
      this.gateSince ??= now;
      if (!scraper.allAttempted() && now - this.gateSince < this.opts.firstPushWaitMs) {
        // Every scrape that completes marks the state dirty and runs again; only the deadline,
        // for pods that never answer, needs a wake-up of its own.
        this.cancelGate ??= this.timers.after(this.gateSince + this.opts.firstPushWaitMs - now, () => {
          this.cancelGate = undefined;
          this.markDirty();
        });
        return;
      }
      this.cancelGate?.();
      this.cancelGate = undefined;
      this.started = true;
      log.info("state_ready", `first state: ${built.pools.length} pools, ${built.pools.reduce((n, p) => n + p.endpoints.length, 0)} endpoints, ${built.models.length} models`, {
        pools: built.pools.map((p) => p.name),
      });
    }
    this.last = built;
    if (built.key === this.lastKey) return;
    this.lastKey = built.key;
    this.versionNo++;
    this.opts.metrics?.version(this.versionNo);
    this.opts.offer({ version: this.versionNo, built });
  }

  // Logs each distinct problem once while it lasts, and counts it.
  private report(issues: Array<{ code: ErrorCode; message: string }>): void {
    const next = new Map<string, ErrorCode>();
    for (const i of issues) {
      next.set(i.message, i.code);
      if (this.reported.has(i.message)) continue;
      this.opts.log.warn(i.code, i.message, { code: i.code });
      this.opts.metrics?.warning(i.code);
    }
    this.reported = next;
  }
}
