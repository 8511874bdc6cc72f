// Request sources for the cluster driver. A source hands out requests when the driver has room
// for one; multi-turn sources release a session's next turn only after its previous turn
// finished, built from what was actually generated.
//
//   randomDataset    vLLM benchmark_serving's `--dataset-name random` (the seeds' load test)
//   sharedPrefix     groups of requests sharing a long system prompt (prefix-cache routing)
//   multiTurn        chat sessions: each turn's prompt is the previous prompt, the answer and a
//                    new user message
//   fromList         a fixed list

import { Rng } from "./rng.ts";
import { REGULAR_VOCAB } from "./tokens.ts";

export interface SimRequest {
  id: string;
  /** Prompt token ids. */
  tokens: number[];
  maxTokens: number;
  lora?: string | null;
  sessionId?: string;
  /** Turn number within its session, from 0. */
  turn?: number;
  /** The request's criticality (its InferenceModel's); undefined: none declared. */
  criticality?: Criticality;
}

/** InferenceModel criticalities, highest first. */
export const CRITICALITIES = ["Critical", "Standard", "Sheddable"] as const;
export type Criticality = (typeof CRITICALITIES)[number];

export interface RequestSource {
  /** A request that may be sent at `now`, or null when none is ready. */
  next(now: number): SimRequest | null;
  /** The earliest time after `now` at which a request becomes ready without any completion (Infinity if none). */
  nextReadyAt(now: number): number;
  /** A request finished, having generated `outputTokens`. */
  onFinished?(req: SimRequest, outputTokens: readonly number[], now: number): void;
  /**
   * The router rejected a request (it never ran). Without this hook the driver reports the
   * rejection to onFinished with no output tokens, so that a conversation goes on.
   */
  onRejected?(req: SimRequest, status: number, now: number): void;
  /** No request will ever be ready again. */
  exhausted(): boolean;
}

/** A fixed list of requests, in order. */
export function fromList(requests: readonly SimRequest[]): RequestSource {
  let i = 0;
  return {
    next: () => (i < requests.length ? requests[i++] : null),
    nextReadyAt: () => Infinity,
    exhausted: () => i >= requests.length,
  };
}

/** Requests sent at given virtual times, in order (open loop). */
export function atTimes(items: ReadonlyArray<{ at: number; req: SimRequest }>): RequestSource {
  let i = 0;
  return {
    next: (now) => (i < items.length && items[i].at <= now ? items[i++].req : null),
    nextReadyAt: (now) => (i < items.length && items[i].at > now ? items[i].at : Infinity),
    exhausted: () => i >= items.length,
  };
}

export interface RandomDatasetOptions {
  numPrompts: number;
  inputLen: number;
  outputLen: number;
  /** Lengths are uniform in [len x (1 - r), len x (1 + r)]. */
  rangeRatio?: number;
  /** Random tokens shared by every prompt, before the random part. */
  prefixLen?: number;
  seed?: number;
  /** Token ids are drawn below this (the tokenizer's vocab_size: Qwen2.5 151643). */
  vocabSize?: number;
  /** Adapter per request (index -> name or null); default: base model. */
  lora?: (i: number) => string | null;
  idPrefix?: string;
}

/**
 * benchmark_serving's random dataset: a shared random prefix of prefixLen tokens, then
 * input_len_i consecutive token ids from a random offset ((offset_i + i + j) mod vocab), with
 * input_len_i and output_len_i uniform over the range. Output is exactly output_len_i tokens
 * (the benchmark sends ignore_eos).
 */
export function randomDataset(o: RandomDatasetOptions): RequestSource {
  return fromList(randomRequests(o));
}

export function randomRequests(o: RandomDatasetOptions): SimRequest[] {
  const rng = new Rng(o.seed ?? 0);
  const r = o.rangeRatio ?? 0;
  const vocab = o.vocabSize ?? REGULAR_VOCAB;
  const prefix: number[] = [];
  for (let i = 0; i < (o.prefixLen ?? 0); i++) prefix.push(rng.int(0, vocab - 1));
  const inLo = Math.floor(o.inputLen * (1 - r)), inHi = Math.floor(o.inputLen * (1 + r));
  const outLo = Math.max(1, Math.floor(o.outputLen * (1 - r))), outHi = Math.max(1, Math.floor(o.outputLen * (1 + r)));
  const out: SimRequest[] = [];
  for (let i = 0; i < o.numPrompts; i++) {
    const len = rng.int(inLo, inHi);
    const maxTokens = rng.int(outLo, outHi);
    const offset = rng.int(0, vocab - 1);
    const tokens = prefix.slice();
    for (let j = 0; j < len; j++) tokens.push((offset + i + j) % vocab);
    out.push({ id: `${o.idPrefix ?? "req"}-${i}`, tokens, maxTokens, lora: o.lora?.(i) ?? null });
  }
  return out;
}

export interface SharedPrefixOptions {
  /** Distinct system prompts. */
  groups: number;
  /** Requests per group. */
  perGroup: number;
  prefixLen: number;
  /** Tokens after the shared prefix (the user's question). */
  questionLen: number;
  outputLen: number;
  seed?: number;
}

