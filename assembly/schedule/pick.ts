// Choosing an endpoint: filter, score, pick.
//
// Candidates are the pool's ready endpoints. A Sheddable request only considers endpoints that
// are not saturated and is refused (429) when all of them are. Each candidate then gets a weighted
// sum of scores in [0, 1] (weights from the plugin configuration, see scorers.ts), and the highest
// total wins; exact ties are broken at random, so equal pods share a burst instead of the first
// one taking it all.

import { Config } from "../config";
import { Endpoint, Pool, ROLE_NONE, SHEDDABLE } from "../state/document";
import { PoolLoad } from "./load";
import { PrefixMatch } from "../prefix/index";
import { Rng } from "../util/rng";
import { kvCacheScore, loraScore, prefixScore, queueScore, ttftScore } from "./scorers";
import { hrwWeight } from "./affinity";

export const AFFINITY_OFF: i32 = 0;
export const AFFINITY_TIEBREAK: i32 = 1;
export const AFFINITY_PLACE: i32 = 2;

export const PICKED: i32 = 0;
export const SHED: i32 = 429;
export const NO_ENDPOINT: i32 = 503;

export class PickInput {
  pool: Pool;
  cfg: Config;
  nowMs: f64 = 0;
  generatedAtMs: f64 = 0;
  // The state is older than stale_after_ms: metrics are not trusted, only this proxy's own
  // in-flight counts and the prefix index are.
  degraded: bool = false;
  criticality: i32 = 1;
  // Target model, "" when the request was not parsed.
  target: string = "";
  prefix: PrefixMatch | null = null;
  // Prompt size in tokens (prompt bytes / bytes per token); 0 when the request was not parsed.
  promptTokens: f64 = 0;
  // The target is a LoRA adapter some endpoint has loaded or queued (set by pickEndpoint).
  adapter: bool = false;
  load: PoolLoad;
  scratch: Scratch = SHARED_SCRATCH;
  // In a prefill/decode pool: only endpoints of this role are candidates (ROLE_NONE: any).
  role: i32 = ROLE_NONE;
  // Endpoints to pass over while others are ready (a prefill pod that just failed).
  avoid: Set<u32> | null = null;
  // Learned from answers (observe/learn.ts): per endpoint id, how much slower (> 1) or faster
  // than estimated it answers; estimates are multiplied by it.
  speed: Map<u32, f64> | null = null;
  // The request's affinity key (schedule/affinity.ts), 0 when it has none.
  affinityKey: u64 = 0;

  constructor(pool: Pool, cfg: Config, load: PoolLoad) {
    this.pool = pool;
    this.cfg = cfg;
    this.load = load;
  }
}

// A VM runs one callback at a time, so one scratch area serves every pick of the VM.
const SHARED_SCRATCH = new Scratch();

export class Pick {
  status: i32 = PICKED;
  index: i32 = -1;
  candidates: i32 = 0;
  total: f64 = 0;
  outstanding: f64 = 0;
  prefixBlocks: i32 = 0;
  ties: i32 = 0;
  // Prefill this request adds on the chosen endpoint (its uncached tokens), and the estimated
  // time to its first token there.
  workMs: f64 = 0;
  ttftMs: f64 = 0;
  // The estimate before any learned speed.
  ttftRawMs: f64 = 0;
}

// Metrics of endpoint e are older than the saturation threshold.
export function metricsStale(e: Endpoint, input: PickInput): bool {
  return input.nowMs - (input.generatedAtMs - e.metricsAgeMs) > input.cfg.metricsStaleMs;
}

export function isSaturated(e: Endpoint, input: PickInput): bool {
  if (input.degraded) return false;
  const c = input.cfg;
  return e.waiting >= c.queueThreshold || e.kvUsage >= c.kvThreshold || metricsStale(e, input);
}

// Requests this proxy sent to e since its metrics were taken, less those finished since (never
// negative).
export function sentSince(e: Endpoint, input: PickInput): f64 {
  const n = input.load.netSinceOf(e.id, input.generatedAtMs - e.metricsAgeMs, input.nowMs);
  return n > 0 ? <f64>n : 0;
}

