// Envoy's stats store as far as proxy_define_metric & co. reach it.
//
// Every name defined from Wasm is stored as `wasmcustom.<name>` (Envoy's
// CustomStatNamespace, applied unconditionally); Envoy's Prometheus output
// strips that prefix again. Stats live in one store for the whole process, so
// the same name defined in several worker VMs (or several plugins) is one
// stat. Counters, gauges and histograms are separate namespaces, as in Envoy.
//
// Metric ids are per VM (see vm.ts): counters 4, 8, 12...; gauges 5, 9...;
// histograms 6, 10...; the low two bits encode the type.
//
// Histograms, as in Envoy's ThreadLocalStoreImpl: a recorded value goes into
// the stat's `samples` at once, but what the admin endpoints show comes from
// the last merge, which Envoy runs on every stats flush (stats_flush_interval,
// 5 s by default). StatsStore.flush() is that merge; the caller drives it (the
// local stack's admin server runs it on a timer). A merge moves the samples
// recorded since the previous one into the stat's interval histogram and adds
// them to its cumulative one. Both are log-linear histograms with Envoy's
// (libcircllhist's) bins: two significant decimal digits per bin, so 5 falls
// in [5, 5.1), 123 in [120, 130) and 0 in a bin of its own.

import { CUSTOM_STAT_NAMESPACE } from './abi.ts';

export type MetricKind = 'counter' | 'gauge' | 'histogram';

/** One libcircllhist bin: [val/10 * 10^exp, (val+1)/10 * 10^exp) for val > 0. */
export interface HistogramBin {
  /** Two significant digits with the sign (10..99, -10..-99), or 0 for the zero bin. */
  val: number;
  exp: number;
  count: number;
}

// libcircllhist's power_of_ten table holds the literals 1, 10, ..., 1e+127 and
// 1e-128 ... 0.1; parsing the same literal gives the same double.
const powerOfTen = (exp: number): number => Number(`1e${exp}`);

/** The bin's lower bound for a positive bin (its upper bound for a negative one), as hist_bucket_to_double. */
export function binValue(b: { val: number; exp: number }): number {
  return b.val === 0 ? 0 : (b.val / 10.0) * powerOfTen(b.exp);
}

/** The bin's width, as hist_bucket_to_double_bin_width. */
export function binWidth(b: { val: number; exp: number }): number {
  return b.val === 0 ? 0 : powerOfTen(b.exp) / 10.0;
}

/** The bin a recorded value goes to: int_scale_to_hist_bucket(value, 0) (Envoy's hist_insert_intscale(h, v, 0, 1)). */
export function binOf(value: bigint): { val: number; exp: number } {
  // Envoy's Histogram::recordValue takes a uint64 and passes it on as an int64.
  let v = BigInt.asIntN(64, value);
  if (v === 0n) return { val: 0, exp: 0 };
  let scale = 1;
  let sign = 1;
  if (v < 0n) {
    v = -v;
    sign = -1;
  }
  if (v < 10n) {
    v *= 10n;
    scale -= 1;
  }
  while (v >= 100n) {
    v /= 10n;
    scale++;
  }
  return { val: sign * Number(v), exp: scale };
}

/**
 * A log-linear histogram with libcircllhist's bins and its approximations
 * (hist_approx_count_below, hist_approx_sum, hist_approx_quantile).
 */
export class LogLinearHistogram {
  private readonly byKey = new Map<number, HistogramBin>();
  private sorted: HistogramBin[] | null = [];

  private static key(val: number, exp: number): number {
    return (exp + 128) * 256 + (val + 128);
  }

  insert(value: bigint, count = 1): void {
    const b = binOf(value);
    this.addToBin(b.val, b.exp, count);
  }

  private addToBin(val: number, exp: number, count: number): void {
    const k = LogLinearHistogram.key(val, exp);
    const bin = this.byKey.get(k);
    if (bin) bin.count += count;
    else {
      this.byKey.set(k, { val, exp, count });
      this.sorted = null;
    }
  }

  /** hist_accumulate: adds every bin of `other`. */
  accumulate(other: LogLinearHistogram): void {
    for (const b of other.bins()) this.addToBin(b.val, b.exp, b.count);
  }

  /** Bins in ascending order of value (libcircllhist's order), copies. */
  bins(): HistogramBin[] {
    if (!this.sorted) this.sorted = [...this.byKey.values()].sort((a, b) => binValue(a) - binValue(b));
    return this.sorted.map((b) => ({ ...b }));
  }

  private ordered(): HistogramBin[] {
    if (!this.sorted) this.bins();
    return this.sorted!;
  }

  /** hist_sample_count. */
  sampleCount(): number {
    let n = 0;
    for (const b of this.ordered()) n += b.count;
    return n;
  }

  /** hist_approx_sum: Σ bin midpoint × count, in bin order. */
  approxSum(): number {
    let sum = 0.0;
    for (const b of this.ordered()) {
      let mid = 0;
      if (b.val !== 0) {
        const out = binValue(b);
        const width = binWidth(b);
        mid = out + (out < 0 ? -width : width) / 2.0;
      }
      sum += mid * b.count;
    }
    return sum;
  }

  /**
   * hist_approx_count_below: the samples in bins whose upper end is <= threshold. A value exactly
   * on the threshold is in the bin that starts there, so it is not counted; the zero bin (width
   * 0) counts for any threshold >= 0.
   */
  approxCountBelow(threshold: number): number {
    let n = 0;
    for (const b of this.ordered()) {
      const bound = binValue(b);
      const upper = bound < 0 ? bound : bound + binWidth(b);
      if (upper <= threshold) n += b.count;
      else break;
    }
    return n;
  }

