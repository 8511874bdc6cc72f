// The project's bar, checked per workload on TTFT p90:
//   1. wasm-epp at or below every peer strategy (ties within 3%);
//   2. wasm-epp within 1.1x of the precise oracle;
//   3. wasm-epp-default at or below least-request (ties within 3%).
// On prefill/decode workloads the peers are the strategies that route such clusters, and
// least-request is pd-least-request.
// A check whose strategies were not all run is null (neither pass nor fail).
//
// Workloads with criticalities are not held to that bar (the strategies there answer different
// requests) but to the priority checks, from each strategy's by_criticality:
//   1. nothing lost: for every strategy and every band, sent == completed + rejected, and every
//      rejection a 429;
//   2. Critical never rejected by wasm-epp;
//   3. on an overloaded workload with a baseline (the same Critical requests without the
//      overload): wasm-epp's Critical TTFT p90 within 2x of its baseline's;
//   4. and there, gie's Critical TTFT p90 above its baseline's (it grows with the overload).

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

export const CRITICAL_LATENCY_BAR = 2;

interface BandCounts {
  sent: number;
  completed: number;
  rejected: number;
  ttft_p90_ms: number;
}

/** What the priority checks read from a row. */
export interface PriorityRow {
  workload: string;
  strategy: string;
  by_criticality: Record<string, BandCounts>;
  /** Rejections with a status other than 429. */
  rejected_not_429?: number;
  /** The workload's baseline (the same without its overload), if it has one. */
  baseline?: string;
}

export interface PriorityVerdict {
  nothing_lost: { pass: boolean; problems: string[] };
  critical_never_rejected: { pass: boolean | null; rejected: number | null };
  critical_latency_holds: Check & { wasm_epp_p90_ms: number | null; baseline_p90_ms: number | null };
  gie_critical_grows: Check & { gie_p90_ms: number | null; baseline_p90_ms: number | null };
}

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

/** The priority checks of one workload with criticalities (all its rows, and its baseline's). */
export function priorityVerdict(rows: readonly PriorityRow[], baselineRows: readonly PriorityRow[]): PriorityVerdict {
  const problems: string[] = [];
  for (const r of rows) {
    for (const [band, b] of Object.entries(r.by_criticality)) {
      if (b.sent !== b.completed + b.rejected) problems.push(`${r.strategy} ${band}: sent ${b.sent}, completed ${b.completed}, rejected ${b.rejected}`);
    }
    if (r.rejected_not_429) problems.push(`${r.strategy}: ${r.rejected_not_429} rejections not 429`);
  }
  const mine = rows.find((r) => r.strategy === 'wasm-epp');
  const p90 = (rs: readonly PriorityRow[], s: string) => rs.find((r) => r.strategy === s)?.by_criticality.Critical?.ttft_p90_ms;
  const critical = mine?.by_criticality.Critical;
  const ours = p90(rows, 'wasm-epp'), oursBase = p90(baselineRows, 'wasm-epp');
  const gie = p90(rows, 'gie'), gieBase = p90(baselineRows, 'gie');
  // gie's overload p90 over its baseline's: it grew when above 1.
  const g = check(gie, gieBase, Infinity);
  return {
    nothing_lost: { pass: problems.length === 0, problems },
    critical_never_rejected: critical ? { pass: critical.rejected === 0, rejected: critical.rejected } : { pass: null, rejected: null },
    critical_latency_holds: { ...check(ours, oursBase, CRITICAL_LATENCY_BAR), wasm_epp_p90_ms: ms(ours), baseline_p90_ms: ms(oursBase) },
    gie_critical_grows: { pass: g.ratio === null ? null : g.ratio > 1, ratio: g.ratio, gie_p90_ms: ms(gie), baseline_p90_ms: ms(gieBase) },
  };
}

/** Verdicts for every workload without criticalities, from rows of (workload, strategy, TTFT p90). */
export function verdicts(rows: ReadonlyArray<{ workload: string; strategy: string; ttft_p90_ms: number; by_criticality?: unknown }>): Record<string, WorkloadVerdict> {
  const by: Record<string, P90s> = {};
  for (const r of rows) if (!r.by_criticality) (by[r.workload] ??= {})[r.strategy] = r.ttft_p90_ms;
  const out: Record<string, WorkloadVerdict> = {};
  for (const [w, p90] of Object.entries(by)) out[w] = verdict(p90);
  return out;
}

/** The priority checks of every workload with criticalities (rows with by_criticality). */
export function priorityVerdicts(rows: ReadonlyArray<{ workload: string; strategy: string } & Partial<PriorityRow>>): Record<string, PriorityVerdict> {
  const with_ = rows.filter((r): r is PriorityRow => r.by_criticality !== undefined);
  const out: Record<string, PriorityVerdict> = {};
  for (const w of new Set(with_.map((r) => r.workload))) {
    const mine = with_.filter((r) => r.workload === w);
    const baseline = mine.find((r) => r.baseline)?.baseline;
    out[w] = priorityVerdict(mine, baseline ? with_.filter((r) => r.workload === baseline) : []);
  }
  return out;
}

export const passText = (c: { pass: boolean | null }) => (c.pass === null ? 'n/a' : c.pass ? 'pass' : 'FAIL');
