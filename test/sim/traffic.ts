// Open-loop traffic with the properties public production traces show (docs/benchmark.md):
//
//   - one system prompt shared by (nearly) every request;
//   - long-tailed lengths: user messages and answers are lognormal, so prompt lengths have a p99
//     about 10x their median;
//   - many conversations whose number of turns follows a Zipf law (P(n) ~ n^-a: most are one or
//     two turns, a few run long), turns minutes apart, so a context comes back after hundreds of
//     other requests;
//   - a non-homogeneous Poisson arrival process: the rate moves +-swing from minute to minute,
//     with short bursts on top;
//   - optionally a mix of LoRA adapters, one per conversation.
//
// planTraffic() fixes everything that does not depend on the serving: arrival times, which
// conversation and turn each arrival is, lengths and adapters. It is the same for every router.
// traffic() turns the plan into requests as the simulation runs: a turn's prompt is the previous
// prompt, the answer the engine actually generated and a new user message. A turn whose previous
// answer has not finished by its planned time waits for it (a user cannot reply before reading).

import { arrivalTimes, lognormal, zipfSampler, type LengthDist, type RateProfile } from "./arrivals.ts";
import { Rng, hashString } from "./rng.ts";
import { fillerToken, REGULAR_VOCAB } from "./tokens.ts";
import { mergeSources, type Criticality, type RequestSource, type SimRequest } from "./workload.ts";

export type { LengthDist, RateProfile } from "./arrivals.ts";

export interface TrafficOptions extends RateProfile {
  /** Requests sent (planned at or after time 0). */
  requests: number;
  /**
   * Plan this much traffic before time 0 without sending it, so the run starts in steady state:
   * conversations already under way, with their histories (default 0: a cold start).
   */
  warmupMs?: number;
  /** Tokens of the system prompt. */
  systemLen: number;
  /** Fraction of conversations that start with the system prompt (default 1). */
  systemShare?: number;
  /** New user message per turn. */
  userLen: LengthDist;
  /** Tokens generated per turn. */
  outputLen: LengthDist;
  /** Zipf exponent of turns per conversation (default 2) and the cap (default 40). */
  turnsZipf?: number;
  maxTurns?: number;
  /** Time from one turn to the next of the same conversation (send to send). */
  turnGapMs: LengthDist;
  /** Adapters and their share of conversations; null is the base model (default: base only). */
  loras?: Array<{ name: string | null; weight: number }>;
  /** Prompt plus output never exceeds this (default 8192): a conversation that would ends. */
  maxModelLen?: number;
  seed?: number;
}

export interface PlannedRequest {
  atMs: number;
  conversation: number;
  turn: number;
  /** Whether this conversation starts with the shared system prompt. */
  system: boolean;
  userLen: number;
  outputLen: number;
  /** Prompt length, assuming every answer is outputLen tokens (the engine generates exactly that). */
  promptLen: number;
  lora: string | null;
  /** No later turn of this conversation follows. */
  last: boolean;
}

interface Conv {
  id: number;
  turn: number;
  turnsLeft: number;
  promptLen: number;
  lastOutput: number;
  system: boolean;
  lora: string | null;
  dueAt: number;
  /** Index of its latest request in the plan. */
  lastIndex: number;
}

/**
 * Each arrival continues the conversation that has been due longest, or starts a new one when
 * none is due; so the arrival process is exactly the planned one and gaps are at least turnGap.
 * With a warm-up, the plan starts before 0 (negative atMs: not sent, but part of histories).
 */
export function planTraffic(o: TrafficOptions): PlannedRequest[] {
  const rng = new Rng(o.seed ?? 5);
  const warmup = o.warmupMs ?? 0;
  // The first request sent is at 0, like a trace's.
  const all = arrivalTimes(o.requests, o, rng.fork(), warmup);
  const first = all.find((t) => t >= warmup)!;
  const times = all.map((t) => t - first);
  const lenRng = rng.fork();
  const turns = zipfSampler(o.turnsZipf ?? 2, o.maxTurns ?? 40);
  const limit = o.maxModelLen ?? 8192;
  const loras = o.loras ?? [{ name: null, weight: 1 }];
  const loraTotal = loras.reduce((a, l) => a + l.weight, 0);
  const due: Conv[] = []; // sorted by dueAt
  const out: PlannedRequest[] = [];
  let next = 0;
  for (const t of times) {
    let c: Conv | undefined;
    let userLen = 0, outputLen = 0, promptLen = 0;
    while (due.length > 0 && due[0].dueAt <= t && !c) {
      const d = due.shift()!;
      userLen = lognormal(lenRng, o.userLen);
      outputLen = lognormal(lenRng, o.outputLen);
      promptLen = d.promptLen + d.lastOutput + userLen;
      if (promptLen + outputLen <= limit) c = d;
      else out[d.lastIndex].last = true; // the context is full: the conversation ends
    }
    if (c) {
      c.turn++;
      c.turnsLeft--;
    } else {
      let u = rng.next() * loraTotal;
      let k = 0;
      while (k < loras.length - 1 && (u -= loras[k].weight) >= 0) k++;
      const lora = loras[k].name;
      const system = rng.next() < (o.systemShare ?? 1);
      c = { id: next++, turn: 0, turnsLeft: turns(rng) - 1, promptLen: 0, lastOutput: 0, system, lora, dueAt: t, lastIndex: -1 };
      outputLen = lognormal(lenRng, o.outputLen);
      const sys = system ? o.systemLen : 0;
      userLen = Math.min(lognormal(lenRng, o.userLen), limit - sys - outputLen);
      promptLen = sys + userLen;
    }
    c.promptLen = promptLen;
    c.lastOutput = outputLen;
    c.lastIndex = out.length;
    out.push({ atMs: t, conversation: c.id, turn: c.turn, system: c.system, userLen, outputLen, promptLen, lora: c.lora, last: c.turnsLeft === 0 });
    if (c.turnsLeft > 0) {
      c.dueAt = t + lognormal(rng, o.turnGapMs);
      let k = due.length;
      while (k > 0 && due[k - 1].dueAt > c.dueAt) k--;
      due.splice(k, 0, c);
    }
  }
  for (const d of due) out[d.lastIndex].last = true;
  return out;
}

