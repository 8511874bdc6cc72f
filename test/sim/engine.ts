// A model-server engine modelled on vLLM v1's scheduler (vllm/v1/core/sched/scheduler.py) and
// KV-cache manager, with step times from a GPU cost model. Pure logic: no I/O, no timers, no
// randomness; the caller owns time. The same engine runs behind a real HTTP server (server.ts,
// real time scaled) and inside the discrete-event cluster driver (cluster.ts, virtual time).
//
//   const e = new Engine({ maxLoras: 2 });
//   e.submit({ id: "r1", tokens: [...], maxTokens: 100 }, now);
//   for (let r = e.step(now); r; r = e.step(now)) { now += r.durationMs; deliver(r.events); }
//
// One step() is one scheduler iteration plus one forward pass:
//  1. Running requests first, in admission order: each gets the tokens it still lacks (1 for a
//     decode, the rest of its prompt for a partial prefill), capped by what is left of the token
//     budget (maxBatchedTokens). If its KV blocks cannot be allocated, the most recently
//     admitted running request is preempted (recompute: its blocks are freed, it goes back to
//     the front of the waiting queue) until the allocation fits or the request preempted itself.
//  2. If nothing was preempted, waiting requests are admitted in FCFS order while budget,
//     maxNumSeqs and free blocks allow. A request for a LoRA adapter is skipped (kept in place)
//     when the batch already holds maxLoras other adapters. On admission the longest cached
//     prefix of full blocks is reused (at most all but the last token), the rest is scheduled
//     as a prefill chunk.
//  3. The batch's duration comes from the cost model; when a request's computed tokens reach
//     its length it samples one token. Full blocks are named by their chained hash once
//     computed, so later requests can hit them. A request finishes after exactly maxTokens
//     generated tokens (EOS is ignored), and its blocks go back to the free queue, still cached.
//
// Events carry times: 'scheduled' and 'preempted' at the step's start, 'first_token', 'token'
// and 'finished' at its end (start + durationMs). The engine's state is advanced when step()
// returns, so snapshot() between the two shows the state as of the end of the step.
//
// Prefill/decode disaggregation (SGLang's --disaggregation-mode, python/sglang/srt/disaggregation/
// prefill.py and decode.py), with `role`:
//   prefill  submit({ ..., awaitBootstrap: true }) puts a request in the bootstrap queue until
//            bootstrapped(id) (the decode side has preallocated its KV); it is then scheduled like
//            any prompt, generates exactly one token ('first_token'), and leaves the batch still
//            holding its KV blocks ('prefilled', with the chunks of KV as they were computed, so
//            the caller can time the transfer). transferDone(id) frees the blocks (their full
//            blocks stay in the prefix cache, as in SGLang's radix cache) and returns the
//            request's 'finished' event.
//   decode   submit() puts a request in the preallocation queue; preallocate(now) allocates the
//            prompt's blocks for queued requests, first come first served, while free memory
//            minus a reserve per active request (--num-reserved-decode-tokens) allows, and
//            returns their ids (the caller tells the prefill side). kvArrived(id, token) marks the
//            prompt's KV as present (no recompute) with the first token the prefill produced; the
//            next step admits it without computing anything, emits 'first_token' at the step's
//            start (SGLang streams that token while building the prebuilt batch, before the
//            forward pass) and decodes it in the same step. A preempted decode request is
//            recomputed locally.

import { BlockPool, chainHash, rootHash } from "./block-pool.ts";
import { a10Qwen7B, emptyBatch, kvCacheBlocks, StepTimer, type BatchShape, type CostModel } from "./cost-model.ts";
import {
  buckets125,
  Histogram,
  ITERATION_TOKEN_BUCKETS,
  REQUEST_LATENCY_BUCKETS,
  SGLANG_E2E_BUCKETS,
  SGLANG_ITL_BUCKETS,
  SGLANG_TTFT_BUCKETS,
  TPOT_BUCKETS,
  TTFT_BUCKETS,
} from "./histogram.ts";
import { fillerToken } from "./tokens.ts";
import { hashString } from "./rng.ts";

