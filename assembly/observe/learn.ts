// What answers teach routing, per endpoint and per worker: how fast the endpoint really is next
// to the pick's estimate, and how long its prefix cache really keeps what the index says it holds.
//
// Speed. For a streamed answer, the time from sending the request to its first byte is compared
// with the pick's estimate for that endpoint, both with the scoring floor added (a full cache hit
// on an idle pod is estimated near 0 ms, and takes one decode step). The exponentially weighted
// ratio, relative to the mean over the endpoints learned so far, multiplies that endpoint's
// future estimates: a pod that keeps answering slower than its peers looks slower. Relative,
// because an estimate that is off for every pod alike changes no pick; and only past a dead band
// (ttft_deadband), because on equal pods the ratios differ by noise alone, and following noise
// only unbalances them.
//
// Retention. The index remembers that a pod was sent a prefix until its TTL; the pod's cache may
// have evicted it long before, under memory pressure. An answer's cached_tokens says whether the
// prediction held: a hit on a record of age a shows the pod keeps prefixes at least that long, a
// miss that it keeps them less. The endpoint's retention moves only when a contradicts it: a hit
// older than the retention raises it by a factor (1 + alpha), up to a; a miss younger than it
// lowers it by (1 - alpha), until it is below the ages that miss. So it settles where hits turn
// into misses. Records older than an endpoint's retention no longer count as held there.
//
// Each worker learns from the answers it sees; learned values are not shared.

import { ResponseWatch } from "./watch";
import { Pool } from "../state/document";
import { PrefixMatch, ms32 } from "../prefix/index";

const MIN_RETENTION_MS: f64 = 1000;
// Answers an endpoint's speed needs before it counts.
const MIN_SPEED_SAMPLES: i32 = 16;

export const NO_VERDICT: i32 = 0;
export const CONFIRMED: i32 = 1; // the prefix the index predicted was in the cache
export const MISSED: i32 = 2; // it was not (or much less of it)
const MAX_RATIO: f64 = 10;
const MIN_RATIO: f64 = 0.1;

export class PodLearning {
  // EWMA of the time to first byte once sent (streamed answers), ms; -1 before the first.
  ttftMs: f64 = -1;
  // EWMA of prompt tokens computed (not cached) per second of that time; -1 before the first.
  prefillTokensPerSec: f64 = -1;
  // EWMA of (observed + floor) / (estimate + floor).
  speed: f64 = 1;
  speedSamples: i32 = 0;
  retentionMs: f64;
  hits: i32 = 0;
  misses: i32 = 0;

  constructor(retentionMs: f64) {
    this.retentionMs = retentionMs;
  }
}

export class Learner {
  pods: Map<u32, PodLearning> = new Map<u32, PodLearning>();
  // Speeds by endpoint id, for the pick (only endpoints learned so far).
  speeds: Map<u32, f64> = new Map<u32, f64>();
  // The servers report cached_tokens (seen at least once): an answer without it had none cached
  // (vLLM leaves the field out when it is 0).
  cacheReported: bool = false;
  alpha: f64;
  ttlMs: f64;
  floorMs: f64;
  maxPods: i32;
  deadband: f64;
  // Sum and count of the speeds of endpoints with enough answers.
  private speedSum: f64 = 0;
  private speedCount: i32 = 0;

  constructor(alpha: f64, ttlMs: f64, floorMs: f64, maxPods: i32, deadband: f64 = 0.2) {
    this.alpha = alpha;
    this.ttlMs = ttlMs;
    this.floorMs = floorMs;
    this.maxPods = maxPods;
    this.deadband = deadband;
  }

  pod(id: u32): PodLearning | null {
    if (this.pods.has(id)) return this.pods.get(id);
    // Bounded: a pool's pods come and go; past the bound the oldest learning is dropped.
    if (this.pods.size >= this.maxPods) {
      const keys = this.pods.keys();
      const old = this.pods.get(keys[0]);
      if (old.speedSamples >= MIN_SPEED_SAMPLES) {
        this.speedSum -= old.speed;
        this.speedCount--;
      }
      this.pods.delete(keys[0]);
      this.speeds.delete(keys[0]);
    }
    const p = new PodLearning(this.ttlMs);
    this.pods.set(id, p);
    return p;
  }