/** Requests in random order, each a group's long system prompt followed by its own question. */
export function sharedPrefix(o: SharedPrefixOptions): RequestSource {
  const rng = new Rng(o.seed ?? 1);
  const prefixes: number[][] = [];
  for (let g = 0; g < o.groups; g++) prefixes.push(randomTokens(rng, o.prefixLen));
  const reqs: SimRequest[] = [];
  for (let g = 0; g < o.groups; g++) {
    for (let k = 0; k < o.perGroup; k++) {
      reqs.push({ id: `g${g}-q${k}`, tokens: prefixes[g].concat(randomTokens(rng, o.questionLen)), maxTokens: o.outputLen, sessionId: `g${g}` });
    }
  }
  for (let i = reqs.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [reqs[i], reqs[j]] = [reqs[j], reqs[i]];
  }
  return fromList(reqs);
}

export interface MultiTurnOptions {
  sessions: number;
  turns: number;
  /** System prompt length; shared by all sessions when sharedSystem, else one per session. */
  systemLen: number;
  sharedSystem?: boolean;
  userLen: number;
  outputLen: number;
  /** Pause between an answer and the next question. */
  thinkTimeMs?: number;
  /** Sessions start this far apart (the first at 0). */
  startGapMs?: number;
  /** A session ends early rather than exceed this many tokens (prompt + output). */
  maxModelLen?: number;
  seed?: number;
}

interface Session {
  id: string;
  turn: number;
  prompt: number[];
  readyAt: number;
}

/**
 * Chat sessions. Turn k+1's prompt is turn k's prompt, the tokens turn k generated, and a new
 * user message; it is released thinkTimeMs after turn k finished. Ready turns are handed out in
 * order of readiness.
 */
export function multiTurn(o: MultiTurnOptions): RequestSource & { completedTurns(): number } {
  const rng = new Rng(o.seed ?? 2);
  const think = o.thinkTimeMs ?? 0;
  const gap = o.startGapMs ?? 0;
  const limit = o.maxModelLen ?? Infinity;
  const shared = o.sharedSystem ? randomTokens(rng, o.systemLen) : null;
  const ready: Session[] = []; // sorted by readyAt
  const byId = new Map<string, Session>();
  let live = o.sessions;
  let completed = 0;
  const insert = (s: Session) => {
    let k = ready.length;
    while (k > 0 && ready[k - 1].readyAt > s.readyAt) k--;
    ready.splice(k, 0, s);
  };
  for (let i = 0; i < o.sessions; i++) {
    const system = shared ?? randomTokens(rng, o.systemLen);
    const s: Session = { id: `s${i}`, turn: 0, prompt: system.concat(randomTokens(rng, o.userLen)), readyAt: i * gap };
    byId.set(s.id, s);
    insert(s);
  }
  return {
    next(now) {
      if (ready.length === 0 || ready[0].readyAt > now) return null;
      const s = ready.shift()!;
      return { id: `${s.id}-t${s.turn}`, tokens: s.prompt, maxTokens: o.outputLen, sessionId: s.id, turn: s.turn };
    },
    nextReadyAt(now) {
      for (const s of ready) if (s.readyAt > now) return s.readyAt;
      return Infinity;
    },
    onFinished(req, outputTokens, now) {
      const s = req.sessionId !== undefined ? byId.get(req.sessionId) : undefined;
      if (!s) return;
      completed++;
      s.turn++;
      const nextPrompt = s.prompt.concat(outputTokens, randomTokens(rng, o.userLen));
      if (s.turn >= o.turns || nextPrompt.length + o.outputLen > limit) {
        live--;
        return;
      }
      s.prompt = nextPrompt;
      s.readyAt = now + think;
      insert(s);
    },
    exhausted: () => live === 0,
    completedTurns: () => completed,
  };
}

function randomTokens(rng: Rng, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(rng.int(0, REGULAR_VOCAB - 1));
  return out;
}

/** One part of a merged source (mergeSources). */
export interface TaggedSource {
  /** Prefixed to the ids (and session ids) of this part's requests, keeping them unique. */
  tag: string;
  source: RequestSource;
  /** Set on every request of this part. */
  criticality?: Criticality;
}

/**
 * Several sources as one: each request is tagged (id and session id prefixed with its part's tag,
 * its part's criticality set), and whichever part has a request ready hands it out, parts in
 * order when several do. Completions and rejections go back to the part that made the request,
 * with the request as that part made it.
 */
export function mergeSources(parts: readonly TaggedSource[]): RequestSource {
  const origin = new Map<string, { part: TaggedSource; req: SimRequest }>();
  const back = (req: SimRequest) => {
    const o = origin.get(req.id);
    if (o) origin.delete(req.id);
    return o;
  };
  return {
    next(now) {
      for (const part of parts) {
        const req = part.source.next(now);
        if (!req) continue;
        const out: SimRequest = { ...req, id: `${part.tag}${req.id}` };
        if (req.sessionId !== undefined) out.sessionId = `${part.tag}${req.sessionId}`;
        if (part.criticality !== undefined) out.criticality = part.criticality;
        origin.set(out.id, { part, req });
        return out;
      }
      return null;
    },
    nextReadyAt: (now) => parts.reduce((t, p) => Math.min(t, p.source.nextReadyAt(now)), Infinity),
    onFinished(req, outputTokens, now) {
      const o = back(req);
      o?.part.source.onFinished?.(o.req, outputTokens, now);
    },
    onRejected(req, status, now) {
      const o = back(req);
      if (!o) return;
      if (o.part.source.onRejected) o.part.source.onRejected(o.req, status, now);
      else o.part.source.onFinished?.(o.req, [], now);
    },
    exhausted: () => parts.every((p) => p.source.exhausted()),
  };
}