export interface EngineOptions {
  /** GPU and model cost model (default: Qwen2.5-7B on an A10, the seeds' deployment). */
  cost?: CostModel;
  /** Tokens per KV block (vLLM default 16). */
  blockSize?: number;
  /** KV blocks; default: what the cost model leaves after weights, LoRA slots and activations. */
  kvBlocks?: number;
  /** Most requests running at once (vLLM --max-num-seqs; default 256 for `vllm serve` on GPUs under 70 GiB). */
  maxNumSeqs?: number;
  /** Token budget per step (vLLM --max-num-batched-tokens; default 2048 for `vllm serve` on GPUs under 70 GiB). */
  maxBatchedTokens?: number;
  /** Longest sequence, prompt plus output (vLLM --max-model-len; the seeds use 8192). */
  maxModelLen?: number;
  /** Automatic prefix caching (vLLM v1 default: on). */
  enablePrefixCaching?: boolean;
  /** Distinct LoRA adapters per batch (vLLM --max-loras); 0 disables LoRA. */
  maxLoras?: number;
  /** Adapters kept in host memory (vLLM --max-cpu-loras; default maxLoras). */
  maxCpuLoras?: number;
  /** Emit a 'token' event for every generated token after the first (default true; the cluster driver turns it off). */
  tokenEvents?: boolean;
  /** Bucket boundaries of the TTFT, inter-token and e2e histograms: vLLM's (default) or SGLang's. */
  histogramBuckets?: "vllm" | "sglang";
  /** Prefill/decode disaggregation role (SGLang --disaggregation-mode); unset: both phases. */
  role?: PdRole;
  /** Decode role: tokens reserved per active request before preallocating another (SGLang --num-reserved-decode-tokens, default 512). */
  reservedDecodeTokens?: number;
}

export type PdRole = "prefill" | "decode";

/** A piece of a prefill's KV, complete at `atMs` (SGLang sends each prefill chunk's KV as it is computed). */
export interface KvChunk {
  atMs: number;
  tokens: number;
}

/** A combination of running and waiting adapters and when the engine last reported it (vllm:lora_requests_info). */
export interface LoraInfoSample {
  running: string[];
  waiting: string[];
  atMs: number;
}

export interface SubmitRequest {
  id: string;
  /** Prompt token ids. */
  tokens: ArrayLike<number>;
  /** Tokens to generate; generation always runs to exactly this many. */
  maxTokens: number;
  /** LoRA adapter name, or null/undefined for the base model. */
  lora?: string | null;
  /** Prefill role: wait in the bootstrap queue until bootstrapped(id). */
  awaitBootstrap?: boolean;
}

export type EngineEvent =
  | { type: "scheduled"; id: string; atMs: number; cachedTokens: number; queueMs: number; resumed: boolean }
  | { type: "preempted"; id: string; atMs: number }
  | { type: "first_token"; id: string; atMs: number; token: number }
  | { type: "token"; id: string; atMs: number; token: number; index: number }
  | {
      type: "finished";
      id: string;
      atMs: number;
      reason: "length";
      promptTokens: number;
      outputTokens: number[];
      cachedTokens: number;
      preemptions: number;
      ttftMs: number;
      e2eMs: number;
    }
  | {
      /** Prefill role: the prompt is computed and its first token sampled; the KV is held for the transfer. */
      type: "prefilled";
      id: string;
      atMs: number;
      token: number;
      promptTokens: number;
      cachedTokens: number;
      /** The prompt's KV in the pieces it was computed in (the first piece includes the cached prefix). */
      chunks: KvChunk[];
    };

export interface StepResult {
  startMs: number;
  durationMs: number;
  events: EngineEvent[];
  /** Sequences in the batch and tokens computed. */
  seqs: number;
  tokens: number;
  /** Requests preempted in this step. */
  preempted: number;
}

export interface EngineHistograms {
  ttft: Histogram;
  tpot: Histogram;
  e2e: Histogram;
  queue: Histogram;
  inference: Histogram;
  prefill: Histogram;
  decode: Histogram;
  promptTokens: Histogram;
  generationTokens: Histogram;
  maxTokens: Histogram;
  iterationTokens: Histogram;
}

export interface EngineSnapshot {
  waiting: number;
  running: number;
  /** Fraction of KV blocks in use by requests (vLLM kv_cache_usage_perc). */
  kvUsage: number;
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  /** Blocks holding cached prefixes (in use or free). */
  kvBlocksCached: number;
  blockSize: number;
  maxNumSeqs: number;
  maxBatchedTokens: number;
  maxModelLen: number;
  prefixCachingEnabled: boolean;
  /** Counters since start. */
  prefixCacheQueries: number;
  prefixCacheHits: number;
  promptTokens: number;
  generationTokens: number;
  preemptions: number;
  finished: number;
  steps: number;
  busyMs: number;
  /** null when LoRA is disabled. */
  lora: { maxLoras: number; running: string[]; waiting: string[] } | null;
  /** Live histograms (seconds and token counts as vLLM reports them); read only. */
  histograms: EngineHistograms;
  /** Disaggregation queues (only with a role): SGLang's bootstrap / inflight (prefill) and prealloc / transfer (decode) queues. */
  pd?: PdSnapshot;
}

export interface PdSnapshot {
  role: PdRole;
  /** Prefill: waiting for the decode side's preallocation. */
  bootstrapQueue: number;
  /** Prefill: computed, holding their KV until the transfer completes. */
  inflightQueue: number;
  /** Decode: waiting for memory to preallocate their KV. */
  preallocQueue: number;
  /** Decode: preallocated, waiting for the KV to arrive. */
  transferQueue: number;
}