  /** hist_approx_quantile for ascending quantiles in [0, 1]; NaN for every quantile when empty. */
  approxQuantiles(qs: readonly number[]): number[] {
    const bins = this.ordered();
    let total = 0;
    for (const b of bins) total += b.count;
    if (total === 0) return qs.map(() => NaN);
    const out = qs.map((q) => total * q);
    let width = 0;
    let left = 0;
    let lower = 0;
    let upper = 0;
    const track = (b: HistogramBin) => {
      width = binWidth(b);
      const v = binValue(b);
      left = b.val === 0 ? 0 : v > 0 ? v : v - width;
      lower = upper;
      upper = lower + b.count;
    };
    let i = 0;
    for (; i < bins.length; i++) {
      if (bins[i].count === 0) continue;
      track(bins[i]);
      break;
    }
    for (let k = 0; k < out.length; k++) {
      while (i < bins.length - 1 && upper < out[k]) {
        i++;
        track(bins[i]);
      }
      if (lower === out[k]) out[k] = left;
      else if (upper === out[k]) out[k] = left + width;
      else if (width === 0) out[k] = left;
      else out[k] = left + ((out[k] - lower) / (upper - lower)) * width;
    }
    return out;
  }
}

/** A histogram's merged state (Envoy's ParentHistogramImpl). */
export class HistogramState {
  /** Envoy's ParentHistogram::used(): true once a merge found recorded values. */
  merged = false;
  /** How many of the stat's samples earlier merges took. */
  mergedSamples = 0;
  /** The samples merged by the last flush (Envoy's interval statistics). */
  interval = new LogLinearHistogram();
  /** Every merged sample (Envoy's cumulative statistics, what /stats/prometheus shows). */
  readonly cumulative = new LogLinearHistogram();
}

export class Stat {
  #value = 0n;
  #used = false;
  /** Recorded values (histograms only), all of them, merged or not. */
  samples: bigint[] = [];
  /** Histograms: the state as of the last StatsStore.flush(); null for counters and gauges. */
  readonly histogram: HistogramState | null;

  constructor(readonly name: string, readonly kind: MetricKind) {
    this.histogram = kind === 'histogram' ? new HistogramState() : null;
  }

  /** Counter or gauge value (uint64); for a histogram, the number of recorded samples. */
  get value(): bigint {
    return this.#value;
  }

  set value(v: bigint) {
    this.#value = v;
    this.#used = true;
  }

  /**
   * Envoy's Metric::used(), which `usedonly` tests: a counter or gauge once it has been written
   * (even with 0), a histogram once a flush merged recorded values.
   */
  get used(): boolean {
    return this.histogram ? this.histogram.merged : this.#used;
  }
}

export interface MetricSnapshot {
  name: string;
  kind: MetricKind;
  value: number;
  samples?: number[];
}

export class StatsStore {
  private stats = new Map<string, Stat>();

  getOrCreate(fullName: string, kind: MetricKind): Stat {
    const key = `${kind}\u0000${fullName}`;
    let s = this.stats.get(key);
    if (!s) {
      s = new Stat(fullName, kind);
      this.stats.set(key, s);
    }
    return s;
  }

  /** Look a stat up by its full name (`wasmcustom.x`) or the name the module used (`x`). */
  find(name: string, kind?: MetricKind): Stat | undefined {
    const kinds: MetricKind[] = kind ? [kind] : ['counter', 'gauge', 'histogram'];
    const full = name.startsWith(`${CUSTOM_STAT_NAMESPACE}.`) ? name : `${CUSTOM_STAT_NAMESPACE}.${name}`;
    for (const k of kinds) {
      const s = this.stats.get(`${k}\u0000${full}`) ?? this.stats.get(`${k}\u0000${name}`);
      if (s) return s;
    }
    return undefined;
  }

  /** Every stat, in creation order. */
  list(): Stat[] {
    return [...this.stats.values()];
  }

  all(): MetricSnapshot[] {
    return [...this.stats.values()].map((s) => ({
      name: s.name,
      kind: s.kind,
      value: Number(s.value),
      ...(s.kind === 'histogram' ? { samples: s.samples.map(Number) } : {}),
    }));
  }

  /**
   * Envoy's stats flush, as far as the admin endpoints see it: every histogram that has ever had
   * a value recorded merges the samples recorded since the previous flush (possibly none) into a
   * new interval histogram and adds them to its cumulative one (ParentHistogramImpl::merge).
   * Counters and gauges are read live and are not affected. `dropMerged`: forget the samples once
   * merged (the stat's value still counts them).
   */
  flush(dropMerged = false): void {
    for (const s of this.stats.values()) {
      const h = s.histogram;
      if (!h || (!h.merged && s.samples.length === 0)) continue;
      const interval = new LogLinearHistogram();
      for (let i = h.mergedSamples; i < s.samples.length; i++) interval.insert(s.samples[i]);
      h.mergedSamples = s.samples.length;
      h.interval = interval;
      h.cumulative.accumulate(interval);
      h.merged = true;
      // A long-running gateway (the local stack) keeps only the merged histograms, as Envoy does;
      // tests keep every sample to assert on.
      if (dropMerged) {
        s.samples.length = 0;
        h.mergedSamples = 0;
      }
    }
  }

  /** Counters and gauges, `wasmcustom.` stripped (the module's own names), for tests. See prometheus.ts for Envoy's /stats text. */
  adminStats(): Record<string, number> {
    const out: Record<string, number> = {};
    const prefix = `${CUSTOM_STAT_NAMESPACE}.`;
    for (const s of this.stats.values()) {
      if (s.kind === 'histogram') continue;
      out[s.name.startsWith(prefix) ? s.name.slice(prefix.length) : s.name] = Number(s.value);
    }
    return out;
  }
}
