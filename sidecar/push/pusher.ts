// Pushes the newest state document to every push URL.
//
// Per URL: at most one request in flight; while it runs, newer documents replace each other and
// only the newest is sent next (bursts coalesce). A document is re-sent every --push-interval
// even when unchanged (same version, fresh generated_at_ms and ages). Failures back off
// exponentially with jitter (100 ms doubling to 5 s); meanwhile newer documents wait for the
// retry. Everything is asynchronous: a slow or absent Envoy never delays scraping. An offer to an
// idle URL is sent at once: the only waiting is behind the request in flight or a retry.
//
// Answers, as the filter gives them:
//   204  stored.
//   409  the stored document has a newer generated_at_ms (the sidecar restarted with a clock
//        behind, or another writer): generated_at_ms is moved past the stored one (read from
//        the error message, else from GET) and the push is retried at once.
//   401  wrong token: the token file is re-read, then retried with backoff.
//   400 / 413 / other: logged with the filter's reason, retried with backoff.

import type http from "node:http";
import type { ErrorCode } from "../errors.ts";
import type { Logger } from "../observability/log.ts";
import { Backoff } from "../util/backoff.ts";
import { renderDocument, type Built } from "../state/document.ts";
import { errorMessage, newPushAgent, request } from "./http-post.ts";
import type { TokenSource } from "./token.ts";

export interface Payload {
  version: number;
  built: Built;
}

export interface PushObserver {
  pushed(url: string, seconds: number, version: number, bytes: number): void;
  failed(url: string, code: ErrorCode, seconds: number): void;
  // Once per scrape, when `url` accepts the first document carrying its values: the time since
  // the scrape completed. Scrapes overtaken by a newer one of the same pod before reaching `url`
  // are not reported.
  delivered?(url: string, seconds: number): void;
}

export interface PusherOptions {
  urls: string[];
  token: TokenSource;
  timeoutMs: number;
  intervalMs: number;
  log: Logger;
  observer?: PushObserver;
  onAccepted?: (url: string, version: number) => void;
  now?: () => number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

class Target {
  readonly url: URL;
  readonly agent: http.Agent = newPushAgent();
  readonly backoff: Backoff;
  inFlight?: Promise<void>;
  retryTimer?: NodeJS.Timeout;
  refreshTimer?: NodeJS.Timeout;
  acceptedVersion = -1;
  acceptedScrapes?: Map<string, number>; // Built.scrapes of the last accepted document
  lastAcceptedMs?: number;
  floorMs = 0; // generated_at_ms must be at least this (after a 409)
  conflicts = 0;
  retryNow = false;
  failing?: ErrorCode;

  constructor(url: string, baseMs: number, maxMs: number) {
    this.url = new URL(url);
    this.backoff = new Backoff(baseMs, maxMs);
  }
}

export class Pusher {
  private readonly targets: Target[];
  private latest?: Payload;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly opts: PusherOptions) {
    this.now = opts.now ?? Date.now;
    this.targets = opts.urls.map((u) => new Target(u, opts.backoffBaseMs ?? 100, opts.backoffMaxMs ?? 5000));
  }

  offer(payload: Payload): void {
    this.latest = payload;
    for (const t of this.targets) this.kick(t, false);
  }

  // The highest version stored at the push URLs (GET), so that a restarted sidecar continues the
  // numbering instead of starting again at 1; undefined when none answers within `timeoutMs`.
  async storedVersion(timeoutMs: number): Promise<number | undefined> {
    const versions = await Promise.all(
      this.targets.map(async (t) => {
        const r = await request(t.url, "GET", this.opts.token.token, undefined, timeoutMs, t.agent, 64 * 1024 * 1024);
        if (!r.ok || r.reply.status !== 200) return undefined;
        const m = /"version"\s*:\s*(\d{1,15})\b/.exec(r.reply.body);
        return m ? Number(m[1]) : undefined;
      }),
    );
    const known = versions.filter((v): v is number => v !== undefined);
    return known.length > 0 ? Math.max(...known) : undefined;
  }

  // Wall-clock ms of the last accepted push per URL.
  lastAccepted(): Map<string, number | undefined> {
    return new Map(this.targets.map((t) => [t.url.href, t.lastAcceptedMs]));
  }