const enum Status {
  Waiting,
  Running,
  Finished,
  Bootstrap, // prefill: waiting for the decode side's preallocation
  Transferring, // prefill: computed, holding its KV for the transfer
  Prealloc, // decode: waiting for memory
  AwaitingKv, // decode: blocks allocated, KV not arrived
  Prebuilt, // decode: KV arrived, not yet in the batch
}

class Req {
  readonly tokens: number[]; // prompt, then generated tokens
  readonly seed: number;
  readonly root: number;
  status = Status.Waiting;
  numComputed = 0;
  blocks: number[] = [];
  hashes: number[] = []; // chained hashes of full blocks, computed lazily
  numCachedBlocks = 0; // leading blocks already named in the pool
  preemptions = 0;
  cachedTokens = -1; // prefix hit at first admission
  firstScheduledMs = -1;
  firstTokenMs = -1;
  lastTokenMs = -1;
  chunks: KvChunk[] | null = null; // prefill role: KV computed so far, in pieces
  sentTokens = 0;

  constructor(
    readonly id: string,
    prompt: ArrayLike<number>,
    readonly numPrompt: number,
    readonly maxTokens: number,
    readonly lora: string | null,
    readonly arrivalMs: number,
  ) {
    this.tokens = Array.from(prompt);
    this.seed = hashString(id);
    this.root = rootHash(lora);
  }

  get numTokens(): number {
    return this.tokens.length;
  }

  get numOutput(): number {
    return this.tokens.length - this.numPrompt;
  }

  hash(block: number, blockSize: number): number {
    const hs = this.hashes;
    while (hs.length <= block) {
      const j = hs.length;
      hs.push(chainHash(j === 0 ? this.root : hs[j - 1], this.tokens, j * blockSize, blockSize));
    }
    return hs[block];
  }
}

export class Engine {
  readonly cost: CostModel;
  readonly timer: StepTimer;
  readonly blockSize: number;
  readonly maxNumSeqs: number;
  readonly maxBatchedTokens: number;
  readonly maxModelLen: number;
  readonly enablePrefixCaching: boolean;
  readonly maxLoras: number;
  readonly maxCpuLoras: number;
  readonly tokenEvents: boolean;
  readonly pool: BlockPool;
  readonly role: PdRole | null;
  readonly reservedDecodeTokens: number;

  private readonly requests = new Map<string, Req>();
  private waiting: Req[] = [];
  private running: Req[] = [];
  private readonly gpuLoras: string[] = []; // LRU: most recently used last
  private readonly cpuLoras: string[] = [];
  private readonly batch: BatchShape = emptyBatch();
  private readonly scheduledReqs: Req[] = [];
  private readonly scheduledTokens: number[] = [];
  private readonly scheduledLoras = new Set<string>();
  // Disaggregation queues (empty without a role).
  private bootstrapQueue: Req[] = [];
  private readonly inflight = new Set<Req>();
  private preallocQueue: Req[] = [];
  private readonly awaitingKv = new Set<Req>();
  private prebuilt: Req[] = [];

  private prefixQueries = 0;
  private prefixHits = 0;
  private promptTokenCount = 0;
  private generationTokenCount = 0;
  private preemptionCount = 0;
  private finishedCount = 0;
  private stepCount = 0;
  private busy = 0;
  private readonly loraInfo = new Map<string, LoraInfoSample>();
  readonly histograms: EngineHistograms;