// Requests queued on e: waiting in the metrics, plus — once its KV cache is past the saturation
// threshold, so that new requests wait rather than start — those this proxy sent since the
// metrics were taken. A burst between two scrapes thus spreads over the pods that are already
// full instead of piling onto the one that looked shortest. In degraded mode: this proxy's own
// requests in flight there.
export function queued(e: Endpoint, input: PickInput): f64 {
  if (input.degraded) return <f64>input.load.inflightOf(e.id);
  return e.waiting + (e.kvUsage >= input.cfg.kvThreshold ? sentSince(e, input) : 0);
}

// Outstanding requests on e: what the metrics showed plus what this proxy sent or saw finish
// since, and never less than what this proxy has in flight there.
export function outstanding(e: Endpoint, input: PickInput): f64 {
  const inflight = <f64>input.load.inflightOf(e.id);
  if (input.degraded) return inflight;
  const metricsAt = input.generatedAtMs - e.metricsAgeMs;
  const est = e.running + e.waiting + <f64>input.load.netSinceOf(e.id, metricsAt, input.nowMs);
  return est > inflight ? est : inflight;
}

// Prompt tokens endpoint i (index in the pool) is taken to hold in its prefix cache: its longest
// recorded prefix, or the blocks every endpoint holds, whichever is longer.
export function cachedTokens(i: i32, input: PickInput): f64 {
  const m = input.prefix;
  if (m === null) return 0;
  let blocks = unchecked(m.matched[i]);
  if (m.common > blocks) blocks = m.common;
  const t = <f64>blocks * <f64>input.cfg.prefixBlockSize / input.cfg.bytesPerToken;
  return t < input.promptTokens ? t : input.promptTokens;
}

// Milliseconds endpoint i needs to prefill this request's uncached tokens.
export function workMs(i: i32, input: PickInput): f64 {
  return (input.promptTokens - cachedTokens(i, input)) * 1000 / input.cfg.prefillTokensPerSec;
}

// Estimated time to first token on endpoint e (index i): the prefill this proxy sent there that
// is still due, then this request's own uncached prefill; and when requests are queued there
// (no KV cache to start them), the wait for each of them to be admitted.
export function estimateTtftMs(e: Endpoint, i: i32, input: PickInput): f64 {
  return estimateWith(e, i, input, input.load.backlogOf(e.id, input.nowMs), queued(e, input));
}

// The estimate from the endpoint's backlog and queue, already looked up (the pick has them).
function estimateWith(e: Endpoint, i: i32, input: PickInput, rawBacklog: f64, q: f64): f64 {
  // A pod whose KV cache is full admits requests as others finish, not as fast as it prefills:
  // there the backlog says nothing, and the queue does.
  const full = !input.degraded && e.kvUsage >= input.cfg.kvThreshold;
  const mode = input.cfg.ttftBacklogMode;
  const backlog = full && mode == 1 ? 0 : rawBacklog;
  // Mode 2: a full pod (or one with requests waiting) holds this request until others finish.
  const blocked = mode == 2 && (full || q > 0);
  let wait = backlog + workMs(i, input) + (blocked ? q + 1 : q) * input.cfg.ttftQueuedRequestMs;
  // An adapter that cannot be loaded there now waits for a slot to free up.
  if (input.adapter && loraScore(e, input.target) == 0) wait += input.cfg.ttftLoraBlockedMs;
  return wait;
}

// How saturated endpoint e is (GIE's saturation detector): 1 at the queue or KV threshold;
// 0 in degraded mode, where metrics are not trusted.
export function podSaturation(e: Endpoint, input: PickInput): f64 {
  if (input.degraded) return 0;
  const c = input.cfg;
  const q = c.queueThreshold > 0 ? e.waiting / c.queueThreshold : 0;
  const k = c.kvThreshold > 0 ? e.kvUsage / c.kvThreshold : 0;
  return q > k ? q : k;
}

// Per-worker scratch space, so a pick over hundreds of endpoints allocates nothing.
export class Scratch {
  cand: Int32Array = new Int32Array(0);
  sat: Uint8Array = new Uint8Array(0);
  load: Float64Array = new Float64Array(0);
  queue: Float64Array = new Float64Array(0);
  est: Float64Array = new Float64Array(0);
  tot: Float64Array = new Float64Array(0);

