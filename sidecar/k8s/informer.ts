// A list+watch cache of one resource that keeps itself alive.
//
// @kubernetes/client-node's ListWatch lists, then watches from the list's resourceVersion; when a
// watch ends cleanly it re-watches from the last resourceVersion seen, and on 410 Gone it
// relists. Any other failure (connection refused, reset, 5xx, 403, a list that fails) makes it
// emit "error" and stop for good. This wrapper restarts it with exponential backoff, and adds to
// every watch request:
//   - allowWatchBookmarks=true, so a quiet watch still advances its resourceVersion;
//   - timeoutSeconds (300-600 s, random), so the server ends each watch and it is renewed;
//   - a client-side deadline a little after that, which aborts a watch whose connection died
//     silently (the restart resumes from the last resourceVersion).
// A 404 on the list means the cluster does not serve the resource (a CRD not installed): the
// cache counts as synced and empty, and the list is retried every `missingRetryMs`.

import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import { Backoff } from "../util/backoff.ts";
import { describe } from "../errors.ts";
import type { Logger } from "../observability/log.ts";

type WatchCallback = (phase: string, apiObj: unknown, watchObj?: unknown) => void;
type DoneCallback = (err: unknown) => void;

export interface InformerOptions<T extends KubernetesObject> {
  kubeconfig: KubeConfig;
  // Label for logs and metrics: "pods default app=qwen", "inferencepools (all namespaces)".
  name: string;
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  log: Logger;
  onChange: () => void;
  onRestart?: (name: string) => void;
  watchTimeoutSeconds?: () => number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  missingRetryMs?: number;
}

export class Informer<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private readonly backoff: Backoff;
  private stopped = true;
  private restartTimer?: NodeJS.Timeout;
  private listed = false;
  private missing = false;
  private failing = false;

  constructor(private readonly opts: InformerOptions<T>) {
    this.backoff = new Backoff(opts.backoffBaseMs ?? 250, opts.backoffMaxMs ?? 30_000);
    const watch = new BookmarkingWatch(new Watch(opts.kubeconfig), opts.watchTimeoutSeconds ?? (() => 300 + Math.floor(Math.random() * 300)), () => this.healthy());
    const list = () =>
      opts.list().then((result) => {
        this.listed = true;
        this.missing = false;
        this.healthy();
        // An empty list fires no callbacks; the reconciler still needs to hear that the
        // resource is now known.
        setImmediate(() => !this.stopped && this.opts.onChange());
        return result;
      });
    this.lw = new ListWatch<T>(opts.path, watch as unknown as Watch, list, false, opts.labelSelector);
    const changed = () => this.opts.onChange();
    this.lw.on("add", changed);
    this.lw.on("update", changed);
    this.lw.on("delete", changed);
    this.lw.on("error", (err) => this.failed(err));
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.lw.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    await this.lw.stop();
  }

  // Listed at least once (or known to be absent from the cluster).
  synced(): boolean {
    return this.listed || this.missing;
  }

  list(): T[] {
    return this.missing ? [] : [...this.lw.list()];
  }

  private healthy(): void {
    if (this.failing) {
      this.failing = false;
      this.opts.log.info("watch_recovered", `${this.opts.name}: listing and watching again`, { resource: this.opts.name });
    }
    this.backoff.reset();
  }

  private failed(err: unknown): void {
    if (this.stopped) return; // stop() aborts the watch, which reports an error
    const status = statusOf(err);
    let delay: number;
    if (status === 404 && !this.listed) {
      delay = this.opts.missingRetryMs ?? 60_000;
      if (!this.missing) {
        this.missing = true;
        this.opts.log.warn("resource_missing", `${this.opts.name}: the API server does not serve this resource (404); treating it as empty and checking again every ${Math.round(delay / 1000)}s`, { resource: this.opts.name });
        this.opts.onChange();
      }
    } else {
      delay = this.backoff.next();
      const code = this.listed ? "watch_failed" : "list_failed";
      if (!this.failing || this.backoff.attempts % 10 === 0) {
        this.opts.log.warn(code, `${this.opts.name}: ${describe(err)}; restarting in ${delay}ms`, { resource: this.opts.name, code, status, attempt: this.backoff.attempts });
      }
      this.failing = true;
    }
    this.opts.onRestart?.(this.opts.name);
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.stopped) return;
      void this.lw.start();
    }, delay);
  }
}

// The HTTP status of a client error (ApiException.code, or statusCode), when it has one.
export function statusOf(err: unknown): number | undefined {
  if (err && typeof err === "object") {
    const e = err as { code?: unknown; statusCode?: unknown };
    if (typeof e.code === "number") return e.code;
    if (typeof e.statusCode === "number") return e.statusCode;
  }
  return undefined;
}

// Adds allowWatchBookmarks and timeoutSeconds to every watch, reports activity, and aborts a
// watch that outlives its timeout (a dead connection the server can no longer end).
class BookmarkingWatch {
  constructor(
    private readonly inner: Watch,
    private readonly timeoutSeconds: () => number,
    private readonly onActivity: () => void,
  ) {}

  async watch(path: string, queryParams: Record<string, unknown>, callback: WatchCallback, done: DoneCallback): Promise<AbortController> {
    const timeout = this.timeoutSeconds();
    let deadline: NodeJS.Timeout | undefined;
    const params = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: timeout };
    const controller = await this.inner.watch(
      path,
      params,
      (phase, obj, watchObj) => {
        if (phase !== "ERROR") this.onActivity();
        callback(phase, obj, watchObj);
      },
      (err) => {
        clearTimeout(deadline);
        done(err);
      },
    );
    if (!controller.signal.aborted) {
      deadline = setTimeout(() => controller.abort(), (timeout + 30) * 1000);
      deadline.unref();
      controller.signal.addEventListener("abort", () => clearTimeout(deadline), { once: true });
    }
    return controller;
  }
}