  constructor(opts: EngineOptions = {}) {
    this.cost = opts.cost ?? a10Qwen7B();
    this.timer = new StepTimer(this.cost);
    this.blockSize = opts.blockSize ?? 16;
    this.maxNumSeqs = opts.maxNumSeqs ?? 256;
    this.maxBatchedTokens = opts.maxBatchedTokens ?? 2048;
    this.maxModelLen = opts.maxModelLen ?? 8192;
    this.role = opts.role ?? null;
    if (this.role !== null && this.role !== "prefill" && this.role !== "decode") throw new RangeError(`role must be "prefill" or "decode", got ${this.role}`);
    this.reservedDecodeTokens = opts.reservedDecodeTokens ?? 512;
    // SGLang's decode side keeps no prefix cache unless --disaggregation-decode-enable-radix-cache.
    this.enablePrefixCaching = opts.enablePrefixCaching ?? this.role !== "decode";
    this.maxLoras = opts.maxLoras ?? 0;
    this.maxCpuLoras = Math.max(this.maxLoras, opts.maxCpuLoras ?? this.maxLoras);
    this.tokenEvents = opts.tokenEvents ?? true;
    const blocks = opts.kvBlocks ?? kvCacheBlocks(this.cost, this.blockSize, this.maxLoras);
    if (blocks * this.blockSize < this.maxModelLen) {
      throw new Error(`KV cache of ${blocks} blocks x ${this.blockSize} tokens cannot hold one sequence of maxModelLen ${this.maxModelLen}`);
    }
    for (const [name, v] of [["maxNumSeqs", this.maxNumSeqs], ["maxBatchedTokens", this.maxBatchedTokens], ["blockSize", this.blockSize]] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    this.pool = new BlockPool(blocks);
    const sglang = opts.histogramBuckets === "sglang";
    this.histograms = {
      ttft: new Histogram(sglang ? SGLANG_TTFT_BUCKETS : TTFT_BUCKETS),
      tpot: new Histogram(sglang ? SGLANG_ITL_BUCKETS : TPOT_BUCKETS),
      e2e: new Histogram(sglang ? SGLANG_E2E_BUCKETS : REQUEST_LATENCY_BUCKETS),
      queue: new Histogram(REQUEST_LATENCY_BUCKETS),
      inference: new Histogram(REQUEST_LATENCY_BUCKETS),
      prefill: new Histogram(REQUEST_LATENCY_BUCKETS),
      decode: new Histogram(REQUEST_LATENCY_BUCKETS),
      promptTokens: new Histogram(buckets125(this.maxModelLen)),
      generationTokens: new Histogram(buckets125(this.maxModelLen)),
      maxTokens: new Histogram(buckets125(this.maxModelLen)),
      iterationTokens: new Histogram(ITERATION_TOKEN_BUCKETS),
    };
  }

  /**
   * Queues a request. Throws an EngineError (status 400, vLLM's wording) when it cannot fit in
   * maxModelLen, or when its id is already in use.
   */
  submit(req: SubmitRequest, nowMs: number): void {
    const n = req.tokens.length;
    if (this.requests.has(req.id)) throw new EngineError(400, `request id ${req.id} is already in use`);
    if (n === 0) throw new EngineError(400, "The prompt cannot be empty.");
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1) throw new EngineError(400, `max_tokens must be at least 1, got ${req.maxTokens}.`);
    if (n + req.maxTokens > this.maxModelLen) {
      throw new EngineError(
        400,
        `This model's maximum context length is ${this.maxModelLen} tokens. However, you requested ${n + req.maxTokens} tokens (${n} in the messages, ${req.maxTokens} in the completion). Please reduce the length of the messages or completion.`,
      );
    }
    const lora = req.lora ?? null;
    if (lora !== null && this.maxLoras === 0) throw new EngineError(400, `LoRA adapter ${lora} requested but LoRA is not enabled`);
    // A prefill server generates exactly one token whatever the request asks for (SGLang sets
    // max_new_tokens = 1 once the request passed validation).
    const r = new Req(req.id, req.tokens, n, this.role === "prefill" ? 1 : req.maxTokens, lora, nowMs);
    this.requests.set(r.id, r);
    if (this.role === "prefill") {
      r.chunks = [];
      if (req.awaitBootstrap) {
        r.status = Status.Bootstrap;
        this.bootstrapQueue.push(r);
        return;
      }
    } else if (this.role === "decode") {
      r.status = Status.Prealloc;
      this.preallocQueue.push(r);
      return;
    }
    this.waiting.push(r);
  }

  /** Prefill role: the decode side has preallocated this request's KV; it may now be scheduled. */
  bootstrapped(id: string, _nowMs: number): boolean {
    const r = this.requests.get(id);
    if (!r || r.status !== Status.Bootstrap) return false;
    this.bootstrapQueue.splice(this.bootstrapQueue.indexOf(r), 1);
    r.status = Status.Waiting;
    this.waiting.push(r);
    return true;
  }

  /**
   * Prefill role: the KV of a 'prefilled' request has reached the decode side. Frees its blocks
   * (full blocks stay cached) and returns its 'finished' event, or null if it is not transferring.
   */
  transferDone(id: string, nowMs: number): Extract<EngineEvent, { type: "finished" }> | null {
    const r = this.requests.get(id);
    if (!r || r.status !== Status.Transferring) return null;
    this.inflight.delete(r);
    const events: EngineEvent[] = [];
    this.finish(r, nowMs, events);
    return events[0] as Extract<EngineEvent, { type: "finished" }>;
  }

  /**
   * Decode role: preallocates the KV of queued requests, first come first served, while the
   * free blocks (cached ones included) minus `reservedDecodeTokens` for every active request
   * leave room for the prompt plus its own reserve. Returns the ids preallocated now.
   */
  preallocate(_nowMs: number): string[] {
    const out: string[] = [];
    if (this.role !== "decode") return out;
    const bs = this.blockSize;
    while (this.preallocQueue.length > 0) {
      const r = this.preallocQueue[0];
      const active = this.running.length + this.waiting.length + this.awaitingKv.size + this.prebuilt.length;
      const allocatable = this.pool.numFree * bs - this.reservedDecodeTokens * active;
      const need = Math.ceil(r.numPrompt / bs);
      if (r.numPrompt + this.reservedDecodeTokens > allocatable || need > this.pool.numFree) break;
      this.preallocQueue.shift();
      for (let k = 0; k < need; k++) r.blocks.push(this.pool.allocate());
      r.status = Status.AwaitingKv;
      this.awaitingKv.add(r);
      out.push(r.id);
    }
    return out;
  }