  ensure(n: i32): void {
    if (this.cand.length >= n) return;
    const size = n < 64 ? 64 : n * 2;
    this.cand = new Int32Array(size);
    this.sat = new Uint8Array(size);
    this.load = new Float64Array(size);
    this.queue = new Float64Array(size);
    this.est = new Float64Array(size);
    this.tot = new Float64Array(size);
  }
}

export function pickEndpoint(input: PickInput, rng: Rng): Pick {
  const result = new Pick();
  const eps = input.pool.endpoints;
  const sc = input.scratch;
  sc.ensure(eps.length);
  const cand = sc.cand;
  const sat = sc.sat;
  const load = sc.load;
  // Filter.
  let n = 0;
  let unsaturated = 0;
  let avoid = input.avoid;
  for (let pass = 0; pass < 2 && n == 0; pass++) {
    let avoided = 0;
    for (let i = 0; i < eps.length; i++) {
      const e = unchecked(eps[i]);
      if (!e.ready) continue;
      if (input.role != ROLE_NONE && e.role != input.role) continue;
      if (avoid !== null && avoid.has(e.id)) {
        avoided++;
        continue;
      }
      const s = isSaturated(e, input);
      unchecked((cand[n] = i));
      unchecked((sat[n] = s ? 1 : 0));
      n++;
      if (!s) unsaturated++;
    }
    // Every ready endpoint is one to avoid: try them rather than fail for certain.
    if (avoided == 0) break;
    avoid = null;
  }
  if (n == 0) {
    result.status = NO_ENDPOINT;
    return result;
  }
  if (input.criticality == SHEDDABLE) {
    if (unsaturated == 0) {
      result.status = SHED;
      result.candidates = n;
      return result;
    }
    let w = 0;
    for (let k = 0; k < n; k++) {
      if (unchecked(sat[k]) != 0) continue;
      unchecked((cand[w] = cand[k]));
      unchecked((sat[w] = 0));
      w++;
    }
    n = w;
  }
  result.candidates = n;

  // Score.
  input.adapter = input.target.length > 0 && input.pool.adapters.has(input.target);
  const queues = sc.queue;
  const est = sc.est;
  const w = input.cfg.weights;
  let minLoad = Infinity;
  let sumLoad: f64 = 0;
  let minQ = Infinity;
  let maxQ = -Infinity;
  let minEst = Infinity;
  let minBacklog = Infinity;
  let saturation: f64 = 0;
  for (let k = 0; k < n; k++) {
    const i = unchecked(cand[k]);
    const e = unchecked(eps[i]);
    const v = outstanding(e, input);
    unchecked((load[k] = v));
    if (v < minLoad) minLoad = v;
    sumLoad += v;
    const q = queued(e, input);
    unchecked((queues[k] = q));
    const bl = input.load.backlogOf(e.id, input.nowMs);
    if (bl < minBacklog) minBacklog = bl;
    let t = estimateWith(e, i, input, bl, q);
    const sp = input.speed;
    if (sp !== null && sp.has(e.id)) t *= sp.get(e.id);
    unchecked((est[k] = t));
    if (t < minEst) minEst = t;
    saturation += podSaturation(e, input);
    if (q < minQ) minQ = q;
    if (q > maxQ) maxQ = q;
  }
  const span = maxQ - minQ;
  // Estimates this close to the best count as the best. When every endpoint has prefill queued
  // (a burst), differences within a share of the smallest backlog are noise, and following
  // them exactly would spread the burst evenly and lock the pods into one rhythm.
  // While the pool is saturated (GIE's detector: the mean over endpoints of max(waiting / queue
  // threshold, KV usage / KV threshold) reaches 1) new work waits for KV cache to free up, and
  // the estimate counts only where it is clearly better (ttft.saturated_tolerance).
  let tolerance = saturation / <f64>n >= 1 && input.cfg.ttftSaturatedTolerance >= 0 ? input.cfg.ttftSaturatedTolerance : input.cfg.ttftTolerance;
  // Closed-loop clients send the next request as one finishes: followed exactly, the estimate
  // spreads every wave of them evenly and locks the pods into one rhythm of filling, preempting
  // and admitting. There the estimate counts only where it is clearly better.
  if (input.load.coupled >= 0.5 && input.cfg.ttftClosedLoopTolerance >= 0) tolerance = input.cfg.ttftClosedLoopTolerance;
  let ttftBest = minEst * (1 + tolerance) + minBacklog * input.cfg.ttftBacklogTolerance;
  // Past ttft.overload_ms of prefill queued on every endpoint the pool is overloaded: the queue
  // is long everywhere, and the estimate stands aside for the queue and KV scorers.
  if (minBacklog > input.cfg.ttftOverloadMs) ttftBest = Infinity;
  const prefix = input.prefix;
  const adapter = input.adapter;
  // Affinity (schedule/affinity.ts): a request the prefix index knows nothing useful about (no
  // endpoint holds more of it than every endpoint does) goes, among the candidates scoring within
  // affinity.tolerance of the best, to the one rendezvous hashing of its key ranks first; so every
  // replica sends a conversation's turns to the same pod while the pods are about equally good.
  const key = input.affinityKey;
  const mode = key != 0 ? input.cfg.affinityMode : AFFINITY_OFF;
  const place = mode == AFFINITY_PLACE && (prefix === null || prefix.best <= prefix.common);
  const totals = sc.tot;
  const band = minLoad * input.cfg.prefixLoadRatio + input.cfg.prefixLoadSlack;
  // Bounded load: endpoints past the cap above the mean do not win; the least loaded is always
  // within it.
  let cap = Infinity;
  if (input.cfg.balanceLoadFactor > 0) {
    const mean = sumLoad / <f64>n;
    const a = mean * input.cfg.balanceLoadFactor;
    const b = mean + input.cfg.balanceLoadSlack;
    cap = a > b ? a : b;
  }

  let best = -Infinity;
  let bestK = -1;
  let ties = 0;
  let bestW: u64 = 0;
  for (let k = 0; k < n; k++) {
    const i = unchecked(cand[k]);
    const e = unchecked(eps[i]);
    if (unchecked(load[k]) > cap) continue;
    let total = w.queue * queueScore(unchecked(queues[k]), minQ, span);
    if (w.ttft > 0) total += w.ttft * ttftScore(unchecked(est[k]), ttftBest, input.cfg.ttftFloorMs, input.cfg.ttftSlackMs);
    if (!input.degraded) {
      total += w.kvCache * kvCacheScore(e);
      total += w.score * e.score;
    }
    if (adapter) total += w.lora * loraScore(e, input.target);
    // Prefix affinity counts where the pod's load stays within the band around the least loaded
    // candidate: a hot prefix cannot pull everything onto one pod.
    if (prefix !== null && unchecked(load[k]) <= band) {
      total += w.prefix * prefixScore(prefix.matched[i], prefix.total, prefix.common);
    }
    unchecked((totals[k] = total));
    if (total > best + 1e-9) {
      best = total;
      bestK = k;
      ties = 1;
      if (mode != AFFINITY_OFF) bestW = hrwWeight(key, e.id);
    } else if (total >= best - 1e-9) {
      ties++;
      if (mode != AFFINITY_OFF) {
        // Ties go by rendezvous weight: the same endpoint on every replica.
        const wt = hrwWeight(key, e.id);
        if (wt > bestW) {
          bestK = k;
          bestW = wt;
        }
      } else if (rng.below(ties) == 0) {
        // Reservoir sampling over ties: each tied candidate wins with equal probability.
        bestK = k;
      }
    }
  }
  if (place) {
    const floor = best - Math.abs(best) * input.cfg.affinityTolerance - 1e-9;
    let top: u64 = 0;
    let first = true;
    for (let k = 0; k < n; k++) {
      if (unchecked(totals[k]) < floor || unchecked(load[k]) > cap) continue;
      const wt = hrwWeight(key, unchecked(eps[unchecked(cand[k])]).id);
      if (first || wt > top) {
        top = wt;
        bestK = k;
        first = false;
      }
    }
  }
  const chosen = unchecked(cand[bestK]);
  result.index = chosen;
  result.total = best;
  result.ties = ties;
  result.outstanding = unchecked(load[bestK]);
  result.prefixBlocks = prefix !== null ? prefix.matched[chosen] : 0;
  result.workMs = workMs(chosen, input);
  result.ttftMs = unchecked(est[bestK]);
  const sp = input.speed;
  const ce = unchecked(eps[chosen]);
  result.ttftRawMs = sp !== null && sp.has(ce.id) ? result.ttftMs / sp.get(ce.id) : result.ttftMs;
  return result;
}

