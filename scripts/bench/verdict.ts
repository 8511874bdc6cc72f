// The project's bar, checked per workload on TTFT p90:
//   1. wasm-epp at or below every peer strategy (ties within 3%);
//   2. wasm-epp within 1.1x of the precise oracle;
//   3. wasm-epp-default at or below least-request (ties within 3%).
// On prefill/decode workloads the peers are the strategies that route such clusters, and
// least-request is pd-least-request.
// A check whose strategies were not all run is null (neither pass nor fail).

export const PEERS = ['round-robin', 'random', 'least-request', 'gie', 'sglang-cache-aware'];
// On prefill/decode workloads: the strategies that route such clusters.
export const PD_PEERS = ['pd-round-robin', 'pd-least-request', 'sglang-pd-random', 'sglang-pd-cache-aware'];
export const TIE = 1.03;
export const PRECISE_BAR = 1.1;

export interface Check {
  pass: boolean | null;
  /** The compared p90s' ratio (ours over theirs), null when not measurable. */
  ratio: number | null;
}

export interface WorkloadVerdict {
  beats_peers: Check & { best_peer: string | null; wasm_epp_p90_ms: number | null; best_peer_p90_ms: number | null };
  near_precise: Check;
  default_vs_least_request: Check;
}

type P90s = Record<string, number>; // strategy -> TTFT p90 (ms)

function check(ours: number | undefined, theirs: number | undefined, bar: number): Check {
  if (ours === undefined || theirs === undefined || !Number.isFinite(ours) || !Number.isFinite(theirs) || theirs <= 0) return { pass: null, ratio: null };
  const ratio = ours / theirs;
  return { pass: ratio <= bar, ratio: Math.round(ratio * 1e4) / 1e4 };
}

const ms = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? null : Math.round(v * 10) / 10);

export function verdict(p90: P90s): WorkloadVerdict {
  const mine = p90['wasm-epp'];
  const peers = [...PEERS, ...PD_PEERS].filter((s) => p90[s] !== undefined && Number.isFinite(p90[s]));
  const best = peers.length ? peers.reduce((a, b) => (p90[b] < p90[a] ? b : a)) : undefined;
  const bestP90 = best === undefined ? undefined : p90[best];
  return {
    beats_peers: { ...check(mine, bestP90, TIE), best_peer: best ?? null, wasm_epp_p90_ms: ms(mine), best_peer_p90_ms: ms(bestP90) },
    near_precise: check(mine, p90.precise, PRECISE_BAR),
    default_vs_least_request: check(p90['wasm-epp-default'], p90['least-request'] ?? p90['pd-least-request'], TIE),
  };
}

/** Verdicts for every workload, from rows of (workload, strategy, TTFT p90). */
export function verdicts(rows: ReadonlyArray<{ workload: string; strategy: string; ttft_p90_ms: number }>): Record<string, WorkloadVerdict> {
  const by: Record<string, P90s> = {};
  for (const r of rows) (by[r.workload] ??= {})[r.strategy] = r.ttft_p90_ms;
  const out: Record<string, WorkloadVerdict> = {};
  for (const [w, p90] of Object.entries(by)) out[w] = verdict(p90);
  return out;
}

export const passText = (c: Check) => (c.pass === null ? 'n/a' : c.pass ? 'pass' : 'FAIL');