  // Sets aside, in a lookup over `pool`, the records older than their endpoint's retention: they
  // no longer count as held there.
  forget(m: PrefixMatch, pool: Pool, nowMs: f64): void {
    if (this.pods.size == 0) return;
    const now = ms32(nowMs);
    const n = m.matched.length < pool.endpoints.length ? m.matched.length : pool.endpoints.length;
    for (let i = 0; i < n; i++) {
      if (unchecked(m.matched[i]) == 0) continue;
      const id = unchecked(pool.endpoints[i]).id;
      if (!this.pods.has(id)) continue;
      const r = this.pods.get(id).retentionMs;
      if (r >= this.ttlMs) continue;
      if (<f64>(now - unchecked(m.at[i])) > r) unchecked((m.matched[i] = 0));
    }
  }

  retentionOf(id: u32): f64 {
    return this.pods.has(id) ? this.pods.get(id).retentionMs : this.ttlMs;
  }

  // Learns from a finished answer routed to endpoint `id` (streamed: its first byte is the first
  // token). Returns what the answer said of the index's prediction: CONFIRMED, MISSED or
  // NO_VERDICT.
  observe(w: ResponseWatch, id: u32, streamed: bool, blockSize: i32): i32 {
    const u = w.usage;
    if (u.cachedTokens >= 0) this.cacheReported = true;
    const a = this.alpha;
    const t = w.upstreamTtftMs;
    if (streamed && t >= 0) {
      const p = this.pod(id) as PodLearning;
      p.ttftMs = p.ttftMs < 0 ? t : p.ttftMs + a * (t - p.ttftMs);
      if (u.found && u.promptTokens > 0) {
        const cached = u.cachedTokens > 0 ? u.cachedTokens : 0;
        const computed = <f64>(u.promptTokens - cached);
        if (computed > 0 && t > 0) {
          const tps = computed * 1000 / t;
          p.prefillTokensPerSec = p.prefillTokensPerSec < 0 ? tps : p.prefillTokensPerSec + a * (tps - p.prefillTokensPerSec);
        }
      }
      if (w.estimateMs >= 0) {
        let r = (t + this.floorMs) / (w.estimateMs + this.floorMs);
        if (r > MAX_RATIO) r = MAX_RATIO;
        if (r < MIN_RATIO) r = MIN_RATIO;
        const before = p.speed;
        p.speed = p.speedSamples == 0 ? r : p.speed + a * (r - p.speed);
        p.speedSamples++;
        if (p.speedSamples == MIN_SPEED_SAMPLES) {
          this.speedSum += p.speed;
          this.speedCount++;
        } else if (p.speedSamples > MIN_SPEED_SAMPLES) {
          this.speedSum += p.speed - before;
        }
        if (p.speedSamples >= MIN_SPEED_SAMPLES) {
          const rel = p.speed * <f64>this.speedCount / this.speedSum;
          if (Math.abs(rel - 1) > this.deadband) this.speeds.set(id, rel);
          else this.speeds.delete(id);
        }
      }
    }
    return this.learnRetention(w, blockSize);
  }

  // How much slower (> 1) or faster than its peers endpoint `id` answers; 1 within the dead band
  // or before enough answers.
  speedOf(id: u32): f64 {
    return this.speeds.has(id) ? this.speeds.get(id) : 1;
  }

  private learnRetention(w: ResponseWatch, blockSize: i32): i32 {
    const u = w.usage;
    if (!u.found || w.recordedBlocks <= 0 || w.recordedAgeMs < 0 || w.cachePodId == 0) return NO_VERDICT;
    if (u.cachedTokens < 0 && !this.cacheReported) return NO_VERDICT;
    const real: f64 = u.cachedTokens > 0 ? <f64>u.cachedTokens : 0;
    const predicted = w.recordedCachedTokens(blockSize);
    if (predicted <= 0) return NO_VERDICT;
    // One block of slack for where the server's blocks end against ours.
    const block = <f64>blockSize * <f64>u.promptTokens / <f64>w.promptBytes;
    const p = this.pod(w.cachePodId) as PodLearning;
    const age = w.recordedAgeMs;
    let verdict = NO_VERDICT;
    if (real >= predicted - 2 * block) {
      p.hits++;
      verdict = CONFIRMED;
      if (age > p.retentionMs) {
        const up = p.retentionMs * (1 + this.alpha);
        p.retentionMs = up < age ? up : age;
      }
    } else if (real < predicted / 2) {
      p.misses++;
      verdict = MISSED;
      if (age < p.retentionMs) p.retentionMs *= 1 - this.alpha;
    }
    if (p.retentionMs < MIN_RETENTION_MS) p.retentionMs = MIN_RETENTION_MS;
    if (p.retentionMs > this.ttlMs) p.retentionMs = this.ttlMs;
    return verdict;
  }
}
