// Envoy's admin stats pages over the host's StatsStore: GET /stats/prometheus (text exposition)
// and GET /stats (plain text), as Envoy renders them (source/server/admin/prometheus_stats.cc,
// stats_render.cc, ungrouped_stats_request.cc, stats_params.cc; histogram statistics from
// source/common/stats/histogram_impl.cc over libcircllhist).
//
// /stats/prometheus
//  - Names come from the tag-extracted name (tags.ts). A name whose first dot-separated token is
//    the registered custom namespace `wasmcustom` loses it and gets no `envoy_` prefix; any
//    other name gets `envoy_`. Then every character outside [a-zA-Z0-9_] becomes `_`. A custom
//    name that ends up empty or starting with a digit is left out, family and all.
//  - Order: counters, then gauges, then histograms. Within a type, families sorted by
//    tag-extracted name, comparing dot-separated tokens (Envoy's StatNameLessThan, so `a.b` <
//    `a-c` < `a_b`... token by token, not character by character); within a family, series
//    sorted the same way by full stat name. One `# TYPE <name> counter|gauge|histogram|summary`
//    line per family, no blank lines, no HELP.
//  - Series: `name{label="value",...} value`; an untagged stat prints `name{} value`. Label
//    names have every byte outside [a-zA-Z0-9_] replaced by `_` (`envoy.cluster_name` ->
//    `envoy_cluster_name`); label values escape `\` -> `\\`, newline -> `\n`, `"` -> `\"`.
//    Counter and gauge values are the uint64 as a decimal.
//  - Histograms (default, `histogram_buckets=cumulative` too): per series one
//    `_bucket{<labels>,le="<bound>"} <count>` per bucket (Envoy's default bounds 0.5 ... 3600000),
//    then `le="+Inf"` with the sample count, `_sum{<labels>}` and `_count{<labels>}`. Bounds and
//    the sum print as printf's `%.32g`. Values are the cumulative statistics of the last flush
//    (StatsStore.flush()), not the samples recorded since. Buckets are cumulative counts from
//    hist_approx_count_below: a bin counts for `le=b` only when its upper end is <= b, so a value
//    exactly on a bound is counted in the next bucket (5 -> not in le="5", in le="10"); 0 counts
//    everywhere. The sum is hist_approx_sum: each bin's midpoint times its count (5 -> 5.05,
//    123 -> 125, printed as 5.049999999999999822364316059975).
//  - `histogram_buckets=summary`: `name{<labels>,quantile="q"} v` for q in 0, 0.25, 0.5, 0.75,
//    0.9, 0.95, 0.99, 0.995, 0.999, 1, then `_sum` and `_count`, all from the last flush's
//    interval (hist_approx_quantile; `nan` when the interval is empty).
//  - `usedonly`: only counters and gauges ever written and histograms a flush merged values
//    into. `filter=<regex>`: only stats whose full name (`wasmcustom.x...`) the regex finds.
//
// /stats
//  - Counters and gauges together, then histograms, each sorted by full name (byte order):
//    `<full name>: <value>`. The full name keeps `wasmcustom.`: Envoy strips the namespace only
//    in the Prometheus output. A histogram prints `<name>: No recorded values` until a flush
//    merged values, then `<name>: P0(<interval>,<cumulative>) P25(...) ... P100(...)` (quantiles
//    of the last flush's interval and of everything merged, `nan` for an empty interval);
//    `histogram_buckets=cumulative` prints `B0.5(<interval>,<cumulative>) B1(...) ...` and
//    `disjoint` the per-bucket counts instead. `usedonly` and `filter` as above.
//
// Exact (same double arithmetic as libcircllhist and Envoy): the bins, bucket counts, `_sum`,
// quantiles, and their printing (`%.32g` rounded from the exact binary value, ties to even; fmt's
// shortest form).
//
// Not exact, or not emulated:
//  - `filter` is a JavaScript RegExp where Envoy compiles RE2; the two agree on ordinary
//    patterns, but RE2-only syntax (`(?P<n>...)`, `\pN`) is rejected or read differently here,
//    and JS-only syntax (lookaround, backreferences) is accepted here and refused (400) by Envoy.
//  - Tag regexes are JavaScript RegExps for std::regex ECMAScript patterns (see tags.ts), and
//    only the `envoy.cluster_name` default extractor is built in.
//  - A flush merges synchronously. Envoy posts the merge to every worker and finishes it later,
//    so a value recorded right at a flush may show one flush later there.
//  - Counts are JavaScript numbers (exact below 2^53); libcircllhist saturates at 2^64.
//  - One bucket list for every histogram (Envoy's default unless a caller passes `buckets`);
//    stats_config.histogram_bucket_settings, stats_matcher, hidden stats, text readouts,
//    per-host stats, `type=`, JSON/HTML/protobuf formats, native histograms and `detailed`
//    buckets are not emulated. Envoy's own stats (server.*, http.*, listener.*) do not exist
//    here: the store holds the filter's stats and the few cluster counters the host keeps.