  /**
   * Decode role: a preallocated request's KV has arrived with the first token the prefill side
   * produced (and the prefix-cache hit it reported). The next step admits it. Returns false if
   * the request is not waiting for its KV.
   */
  kvArrived(id: string, firstToken: number, _nowMs: number, cachedTokens = 0): boolean {
    const r = this.requests.get(id);
    if (!r || r.status !== Status.AwaitingKv) return false;
    this.awaitingKv.delete(r);
    r.tokens.push(firstToken);
    r.numComputed = r.numPrompt;
    r.cachedTokens = cachedTokens;
    r.status = Status.Prebuilt;
    this.prebuilt.push(r);
    return true;
  }

  /** Drops a request (client went away). Returns whether it was known. */
  abort(id: string): boolean {
    const r = this.requests.get(id);
    if (!r) return false;
    this.requests.delete(id);
    if (r.status === Status.Running) {
      this.running.splice(this.running.indexOf(r), 1);
      this.freeBlocks(r);
    } else if (r.status === Status.Waiting) {
      this.waiting.splice(this.waiting.indexOf(r), 1);
    } else if (r.status === Status.Bootstrap) {
      this.bootstrapQueue.splice(this.bootstrapQueue.indexOf(r), 1);
    } else if (r.status === Status.Transferring) {
      this.inflight.delete(r);
      this.freeBlocks(r);
    } else if (r.status === Status.Prealloc) {
      this.preallocQueue.splice(this.preallocQueue.indexOf(r), 1);
    } else if (r.status === Status.AwaitingKv) {
      this.awaitingKv.delete(r);
      this.freeBlocks(r);
    } else if (r.status === Status.Prebuilt) {
      this.prebuilt.splice(this.prebuilt.indexOf(r), 1);
      this.freeBlocks(r);
    }
    r.status = Status.Finished;
    return true;
  }

  hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0 || this.prebuilt.length > 0;
  }

  /** Where a known request stands: "waiting" | "running" | "bootstrap" | "transferring" | "prealloc" | "awaiting_kv" | "prebuilt"; undefined if unknown. */
  stateOf(id: string): string | undefined {
    const r = this.requests.get(id);
    if (!r) return undefined;
    return ["waiting", "running", "finished", "bootstrap", "transferring", "prealloc", "awaiting_kv", "prebuilt"][r.status];
  }

  /**
   * One scheduler iteration and forward pass starting at nowMs; null when there is nothing to do
   * (with a role, also when everything queued waits for memory held by KV transfers: call again
   * once a transfer completed).
   */
  step(nowMs: number): StepResult | null {
    if (!this.hasWork()) return null;
    const events: EngineEvent[] = [];
    const reqs = this.scheduledReqs;
    const counts = this.scheduledTokens;
    reqs.length = 0;
    counts.length = 0;
    let budget = this.maxBatchedTokens;
    let preempted = 0;
    const bs = this.blockSize;

    // 0. Decode role: requests whose KV arrived join the batch without computing anything; their
    // first token (the prefill side's) is delivered now.
    let admittedPrebuilt = 0;
    while (this.prebuilt.length > 0 && this.running.length < this.maxNumSeqs) {
      const r = this.prebuilt.shift()!;
      admittedPrebuilt++;
      r.status = Status.Running;
      this.running.push(r);
      r.firstScheduledMs = nowMs;
      r.firstTokenMs = nowMs;
      r.lastTokenMs = nowMs;
      this.histograms.queue.observe((nowMs - r.arrivalMs) / 1000);
      this.histograms.ttft.observe((nowMs - r.arrivalMs) / 1000);
      this.generationTokenCount++;
      events.push({ type: "scheduled", id: r.id, atMs: nowMs, cachedTokens: r.cachedTokens, queueMs: nowMs - r.arrivalMs, resumed: false });
      events.push({ type: "first_token", id: r.id, atMs: nowMs, token: r.tokens[r.numPrompt] });
      if (r.numOutput >= r.maxTokens) this.finish(r, nowMs, events);
    }
    if (admittedPrebuilt > 0) this.compactRunning();

    // 1. Running requests.
    let i = 0;
    while (i < this.running.length && budget > 0) {
      const r = this.running[i];
      let n = Math.min(r.numTokens - r.numComputed, budget, this.maxModelLen - 1 - r.numComputed);
      if (n <= 0) {
        i++;
        continue;
      }
      let ok = false;
      for (;;) {
        if (this.canGrow(r, n)) {
          ok = true;
          break;
        }
        const victim = this.running.pop()!;
        this.preempt(victim, nowMs, events);
        preempted++;
        if (victim === r) break;
      }
      if (!ok) break;
      this.grow(r, n);
      reqs.push(r);
      counts.push(n);
      budget -= n;
      i++;
    }

    // LoRA adapters of the running requests scheduled so far.
    const loras = this.scheduledLoras;
    loras.clear();
    if (this.maxLoras > 0) for (const r of reqs) if (r.lora !== null) loras.add(r.lora);

    // 2. Waiting requests, only when nothing was preempted.
    if (preempted === 0) {
      const skipped: Req[] = [];
      while (this.waiting.length > 0 && budget > 0) {
        if (this.running.length >= this.maxNumSeqs) break;
        const r = this.waiting[0];
        if (r.lora !== null && loras.size >= this.maxLoras && !loras.has(r.lora)) {
          skipped.push(this.waiting.shift()!);
          continue;
        }
        const hit = r.numComputed === 0 ? this.longestCacheHit(r) : [];
        const hitTokens = hit.length * bs;
        const n = Math.min(r.numTokens - hitTokens, budget);
        let evictable = 0;
        for (const b of hit) if (this.pool.refCount(b) === 0) evictable++;
        const need = Math.ceil((hitTokens + n) / bs) - hit.length;
        if (need > this.pool.numFree - evictable) break;
        this.waiting.shift();
        for (const b of hit) this.pool.touch(b);
        r.blocks = hit;
        r.numCachedBlocks = hit.length;
        r.numComputed = hitTokens;
        this.grow(r, n);
        if (this.enablePrefixCaching) {
          this.prefixQueries += r.numTokens;
          this.prefixHits += hitTokens;
        }
        const resumed = r.firstScheduledMs >= 0;
        if (!resumed) {
          r.firstScheduledMs = nowMs;
          r.cachedTokens = hitTokens;
          this.histograms.queue.observe((nowMs - r.arrivalMs) / 1000);
        }
        events.push({ type: "scheduled", id: r.id, atMs: nowMs, cachedTokens: hitTokens, queueMs: nowMs - r.arrivalMs, resumed });
        r.status = Status.Running;
        this.running.push(r);
        if (r.lora !== null) loras.add(r.lora);
        reqs.push(r);
        counts.push(n);
        budget -= n;
      }
      if (skipped.length > 0) this.waiting.unshift(...skipped);
    }

    if (reqs.length === 0) {
      if (admittedPrebuilt > 0) return { startMs: nowMs, durationMs: 0, events, seqs: 0, tokens: 0, preempted };
      // Disaggregation: memory held for KV transfers blocks the queue until a transfer completes.
      if (preempted === 0 && (this.inflight.size > 0 || this.awaitingKv.size > 0)) return null;
      if (preempted > 0) {
        // Everything that could run was preempted this step (cannot happen with a KV cache that
        // holds maxModelLen); report the host time spent.
        return { startMs: nowMs, durationMs: this.cost.stepOverheadMs, events, seqs: 0, tokens: 0, preempted };
      }
      throw new Error("engine has work but scheduled nothing");
    }

    // 3. Cost of the batch.
    const b = this.batch;
    b.seqs = reqs.length;
    b.tokens = 0;
    b.sampled = 0;
    b.contextRead = 0;
    b.attentionPairs = 0;
    for (let k = 0; k < reqs.length; k++) {
      const r = reqs[k];
      const n = counts[k];
      const c = r.numComputed;
      b.tokens += n;
      b.contextRead += c + n;
      b.attentionPairs += n * c + (n * (n + 1)) / 2;
      if (c + n >= r.numTokens) b.sampled++;
    }
    this.accountLoras(b);
    const durationMs = this.timer.stepMs(b);
    const endMs = nowMs + durationMs;
    this.stepCount++;
    this.busy += durationMs;
    this.histograms.iterationTokens.observe(b.tokens);

    // 4. Advance the scheduled requests.
    for (let k = 0; k < reqs.length; k++) {
      const r = reqs[k];
      if (r.status !== Status.Running) continue;
      r.numComputed += counts[k];
      if (this.enablePrefixCaching) this.cacheFullBlocks(r);
      if (r.chunks !== null) {
        // Prefill role: this step's KV is ready to be sent (from the start, cached prefix included).
        const upTo = Math.min(r.numComputed, r.numPrompt);
        if (upTo > r.sentTokens) {
          r.chunks.push({ atMs: endMs, tokens: upTo - r.sentTokens });
          r.sentTokens = upTo;
        }
      }
      if (r.numComputed < r.numTokens) continue; // partial prefill
      const index = r.numOutput;
      const token = fillerToken(r.seed, index);
      r.tokens.push(token);
      this.generationTokenCount++;
      if (index === 0) {
        r.firstTokenMs = endMs;
        this.promptTokenCount += r.numPrompt;
        this.histograms.ttft.observe((endMs - r.arrivalMs) / 1000);
        events.push({ type: "first_token", id: r.id, atMs: endMs, token });
        if (r.chunks !== null) {
          // Prefill role: out of the batch, KV held until the transfer completes.
          r.status = Status.Transferring;
          r.lastTokenMs = endMs;
          this.inflight.add(r);
          events.push({ type: "prefilled", id: r.id, atMs: endMs, token, promptTokens: r.numPrompt, cachedTokens: r.cachedTokens, chunks: r.chunks.slice() });
          continue;
        }
      } else {
        this.histograms.tpot.observe((endMs - r.lastTokenMs) / 1000);
        if (this.tokenEvents) events.push({ type: "token", id: r.id, atMs: endMs, token, index });
      }
      r.lastTokenMs = endMs;
      if (r.numOutput >= r.maxTokens || r.numTokens >= this.maxModelLen) this.finish(r, endMs, events);
    }
    if (this.running.length !== 0) this.compactRunning();
    if (this.maxLoras > 0) this.recordLoraInfo(endMs);

    return { startMs: nowMs, durationMs, events, seqs: reqs.length, tokens: b.tokens, preempted };
  }

  /**
   * Tokens of a prompt whose KV is in this engine's cache right now (full blocks from the start,
   * at most all but the last token: what an admission would reuse). Changes nothing.
   */
  cachedPrefixTokens(tokens: ArrayLike<number>, lora: string | null = null): number {
    if (!this.enablePrefixCaching) return 0;
    const bs = this.blockSize;
    const maxBlocks = Math.floor((tokens.length - 1) / bs);
    let parent = rootHash(lora);
    let j = 0;
    for (; j < maxBlocks; j++) {
      parent = chainHash(parent, tokens, j * bs, bs);
      if (this.pool.lookup(parent) === undefined) break;
    }
    return j * bs;
  }

  snapshot(): EngineSnapshot {
    const snap: EngineSnapshot = {
      waiting: this.waiting.length + this.prebuilt.length,
      running: this.running.length,
      kvUsage: this.pool.usage(),
      kvBlocksUsed: this.pool.numBlocks - this.pool.numFree,
      kvBlocksTotal: this.pool.numBlocks,
      kvBlocksCached: this.pool.numCached,
      blockSize: this.blockSize,
      maxNumSeqs: this.maxNumSeqs,
      maxBatchedTokens: this.maxBatchedTokens,
      maxModelLen: this.maxModelLen,
      prefixCachingEnabled: this.enablePrefixCaching,
      prefixCacheQueries: this.prefixQueries,
      prefixCacheHits: this.prefixHits,
      promptTokens: this.promptTokenCount,
      generationTokens: this.generationTokenCount,
      preemptions: this.preemptionCount,
      finished: this.finishedCount,
      steps: this.stepCount,
      busyMs: this.busy,
      lora: this.maxLoras > 0 ? { maxLoras: this.maxLoras, running: distinctLoras(this.running), waiting: distinctLoras(this.waiting) } : null,
      histograms: this.histograms,
    };
    if (this.role !== null) {
      snap.pd = {
        role: this.role,
        bootstrapQueue: this.bootstrapQueue.length,
        inflightQueue: this.inflight.size,
        preallocQueue: this.preallocQueue.length,
        transferQueue: this.awaitingKv.size,
      };
    }
    return snap;
  }

  /**
   * Every combination of running and waiting adapters seen at the end of a step, with the last
   * time it was seen (vLLM keeps one vllm:lora_requests_info series per combination, valued at
   * the time it was last set). Empty when LoRA is disabled; at most the 64 most recent.
   */
  loraInfoHistory(): LoraInfoSample[] {
    return [...this.loraInfo.values()];
  }

  /** Ids of running and waiting requests, in queue order (for tests and tools). */
  queues(): { running: string[]; waiting: string[] } {
    return { running: this.running.map((r) => r.id), waiting: this.waiting.map((r) => r.id) };
  }

  /** Prompt and generated tokens of a known request so far (a copy). */
  tokensOf(id: string): number[] | undefined {
    return this.requests.get(id)?.tokens.slice();
  }

  // ---- internals ----

  private longestCacheHit(r: Req): number[] {
    if (!this.enablePrefixCaching) return [];
    const bs = this.blockSize;
    const maxBlocks = Math.floor((r.numTokens - 1) / bs);
    const out: number[] = [];
    for (let j = 0; j < maxBlocks; j++) {
      const b = this.pool.lookup(r.hash(j, bs));
      if (b === undefined) break;
      out.push(b);
    }
    return out;
  }

  /** Whether r can hold n more computed tokens. */
  private canGrow(r: Req, n: number): boolean {
    const need = Math.ceil((r.numComputed + n) / this.blockSize) - r.blocks.length;
    return need <= this.pool.numFree;
  }

  /** Allocates the blocks r needs to hold n more computed tokens (caller checked they exist). */
  private grow(r: Req, n: number): void {
    const need = Math.ceil((r.numComputed + n) / this.blockSize) - r.blocks.length;
    for (let k = 0; k < need; k++) r.blocks.push(this.pool.allocate());
  }

  private cacheFullBlocks(r: Req): void {
    const full = Math.floor(r.numComputed / this.blockSize);
    for (let j = r.numCachedBlocks; j < full; j++) this.pool.cache(r.blocks[j], r.hash(j, this.blockSize));
    if (full > r.numCachedBlocks) r.numCachedBlocks = full;
  }

  private freeBlocks(r: Req): void {
    // Last block first: the tail of a sequence is evicted before its prefix.
    for (let k = r.blocks.length - 1; k >= 0; k--) this.pool.release(r.blocks[k]);
    r.blocks = [];
    r.numCachedBlocks = 0;
  }

  private preempt(r: Req, nowMs: number, events: EngineEvent[]): void {
    this.freeBlocks(r);
    r.numComputed = 0;
    if (r.chunks !== null) {
      r.chunks.length = 0; // recomputed, so sent again
      r.sentTokens = 0;
    }
    r.status = Status.Waiting;
    r.preemptions++;
    this.preemptionCount++;
    this.waiting.unshift(r);
    // A request preempted after being scheduled in this very step loses that schedule.
    const k = this.scheduledReqs.indexOf(r);
    if (k >= 0) {
      this.scheduledReqs.splice(k, 1);
      this.scheduledTokens.splice(k, 1);
    }
    events.push({ type: "preempted", id: r.id, atMs: nowMs });
  }

  private finish(r: Req, endMs: number, events: EngineEvent[]): void {
    r.status = Status.Finished;
    this.freeBlocks(r);
    this.requests.delete(r.id);
    this.finishedCount++;
    const h = this.histograms;
    h.e2e.observe((endMs - r.arrivalMs) / 1000);
    h.inference.observe((endMs - r.firstScheduledMs) / 1000);
    h.prefill.observe((r.firstTokenMs - r.firstScheduledMs) / 1000);
    h.decode.observe((endMs - r.firstTokenMs) / 1000);
    h.promptTokens.observe(r.numPrompt);
    h.generationTokens.observe(r.numOutput);
    h.maxTokens.observe(r.maxTokens);
    events.push({
      type: "finished",
      id: r.id,
      atMs: endMs,
      reason: "length",
      promptTokens: r.numPrompt,
      outputTokens: r.tokens.slice(r.numPrompt),
      cachedTokens: r.cachedTokens,
      preemptions: r.preemptions,
      ttftMs: r.firstTokenMs - r.arrivalMs,
      e2eMs: endMs - r.arrivalMs,
    });
  }

  /** Removes finished requests from the running list, keeping order. */
  private compactRunning(): void {
    const run = this.running;
    let w = 0;
    for (let k = 0; k < run.length; k++) if (run[k].status === Status.Running) run[w++] = run[k];
    run.length = w;
  }

  private recordLoraInfo(atMs: number): void {
    const running = distinctLoras(this.running);
    const waiting = distinctLoras(this.waiting);
    const key = running.join(",") + "|" + waiting.join(",");
    this.loraInfo.delete(key);
    this.loraInfo.set(key, { running, waiting, atMs });
    if (this.loraInfo.size > 64) this.loraInfo.delete(this.loraInfo.keys().next().value!);
  }

  /** Adapters in the batch, loaded into GPU slots (LRU) and the CPU cache as needed. */
  private accountLoras(b: BatchShape): void {
    b.loraAdapters = 0;
    b.loraSwapIns = 0;
    b.loraDiskLoads = 0;
    if (this.maxLoras === 0) return;
    const inBatch = new Set<string>();
    for (const r of this.scheduledReqs) if (r.lora !== null) inBatch.add(r.lora);
    b.loraAdapters = inBatch.size;
    for (const name of inBatch) {
      if (touchLru(this.gpuLoras, name, this.maxLoras, inBatch)) {
        b.loraSwapIns++;
        if (touchLru(this.cpuLoras, name, this.maxCpuLoras, inBatch)) b.loraDiskLoads++;
      } else {
        touchLru(this.cpuLoras, name, this.maxCpuLoras, inBatch);
      }
    }
  }
}

/** Moves name to the most-recent end of an LRU list of capacity cap; returns true if it was missing. */
function touchLru(list: string[], name: string, cap: number, pinned: Set<string>): boolean {
  const k = list.indexOf(name);
  if (k >= 0) {
    list.splice(k, 1);
    list.push(name);
    return false;
  }
  if (list.length >= cap) {
    const victim = list.findIndex((x) => !pinned.has(x));
    list.splice(victim >= 0 ? victim : 0, 1);
  }
  list.push(name);
  return true;
}

function distinctLoras(reqs: readonly Req[]): string[] {
  const out: string[] = [];
  for (const r of reqs) if (r.lora !== null && !out.includes(r.lora)) out.push(r.lora);
  return out;
}

/** A request the engine refuses, with the HTTP status a server would answer. */
export class EngineError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "EngineError";
  }
}