/** Random prompt tokens that depend only on (seed, what, n): the same text for every router. */
export function tokensFor(seed: number, what: string, n: number): number[] {
  const rng = new Rng(hashString(`${seed}/${what}`));
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(0, REGULAR_VOCAB - 1);
  return out;
}

/** The answer the simulated engine generates for request `id` (engine.ts: filler words seeded by the id). */
export function answerTokens(id: string, n: number): number[] {
  const seed = hashString(id);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = fillerToken(seed, i);
  return out;
}

const requestId = (p: PlannedRequest) => `c${p.conversation}-t${p.turn}`;

/**
 * The plan as a request source, open loop (arrival kind "open"). With closedLoop, planned times
 * are ignored (every request is ready at once, in plan order, still after its previous turn):
 * for measuring a cluster's capacity on this traffic.
 */
export function traffic(o: TrafficOptions, opts: { closedLoop?: boolean } = {}): RequestSource {
  const plan = planTraffic(o);
  const seed = o.seed ?? 5;
  const system = tokensFor(seed, "system", o.systemLen);
  const user = (p: PlannedRequest) => tokensFor(seed, `c${p.conversation}/t${p.turn}`, p.userLen);
  const history = new Map<number, number[] | null>(); // conversation -> prompt + answer; null while in flight
  const held = new Map<number, PlannedRequest[]>(); // turns due while an earlier one is unanswered
  const released: PlannedRequest[] = [];
  const last = new Set(plan.filter((p) => p.last).map(requestId));
  // Turns planned before 0 are never sent; a conversation's first sent turn rebuilds them.
  const warm = new Map<number, PlannedRequest[]>();
  let i = 0;
  for (; i < plan.length && plan[i].atMs < 0; i++) {
    const p = plan[i];
    if (p.turn === 0) warm.set(p.conversation, []);
    warm.get(p.conversation)!.push(p);
  }
  const at = (p: PlannedRequest) => (opts.closedLoop ? 0 : p.atMs);
  const before = (p: PlannedRequest): number[] => {
    if (p.turn === 0) return p.system ? system : [];
    const h = history.get(p.conversation);
    if (h) return h;
    let prompt: number[] = [];
    for (const q of warm.get(p.conversation)!) {
      prompt = q.turn === 0 ? (q.system ? system : []).concat(user(q)) : prompt.concat(user(q));
      prompt = prompt.concat(answerTokens(requestId(q), q.outputLen));
    }
    warm.delete(p.conversation);
    return prompt;
  };
  const build = (p: PlannedRequest): SimRequest => {
    const tokens = before(p).concat(user(p));
    history.set(p.conversation, null);
    return { id: requestId(p), tokens, maxTokens: p.outputLen, lora: p.lora, sessionId: `c${p.conversation}`, turn: p.turn };
  };
  return {
    next(now) {
      if (released.length > 0) return build(released.shift()!);
      while (i < plan.length && at(plan[i]) <= now) {
        const p = plan[i++];
        const waiting = held.get(p.conversation);
        if (waiting) waiting.push(p);
        else if (p.turn > 0 && history.get(p.conversation) === null) held.set(p.conversation, [p]);
        else return build(p);
      }
      return null;
    },
    nextReadyAt(now) {
      return i < plan.length && at(plan[i]) > now ? at(plan[i]) : Infinity;
    },
    onFinished(req, outputTokens) {
      const c = Number(req.sessionId!.slice(1));
      if (last.has(req.id)) {
        history.delete(c);
        return;
      }
      history.set(c, req.tokens.concat(outputTokens));
      const waiting = held.get(c);
      if (waiting) {
        released.push(waiting.shift()!);
        if (waiting.length === 0) held.delete(c);
      }
    },
    exhausted: () => i >= plan.length && held.size === 0 && released.length === 0,
  };
}

export interface PriorityTrafficOptions {
  /** Lengths, turns and rate shape shared by every band (its requests, ratePerSec and seed are the bands'). */
  traffic: Omit<TrafficOptions, "requests" | "ratePerSec" | "seed">;
  /** Each band's own stream: its criticality, mean rate and seed. A band at rate 0 sends nothing. */
  bands: ReadonlyArray<{ criticality: Criticality; ratePerSec: number; seed: number }>;
  /** How long each band sends: its request count is rate x duration. */
  durationMs: number;
}

/**
 * Traffic of several criticalities at once: one independent traffic() stream per band (its own
 * seed, so its own system prompt, conversations and arrival times), all starting at 0, merged
 * into one source whose requests carry their band's criticality (ids prefixed "critical-",
 * "standard-", "sheddable-"). A band's stream is the same whatever the other bands send, so a
 * run without one band sees exactly the same requests of the others.
 */
export function priorityTraffic(o: PriorityTrafficOptions): RequestSource {
  return mergeSources(
    o.bands
      .filter((b) => b.ratePerSec > 0)
      .map((b) => ({
        tag: `${b.criticality.toLowerCase()}-`,
        criticality: b.criticality,
        source: traffic({ ...o.traffic, requests: Math.max(1, Math.round((b.ratePerSec * o.durationMs) / 1000)), ratePerSec: b.ratePerSec, seed: b.seed }),
      })),
  );
}