import { CUSTOM_STAT_NAMESPACE } from './abi.ts';
import type { LogLinearHistogram, Stat, StatsStore } from './metrics.ts';
import { TagProducer, type Tag } from './tags.ts';

/** HistogramSettingsImpl::defaultBuckets(). */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
];

/** HistogramStatisticsImpl::supportedQuantiles(). */
export const SUPPORTED_QUANTILES: readonly number[] = [0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1];

/** Custom stat namespaces registered in the process (the Wasm filters register `wasmcustom`). */
const CUSTOM_NAMESPACES = new Set([CUSTOM_STAT_NAMESPACE]);

export type HistogramBucketsMode = 'unset' | 'cumulative' | 'disjoint' | 'detailed' | 'summary' | 'prometheusnative';

export interface StatsParams {
  usedOnly: boolean;
  /** The `filter` regex, tested against full stat names. */
  filter: RegExp | null;
  histogramBuckets: HistogramBucketsMode;
  /** /stats?format=: 'text' (default) or 'prometheus' (same as /stats/prometheus); others are refused. */
  format: 'text' | 'prometheus';
}

export const DEFAULT_PARAMS: StatsParams = { usedOnly: false, filter: null, histogramBuckets: 'unset', format: 'text' };

const BUCKET_MODES = new Set<HistogramBucketsMode>(['cumulative', 'disjoint', 'detailed', 'summary', 'prometheusnative']);

/** The query of an admin stats URL (StatsParams::parse), or the 400 message Envoy would answer. */
export function parseStatsParams(query: string | URLSearchParams): { ok: true; params: StatsParams } | { ok: false; error: string } {
  const q = typeof query === 'string' ? new URLSearchParams(query.startsWith('?') ? query.slice(1) : query) : query;
  const params: StatsParams = { ...DEFAULT_PARAMS, usedOnly: q.has('usedonly') };
  const filter = q.get('filter');
  if (filter !== null) {
    try {
      params.filter = new RegExp(filter);
    } catch {
      return { ok: false, error: 'Invalid re2 regex' };
    }
  }
  const hb = q.get('histogram_buckets');
  if (hb !== null) {
    if (!BUCKET_MODES.has(hb as HistogramBucketsMode)) return { ok: false, error: 'usage: /stats?histogram_buckets=(cumulative|disjoint|detailed|summary|prometheusnative)\n' };
    params.histogramBuckets = hb as HistogramBucketsMode;
  }
  const format = q.get('format');
  if (format !== null) {
    if (format !== 'text' && format !== 'prometheus') return { ok: false, error: `format=${format} is not served by this host (text, prometheus)\n` };
    params.format = format;
  }
  return { ok: true, params };
}

export interface RenderOptions {
  /** The stats_tags extraction (default: no specifiers, the built-in defaults only). */
  tags?: TagProducer;
  params?: Partial<StatsParams>;
  /** Histogram bucket bounds, ascending (default DEFAULT_BUCKETS). */
  buckets?: readonly number[];
}

const defaultTags = new TagProducer();

// ---------------------------------------------------------------- number formatting