  // Stops pushing; resolves when the requests in flight have finished.
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.targets) {
      clearTimeout(t.retryTimer);
      clearTimeout(t.refreshTimer);
    }
    await Promise.all(this.targets.map((t) => t.inFlight));
    for (const t of this.targets) t.agent.destroy();
  }

  private kick(t: Target, refresh: boolean): void {
    if (this.stopped || t.inFlight || t.retryTimer || !this.latest) return;
    if (!refresh && this.latest.version === t.acceptedVersion) return;
    const payload = this.latest;
    t.inFlight = this.send(t, payload).finally(() => {
      t.inFlight = undefined;
      if (this.stopped) return;
      const retry = t.retryNow;
      t.retryNow = false;
      if (retry) this.kick(t, true);
      else if (!t.retryTimer && this.latest && this.latest.version !== t.acceptedVersion) this.kick(t, false);
    });
  }

  private async send(t: Target, payload: Payload): Promise<void> {
    const generatedAt = Math.max(this.now(), t.floorMs);
    const body = renderDocument(payload.built, payload.version, generatedAt);
    const t0 = performance.now();
    const r = await request(t.url, "POST", this.opts.token.token, body, this.opts.timeoutMs, t.agent);
    const seconds = (performance.now() - t0) / 1000;
    if (r.ok && (r.reply.status === 204 || r.reply.status === 200)) {
      this.reportDelivered(t, payload.built.scrapes);
      t.acceptedVersion = payload.version;
      t.lastAcceptedMs = this.now();
      t.conflicts = 0;
      t.backoff.reset();
      if (t.failing) {
        this.opts.log.info("push_recovered", `${t.url.href}: pushes accepted again`, { url: t.url.href, after: t.failing, version: payload.version });
        t.failing = undefined;
      }
      this.opts.observer?.pushed(t.url.href, seconds, payload.version, body.length);
      this.opts.onAccepted?.(t.url.href, payload.version);
      this.opts.log.debug("push_accepted", `${t.url.href}: version ${payload.version}`, { url: t.url.href, version: payload.version, bytes: body.length });
      clearTimeout(t.refreshTimer);
      if (this.stopped) return;
      t.refreshTimer = setTimeout(() => {
        t.refreshTimer = undefined;
        this.kick(t, true);
      }, this.opts.intervalMs);
      return;
    }
    let code: ErrorCode;
    let message: string;
    if (!r.ok) {
      code = r.timeout ? "push_timeout" : "push_unreachable";
      message = r.message;
    } else {
      const reason = errorMessage(r.reply.body);
      switch (r.reply.status) {
        case 409: {
          code = "push_conflict";
          message = reason;
          t.conflicts++;
          const stored = (await this.storedGeneratedAt(t, reason)) ?? generatedAt + 1000;
          t.floorMs = Math.max(t.floorMs, stored + 1, generatedAt + 1);
          this.opts.observer?.failed(t.url.href, code, seconds);
          this.opts.log.info("push_conflict", `${t.url.href}: the listener holds a document generated at ${stored}; moving generated_at_ms forward to ${t.floorMs} and pushing again`, { url: t.url.href, code, stored });
          if (t.conflicts <= 3) {
            t.retryNow = true; // pushed again at once, with the new generated_at_ms
            return;
          }
          break;
        }
        case 401:
          code = "push_unauthorized";
          message = `${reason}${this.opts.token.reload() ? "; the token file changed, retrying with the new token" : ""}`;
          break;
        case 400:
          code = "push_rejected";
          message = reason;
          break;
        case 413:
          code = "push_too_large";
          message = `${reason} (document of ${body.length} bytes)`;
          break;
        default:
          code = "push_http_status";
          message = `answered ${r.reply.status}: ${reason}`;
      }
    }
    if (code !== "push_conflict") this.opts.observer?.failed(t.url.href, code, seconds);
    const delay = t.backoff.next();
    if (t.failing !== code) {
      const level = code === "push_rejected" || code === "push_too_large" || code === "push_unauthorized" ? "error" : "warn";
      this.opts.log[level]("push_failed", `${t.url.href}: ${message}; retrying in ${delay}ms`, { url: t.url.href, code, version: payload.version });
      t.failing = code;
    }
    if (this.stopped) return;
    t.retryTimer = setTimeout(() => {
      t.retryTimer = undefined;
      this.kick(t, true);
    }, delay);
  }

  // Reports the scrapes this URL now holds for the first time: those the previous accepted
  // document did not carry (no value for the pod, or an older scrape's).
  private reportDelivered(t: Target, scrapes: Map<string, number>): void {
    const observer = this.opts.observer;
    if (observer?.delivered && scrapes !== t.acceptedScrapes) {
      const at = performance.now();
      for (const [key, completedAt] of scrapes) {
        if (t.acceptedScrapes?.get(key) !== completedAt) observer.delivered(t.url.href, Math.max(0, at - completedAt) / 1000);
      }
    }
    t.acceptedScrapes = scrapes;
  }

  // The stored document's generated_at_ms: from the 409 message, else by reading it back.
  private async storedGeneratedAt(t: Target, message: string): Promise<number | undefined> {
    const m = /\((\d{1,16})\)/.exec(message);
    if (m) return Number(m[1]);
    const r = await request(t.url, "GET", this.opts.token.token, undefined, this.opts.timeoutMs, t.agent, 64 * 1024 * 1024);
    if (!r.ok || r.reply.status !== 200) return undefined;
    const g = /"generated_at_ms"\s*:\s*(\d{1,16})/.exec(r.reply.body);
    return g ? Number(g[1]) : undefined;
  }
}