function stripFraction(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

function expSuffix(x: number): string {
  return `e${x < 0 ? '-' : '+'}${String(Math.abs(x)).padStart(2, '0')}`;
}

// The shortest round-trip digits of |x| and the decimal exponent of the first one.
function shortestDecimal(x: number): { digits: string; exp: number } {
  const [m, e] = Math.abs(x).toExponential().split('e');
  return { digits: m.replace('.', ''), exp: Number(e) };
}

// |x| (finite, non-zero) rounded to `precision` significant digits the way glibc's printf and
// fmt do: from the exact binary value, ties to even (Number#toExponential rounds ties up).
function roundedDecimal(x: number, precision: number): { digits: string; exp: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & 0xfffffffffffffn;
  if (biased !== 0) mant |= 1n << 52n;
  const e2 = (biased === 0 ? 1 : biased) - 1075;
  // |x| = mant * 2^e2 = n * 10^e10 exactly.
  const n = e2 >= 0 ? mant << BigInt(e2) : mant * 5n ** BigInt(-e2);
  const e10 = e2 >= 0 ? 0 : e2;
  let all = n.toString();
  let exp = all.length - 1 + e10;
  if (all.length <= precision) return { digits: all.padEnd(precision, '0'), exp };
  let kept = all.slice(0, precision);
  const rest = all.slice(precision);
  const up = rest[0] > '5' || (rest[0] === '5' && (/[1-9]/.test(rest.slice(1)) || Number(kept[kept.length - 1]) % 2 === 1));
  if (up) {
    const bumped = (BigInt(kept) + 1n).toString();
    if (bumped.length > precision) {
      kept = bumped.slice(0, precision);
      exp++;
    } else kept = bumped;
  }
  all = kept;
  return { digits: all, exp };
}

// Digits placed for fixed notation (no exponent), keeping every digit given.
function fixed(digits: string, exp: number): string {
  if (exp < 0) return `0.${'0'.repeat(-exp - 1)}${digits}`;
  if (exp + 1 >= digits.length) return digits + '0'.repeat(exp + 1 - digits.length);
  return `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/** printf's `%.<precision>g` (what fmt's `{:.32g}` and `{:g}` print). */
export function formatG(x: number, precision: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x < 0 ? '-inf' : 'inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const p = precision === 0 ? 1 : precision;
  const { digits, exp } = roundedDecimal(x, p);
  const sign = x < 0 ? '-' : '';
  if (exp < -4 || exp >= p) return sign + stripFraction(digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits) + expSuffix(exp);
  return sign + stripFraction(fixed(digits, exp));
}

/** fmt's `{}` for a double: the shortest digits that round-trip; exponent form below 1e-4 or from 1e16. */
export function formatShortest(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x < 0 ? '-inf' : 'inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const { digits, exp } = shortestDecimal(x);
  const sign = x < 0 ? '-' : '';
  if (exp < -4 || exp >= 16) return sign + (digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits) + expSuffix(exp);
  return sign + fixed(digits, exp);
}

// ---------------------------------------------------------------- names

/** Code point (= UTF-8 byte) order, as std::string comparison of UTF-8 names. */
export function compareBytes(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** Envoy's StatNameLessThan: token by token (dot-separated), each token in byte order. */
export function compareStatNames(a: string, b: string): number {
  const ta = a.split('.');
  const tb = b.split('.');
  const n = Math.min(ta.length, tb.length);
  for (let i = 0; i < n; i++) {
    if (ta[i] !== tb[i]) return compareBytes(ta[i], tb[i]) < 0 ? -1 : 1;
  }
  return ta.length - tb.length;
}

/** sanitizeName (RE2 `[^a-zA-Z0-9_]` -> `_`, per character). */
export function sanitizeName(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/gu, '_');
}

/** sanitizeNameInPlace (per byte: a non-ASCII character becomes one `_` per UTF-8 byte). */
function sanitizeNameBytes(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/gu, (c) => '_'.repeat(Buffer.byteLength(c)));
}

/** sanitizeValue: `\` -> `\\`, newline -> `\n`, `"` -> `\"`. */
export function sanitizeLabelValue(value: string): string {
  return value.replace(/[\\\n"]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : '\\"'));
}

/** PrometheusStatsFormatter::metricName: the family name of a tag-extracted name, or null when Envoy leaves it out. */
export function prometheusMetricName(extractedName: string): string | null {
  const dot = extractedName.indexOf('.');
  if (dot >= 0 && CUSTOM_NAMESPACES.has(extractedName.slice(0, dot))) {
    const name = sanitizeName(extractedName.slice(dot + 1));
    if (name === '' || /^[0-9]/.test(name)) return null;
    return name;
  }
  return `envoy_${sanitizeNameBytes(extractedName)}`;
}

function formattedTags(tags: readonly Tag[]): string {
  return tags.map((t) => `${sanitizeNameBytes(t.name)}="${sanitizeLabelValue(t.value)}"`).join(',');
}

// ---------------------------------------------------------------- rendering

function resolve(opts: RenderOptions): { tags: TagProducer; params: StatsParams; buckets: readonly number[] } {
  return { tags: opts.tags ?? defaultTags, params: { ...DEFAULT_PARAMS, ...opts.params }, buckets: opts.buckets ?? DEFAULT_BUCKETS };
}

function shown(s: Stat, p: StatsParams): boolean {
  if (p.usedOnly && !s.used) return false;
  if (p.filter) {
    p.filter.lastIndex = 0;
    if (!p.filter.test(s.name)) return false;
  }
  return true;
}

const PROM_TYPE = { counter: 'counter', gauge: 'gauge', histogram: 'histogram' } as const;

/** GET /stats/prometheus (text exposition). Throws for the bucket modes Envoy refuses here. */
export function renderPrometheus(store: StatsStore, opts: RenderOptions = {}): string {
  const { tags, params, buckets } = resolve(opts);
  if (params.histogramBuckets === 'detailed' || params.histogramBuckets === 'disjoint') throw new Error('unsupported prometheus histogram bucket mode');
  if (params.histogramBuckets === 'prometheusnative') throw new Error('unsupported prometheusnative histogram type when not using protobuf exposition format');
  const summary = params.histogramBuckets === 'summary';
  const stats = store.list().filter((s) => shown(s, params));
  const out: string[] = [];
  for (const kind of ['counter', 'gauge', 'histogram'] as const) {
    const groups = new Map<string, Array<{ stat: Stat; tags: Tag[] }>>();
    for (const stat of stats) {
      if (stat.kind !== kind) continue;
      const e = tags.produce(stat.name);
      let g = groups.get(e.name);
      if (!g) groups.set(e.name, (g = []));
      g.push({ stat, tags: e.tags });
    }
    for (const extracted of [...groups.keys()].sort(compareStatNames)) {
      const name = prometheusMetricName(extracted);
      if (name === null) continue;
      const series = groups.get(extracted)!.sort((a, b) => compareStatNames(a.stat.name, b.stat.name));
      out.push(`# TYPE ${name} ${kind === 'histogram' && summary ? 'summary' : PROM_TYPE[kind]}\n`);
      for (const { stat, tags: t } of series) {
        const labels = formattedTags(t);
        if (kind !== 'histogram') {
          out.push(`${name}{${labels}} ${stat.value.toString()}\n`);
          continue;
        }
        const lead = t.length === 0 ? '' : `${labels},`;
        const h = stat.histogram!;
        if (summary) {
          const iv = h.interval;
          const qs = iv.approxQuantiles(SUPPORTED_QUANTILES);
          SUPPORTED_QUANTILES.forEach((q, i) => out.push(`${name}{${lead}quantile="${formatShortest(q)}"} ${formatG(qs[i], 32)}\n`));
          out.push(`${name}_sum{${labels}} ${formatG(iv.approxSum(), 32)}\n`, `${name}_count{${labels}} ${iv.sampleCount()}\n`);
          continue;
        }
        const cum = h.cumulative;
        for (const b of buckets) out.push(`${name}_bucket{${lead}le="${formatG(b, 32)}"} ${cum.approxCountBelow(b)}\n`);
        const count = cum.sampleCount();
        out.push(`${name}_bucket{${lead}le="+Inf"} ${count}\n`, `${name}_sum{${labels}} ${formatG(cum.approxSum(), 32)}\n`, `${name}_count{${labels}} ${count}\n`);
      }
    }
  }
  return out.join('');
}

function quantileSummary(h: { interval: LogLinearHistogram; cumulative: LogLinearHistogram }): string {
  const iq = h.interval.approxQuantiles(SUPPORTED_QUANTILES);
  const cq = h.cumulative.approxQuantiles(SUPPORTED_QUANTILES);
  return SUPPORTED_QUANTILES.map((q, i) => `P${formatG(100 * q, 6)}(${formatShortest(iq[i])},${formatShortest(cq[i])})`).join(' ');
}

function bucketSummary(h: { interval: LogLinearHistogram; cumulative: LogLinearHistogram }, buckets: readonly number[], disjoint: boolean): string {
  const iv = buckets.map((b) => h.interval.approxCountBelow(b));
  const cu = buckets.map((b) => h.cumulative.approxCountBelow(b));
  return buckets
    .map((b, i) => {
      const x = disjoint && i > 0 ? iv[i] - iv[i - 1] : iv[i];
      const y = disjoint && i > 0 ? cu[i] - cu[i - 1] : cu[i];
      return `B${formatG(b, 6)}(${x},${y})`;
    })
    .join(' ');
}

/** GET /stats (plain text). Throws for `histogram_buckets=detailed`, which this host does not render. */
export function renderStatsText(store: StatsStore, opts: RenderOptions = {}): string {
  const { params, buckets } = resolve(opts);
  if (params.histogramBuckets === 'detailed' || params.histogramBuckets === 'prometheusnative') throw new Error(`histogram_buckets=${params.histogramBuckets} is not rendered by this host`);
  const stats = store.list().filter((s) => shown(s, params));
  // One map for counters and gauges, keyed by name (a gauge replaces a counter of the same name).
  const numeric = new Map<string, Stat>();
  for (const s of stats) if (s.kind === 'counter') numeric.set(s.name, s);
  for (const s of stats) if (s.kind === 'gauge') numeric.set(s.name, s);
  const out: string[] = [];
  for (const n of [...numeric.keys()].sort(compareBytes)) out.push(`${n}: ${numeric.get(n)!.value.toString()}\n`);
  const histograms = new Map<string, Stat>();
  for (const s of stats) if (s.kind === 'histogram') histograms.set(s.name, s);
  for (const n of [...histograms.keys()].sort(compareBytes)) {
    const h = histograms.get(n)!.histogram!;
    if (!h.merged) out.push(`${n}: No recorded values\n`);
    else if (params.histogramBuckets === 'cumulative' || params.histogramBuckets === 'disjoint') out.push(`${n}: ${bucketSummary(h, buckets, params.histogramBuckets === 'disjoint')}\n`);
    else out.push(`${n}: ${quantileSummary(h)}\n`);
  }
  return out.join('');
}
