// Envoy's admin stats over the host's store: tag extraction (stats_tags), /stats/prometheus
// (names, labels, ordering, histograms with Envoy's buckets, bounds and approximate sums, flush
// semantics, escaping, usedonly/filter), /stats text, and the local stack's admin server.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { compileWat } from './fixtures/compile.ts';
import { ProxyWasmHost } from './index.ts';
import { StatsStore } from './metrics.ts';
import { DEFAULT_BUCKETS, formatG, parseStatsParams, renderPrometheus, renderStatsText } from './prometheus.ts';
import { TagProducer, tagConfigFromBootstrap, type TagSpecifier } from './tags.ts';
import { adminStatsConfig, durationMs, startAdmin } from '../../scripts/local-stack/admin.ts';

const ENVOY_YAML = new URL('../../deploy/envoy/envoy.yaml', import.meta.url);
const bootstrap = parse(readFileSync(ENVOY_YAML, 'utf8'));
const deployTags = tagConfigFromBootstrap(bootstrap);
const tags = new TagProducer(deployTags.specifiers, { useDefaultTags: deployTags.useDefaultTags });

/** The contract's specifiers (filter metrics: tags encoded in names). */
const CONTRACT: TagSpecifier[] = [
  { tag_name: 'model_name', regex: '(\\.model_name=(.*?);)' },
  { tag_name: 'target_model_name', regex: '(\\.target_model_name=(.*?);)' },
  { tag_name: 'error_code', regex: '(\\.error_code=(.*?);)' },
  { tag_name: 'model_server_pod', regex: '(\\.model_server_pod=(.*?);)' },
];

const lines = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l));

// A module that defines metrics and writes them in proxy_on_vm_start (once per worker VM).
type Op = { kind: 0 | 1 | 2; name: string; inc?: number[]; record?: number[] };
function metricsModule(ops: Op[]): string {
  let at = 1024;
  const data: string[] = [];
  const body: string[] = [];
  for (const op of ops) {
    data.push(`(data (i32.const ${at}) "${op.name}")`);
    body.push(`(drop (call $define (i32.const ${op.kind}) (i32.const ${at}) (i32.const ${Buffer.byteLength(op.name)}) (i32.const 16)))`);
    for (const v of op.inc ?? []) body.push(`(drop (call $inc (i32.load (i32.const 16)) (i64.const ${v})))`);
    for (const v of op.record ?? []) body.push(`(drop (call $record (i32.load (i32.const 16)) (i64.const ${v})))`);
    at += Buffer.byteLength(op.name) + 16;
  }
  return `(module
    (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
    (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
    (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
    (memory (export "memory") 1)
    ${data.join('\n    ')}
    (func (export "malloc") (param i32) (result i32) (i32.const 8192))
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
      ${body.join('\n      ')}
      (i32.const 1))
    (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
    (func (export "proxy_on_context_create") (param i32 i32))
  )`;
}

const REQ = 'inference_objective_request_total';
const MODULE_OPS: Op[] = [
  { kind: 0, name: `${REQ}.model_name=qwen;.target_model_name=qwen-lora;`, inc: [1] },
  { kind: 0, name: `${REQ}.model_name=meta-llama/Llama-3.1-8B;.target_model_name=meta-llama/Llama-3.1-8B;`, inc: [2, 3] },
  { kind: 0, name: 'inference_objective_request_error_total.model_name=qwen;.target_model_name=qwen;.error_code=429;' },
  { kind: 0, name: 'wasm_epp.endpoint_picks_total.model_server_pod=10.0.0.7:8000;', inc: [4] },
  { kind: 0, name: 'wasm_epp.requests_routed', inc: [3] },
  { kind: 1, name: 'inference_objective_running_requests.model_name=qwen;', record: [7] },
  { kind: 2, name: 'inference_objective_request_duration_ms.model_name=qwen;.target_model_name=qwen-lora;', record: [5, 123] },
  { kind: 2, name: 'wasm_epp.queue_time_ms' },
];

async function moduleHost(): Promise<ProxyWasmHost> {
  const host = new ProxyWasmHost({ canary: false });
  host.loadPlugin({ wasm: await compileWat(metricsModule(MODULE_OPS)), name: 'p', rootId: 'r', vmId: 'v', workers: 2 });
  assert.deepEqual(host.traps, []);
  return host;
}

test('deploy/envoy/envoy.yaml has the contract\'s four stats_tags, in order, with default tags left on', () => {
  assert.deepEqual(deployTags.specifiers, CONTRACT);
  assert.equal(deployTags.useDefaultTags, true);
  assert.equal(bootstrap.stats_flush_interval, undefined, 'Envoy\'s 5 s default');
  assert.equal(adminStatsConfig(bootstrap).flushIntervalMs, 5000);
});

test('a module\'s tagged names render as labels (tags in stats_tags order), untagged ones as name{} value', async () => {
  const host = await moduleHost();
  host.stats.flush();
  const text = renderPrometheus(host.stats, { tags });
  assert.deepEqual(lines(text, /^(# TYPE|[a-z_]+\{[^}]*\} )/).filter((l) => !l.includes('_bucket{') && !/_(sum|count)\{/.test(l)), [
    '# TYPE inference_objective_request_error_total counter',
    'inference_objective_request_error_total{model_name="qwen",target_model_name="qwen",error_code="429"} 0',
    '# TYPE inference_objective_request_total counter',
    'inference_objective_request_total{model_name="meta-llama/Llama-3.1-8B",target_model_name="meta-llama/Llama-3.1-8B"} 10',
    'inference_objective_request_total{model_name="qwen",target_model_name="qwen-lora"} 2',
    '# TYPE wasm_epp_endpoint_picks_total counter',
    'wasm_epp_endpoint_picks_total{model_server_pod="10.0.0.7:8000"} 8',
    '# TYPE wasm_epp_requests_routed counter',
    'wasm_epp_requests_routed{} 6',
    '# TYPE inference_objective_running_requests gauge',
    'inference_objective_running_requests{model_name="qwen"} 7',
    '# TYPE inference_objective_request_duration_ms histogram',
    '# TYPE wasm_epp_queue_time_ms histogram',
  ]);
  const dur = 'inference_objective_request_duration_ms';
  const labels = 'model_name="qwen",target_model_name="qwen-lora"';
  assert.ok(text.includes(`${dur}_bucket{${labels},le="5"} 0\n${dur}_bucket{${labels},le="10"} 2\n`));
  assert.ok(text.includes(`${dur}_bucket{${labels},le="100"} 2\n${dur}_bucket{${labels},le="250"} 4\n`));
  // Two workers recorded 5 and 123: midpoints 5.05 and 125, twice.
  assert.ok(text.includes(`${dur}_bucket{${labels},le="+Inf"} 4\n${dur}_sum{${labels}} ${formatG(2 * 5.05 + 2 * 125, 32)}\n${dur}_count{${labels}} 4\n`));
  assert.ok(text.includes('wasm_epp_queue_time_ms_bucket{le="0.5"} 0\n'), 'an unrecorded, untagged histogram');
  assert.ok(text.includes('wasm_epp_queue_time_ms_sum{} 0\nwasm_epp_queue_time_ms_count{} 0\n'));
  assert.ok(!/wasmcustom|envoy_/.test(text), 'custom namespace stripped, no envoy_ prefix');
  assert.ok(text.endsWith('\n') && !text.includes('\n\n'), 'no blank lines');
  host.close();
});

test('tag extraction: unanchored, values with . / : -, order from stats_tags, names with _rq_200 untouched', () => {
  const t = new TagProducer(CONTRACT);
  assert.deepEqual(t.produce('wasmcustom.x.target_model_name=b.c/d:e-f;.model_name=a;'), {
    name: 'wasmcustom.x',
    tags: [{ name: 'model_name', value: 'a' }, { name: 'target_model_name', value: 'b.c/d:e-f' }],
  });
  // `.target_model_name=` does not contain `.model_name=`: the dot must precede it.
  assert.deepEqual(t.produce('wasmcustom.x.target_model_name=q;').tags, [{ name: 'target_model_name', value: 'q' }]);
  assert.deepEqual(t.produce('wasmcustom.y.model_name=;'), { name: 'wasmcustom.y', tags: [{ name: 'model_name', value: '' }] });
  for (const n of ['wasmcustom.foo_rq_200', 'wasmcustom.foo_rq_5xx', 'wasmcustom.wasm_epp.requests_routed']) {
    assert.deepEqual(t.produce(n), { name: n, tags: [] });
  }
  // The one built-in default: the cluster name of the host's own cluster counters.
  assert.deepEqual(t.produce('cluster.wasm_epp_original_dst.upstream_cx_none_healthy'), {
    name: 'cluster.upstream_cx_none_healthy',
    tags: [{ name: 'envoy.cluster_name', value: 'wasm_epp_original_dst' }],
  });
  assert.deepEqual(new TagProducer(CONTRACT, { useDefaultTags: false }).produce('cluster.c.x').tags, []);
  // Group 1 only: it is both removed and the value; extra groups are ignored; a regex without a
  // group adds nothing.
  const g = new TagProducer([
    { tag_name: 'one', regex: '(_v\\d+)$' },
    { tag_name: 'two', regex: '\\.(k=([a-z]+)(;))' },
    { tag_name: 'none', regex: 'wasmcustom' },
  ]);
  // Only group 1 goes: the dot before it stays.
  assert.deepEqual(g.produce('wasmcustom.a.k=zz;.b_v12'), { name: 'wasmcustom.a..b', tags: [{ name: 'one', value: '_v12' }, { name: 'two', value: 'zz' }] });
  // The same tag name twice: only the first match counts. A `^word\.` regex runs after the others.
  const d = new TagProducer([
    { tag_name: 'first', regex: '^wasmcustom\\.(p_([a-z]+)\\.)' },
    { tag_name: 'm', regex: '(\\.m=(.*?);)' },
    { tag_name: 'm', regex: '(\\.n=(.*?);)' },
    { tag_name: 'digits', regex: '(_([[:digit:]]+))$' },
  ]);
  assert.deepEqual(d.produce('wasmcustom.p_abc.x.n=2;.m=1;_42'), {
    name: 'wasmcustom.x.n=2;',
    tags: [{ name: 'm', value: '1' }, { name: 'digits', value: '42' }, { name: 'first', value: 'abc' }],
  });
  assert.throws(() => new TagProducer([{ tag_name: 'x', regex: '([[:nope:]])' }]), /unknown character class/);
  assert.throws(() => new TagProducer([{ tag_name: 'x' }]), /no default regex/);
  // fixed_value: on every stat.
  assert.deepEqual(new TagProducer([{ tag_name: 'zone', fixed_value: 'z1' }], { useDefaultTags: false }).produce('wasmcustom.a').tags, [{ name: 'zone', value: 'z1' }]);
});

test('names: sanitized, namespace stripped once, digit-leading or empty custom names dropped, envoy_ for the rest', () => {
  const s = new StatsStore();
  for (const n of ['wasmcustom.my.metric-x/y', 'wasmcustom.9lives', 'wasmcustom.', 'wasmcustom.wasmcustom.x', 'cluster.c1.upstream_cx_none_healthy', 'wasmcustom.é']) {
    s.getOrCreate(n, 'counter').value = 1n;
  }
  s.getOrCreate('wasmcustom.t.model_name=a;', 'counter').value = 2n;
  const t = new TagProducer([...CONTRACT, { tag_name: 'my.tag', fixed_value: 'v' }]);
  assert.equal(renderPrometheus(s, { tags: t }), [
    '# TYPE envoy_cluster_upstream_cx_none_healthy counter',
    'envoy_cluster_upstream_cx_none_healthy{my_tag="v",envoy_cluster_name="c1"} 1',
    '# TYPE my_metric_x_y counter',
    'my_metric_x_y{my_tag="v"} 1',
    '# TYPE t counter',
    't{model_name="a",my_tag="v"} 2',
    '# TYPE wasmcustom_x counter',
    'wasmcustom_x{my_tag="v"} 1',
    '# TYPE _ counter',
    '_{my_tag="v"} 1',
    '',
  ].join('\n'));
});

test('ordering: counters, gauges, histograms; families by dot-separated tokens; series by full name', () => {
  const s = new StatsStore();
  s.getOrCreate('wasmcustom.h', 'histogram');
  s.getOrCreate('wasmcustom.g', 'gauge').value = 1n;
  for (const n of ['wasmcustom.a0', 'wasmcustom.a-c', 'wasmcustom.a.b', 'wasmcustom.f.model_name=z;', 'wasmcustom.f.model_name=y-1;', 'wasmcustom.f.model_name=y.1;']) {
    s.getOrCreate(n, 'counter').value = 1n;
  }
  const text = renderPrometheus(s, { tags: new TagProducer(CONTRACT) });
  // Character order would put `a-c` before `a.b` ('-' < '.'); Envoy compares token by token.
  assert.deepEqual(lines(text, /^# TYPE/), ['# TYPE a_b counter', '# TYPE a_c counter', '# TYPE a0 counter', '# TYPE f counter', '# TYPE g gauge', '# TYPE h histogram']);
  // Within a family too: `y.1` (tokens `model_name=y`, `1;`) sorts before `y-1`.
  assert.deepEqual(lines(text, /^f\{/), ['f{model_name="y.1"} 1', 'f{model_name="y-1"} 1', 'f{model_name="z"} 1']);
});

test('histograms: Envoy\'s default buckets, cumulative, a value on a bound counts in the next bucket, approximate _sum', () => {
  const s = new StatsStore();
  const h = s.getOrCreate('wasmcustom.lat', 'histogram');
  h.samples.push(0n, 1n, 5n, 10n, 24n, 25n, 3600000n, 4000000n);
  s.flush();
  const text = renderPrometheus(s);
  const buckets = lines(text, /^lat_bucket/).map((l) => l.replace(/^lat_bucket\{le="([^"]+)"\} (\d+)$/, '$1=$2'));
  assert.deepEqual(buckets, [
    '0.5=1', '1=1', '5=2', '10=3', '25=5', '50=6', '100=6', '250=6', '500=6', '1000=6', '2500=6', '5000=6', '10000=6',
    '30000=6', '60000=6', '300000=6', '600000=6', '1800000=6', '3600000=6', '+Inf=8',
  ]);
  assert.equal(DEFAULT_BUCKETS.length, 19);
  // Bin midpoints: 0, 1.05, 5.05, 10.5, 24.5, 25.5, 3650000, 4050000.
  assert.deepEqual(lines(text, /^lat_(sum|count)/), ['lat_sum{} 7700066.5999999996274709701538086', 'lat_count{} 8']);

  const one = new StatsStore();
  one.getOrCreate('wasmcustom.one', 'histogram').samples.push(5n);
  one.flush();
  assert.ok(renderPrometheus(one).includes('one_sum{} 5.049999999999999822364316059975\none_count{} 1\n'));
  const big = new StatsStore();
  big.getOrCreate('wasmcustom.big', 'histogram').samples.push(123n, 250n);
  big.flush();
  const b = renderPrometheus(big);
  assert.ok(b.includes('big_bucket{le="250"} 1\n') && b.includes('big_bucket{le="500"} 2\n'));
  assert.ok(b.includes('big_sum{} 380\n'), '125 + 255');
});

test('flush: histograms show the last flush, counters and gauges are live; usedonly follows Envoy\'s used()', () => {
  const s = new StatsStore();
  const c = s.getOrCreate('wasmcustom.c', 'counter');
  const z = s.getOrCreate('wasmcustom.z', 'counter');
  const h = s.getOrCreate('wasmcustom.h', 'histogram');
  const never = s.getOrCreate('wasmcustom.never', 'histogram');
  c.value += 2n;
  z.value += 0n; // written, so "used", even at 0
  h.samples.push(7n);
  h.value = 1n;
  const used = { params: { usedOnly: true } };
  let text = renderPrometheus(s);
  assert.ok(text.includes('c{} 2\n'));
  assert.ok(text.includes('h_count{} 0\n'), 'not merged yet');
  assert.deepEqual(lines(renderPrometheus(s, used), /^# TYPE/), ['# TYPE c counter', '# TYPE z counter']);
  assert.equal(renderStatsText(s), 'wasmcustom.c: 2\nwasmcustom.z: 0\nwasmcustom.h: No recorded values\nwasmcustom.never: No recorded values\n');

  s.flush();
  h.samples.push(70n);
  c.value += 1n;
  text = renderPrometheus(s);
  assert.ok(text.includes('c{} 3\n'), 'counters are read live');
  assert.ok(text.includes('h_count{} 1\n') && text.includes('h_bucket{le="10"} 1\n'), 'the second sample waits for the next flush');
  assert.deepEqual(lines(renderPrometheus(s, used), /^# TYPE/), ['# TYPE c counter', '# TYPE z counter', '# TYPE h histogram']);
  assert.equal(
    renderStatsText(s).split('\n')[2],
    'wasmcustom.h: P0(7,7) P25(7.025,7.025) P50(7.05,7.05) P75(7.075,7.075) P90(7.09,7.09) P95(7.095,7.095) P99(7.099,7.099) P99.5(7.0995,7.0995) P99.9(7.0999,7.0999) P100(7.1,7.1)',
  );

  s.flush();
  assert.ok(renderPrometheus(s).includes('h_count{} 2\n'));
  // The interval of the last flush holds only 70; the cumulative column both.
  assert.match(renderStatsText(s), /^wasmcustom\.h: P0\(70,7\) P25\(70\.25,7\.05\) P50\(70\.5,7\.1\) .* P100\(71,71\)$/m);
  assert.ok(renderPrometheus(s, { params: { histogramBuckets: 'summary' } }).includes('# TYPE h summary\nh{quantile="0"} 70\nh{quantile="0.25"} 70.25\n'));
  s.flush();
  assert.match(renderStatsText(s), /^wasmcustom\.h: P0\(nan,7\) .* P100\(nan,71\)$/m, 'an empty interval');
  assert.ok(renderPrometheus(s, { params: { histogramBuckets: 'summary' } }).includes('h{quantile="0.5"} nan\n'));
  assert.equal(never.used, false);
  assert.ok(renderStatsText(s, { params: { histogramBuckets: 'cumulative' } }).includes('wasmcustom.h: B0.5(0,0) B1(0,0) B5(0,0) B10(0,1) B25(0,1) B50(0,1) B100(0,2) '));
  assert.ok(renderStatsText(s, { params: { histogramBuckets: 'cumulative' } }).includes('B1.8e+06(0,2) B3.6e+06(0,2)\n'));
});

test('label values are escaped (\\ " newline), label names sanitized', () => {
  const s = new StatsStore();
  s.getOrCreate('wasmcustom.e.model_name=a"b\\c;', 'counter').value = 1n;
  const t = new TagProducer([...CONTRACT, { tag_name: 'note-1', fixed_value: 'x\ny' }]);
  assert.equal(renderPrometheus(s, { tags: t }), '# TYPE e counter\ne{model_name="a\\"b\\\\c",note_1="x\\ny"} 1\n');
});

test('filter and usedonly parameters: the regex searches full names, tag text included', async () => {
  const host = await moduleHost();
  host.stats.flush();
  const p = parseStatsParams('filter=model_name%3Dmeta&usedonly');
  assert.ok(p.ok);
  assert.equal(p.params.usedOnly, true);
  assert.equal(renderPrometheus(host.stats, { tags, params: p.params }), [
    '# TYPE inference_objective_request_total counter',
    'inference_objective_request_total{model_name="meta-llama/Llama-3.1-8B",target_model_name="meta-llama/Llama-3.1-8B"} 10',
    '',
  ].join('\n'));
  const w = parseStatsParams('?filter=^wasmcustom\\.wasm_epp\\.');
  assert.ok(w.ok);
  assert.deepEqual(lines(renderPrometheus(host.stats, { tags, params: w.params }), /^# TYPE/), [
    '# TYPE wasm_epp_endpoint_picks_total counter', '# TYPE wasm_epp_requests_routed counter', '# TYPE wasm_epp_queue_time_ms histogram',
  ]);
  assert.equal(renderStatsText(host.stats, { params: w.params }), [
    'wasmcustom.wasm_epp.endpoint_picks_total.model_server_pod=10.0.0.7:8000;: 8',
    'wasmcustom.wasm_epp.requests_routed: 6',
    'wasmcustom.wasm_epp.queue_time_ms: No recorded values',
    '',
  ].join('\n'));
  // usedonly: the error counter was defined but never written.
  const u = parseStatsParams('usedonly');
  assert.ok(u.ok);
  assert.ok(!renderStatsText(host.stats, { params: u.params }).includes('error_total'));
  assert.ok(renderStatsText(host.stats).includes('wasmcustom.inference_objective_request_error_total.model_name=qwen;.target_model_name=qwen;.error_code=429;: 0\n'));
  assert.deepEqual(parseStatsParams('filter=(unclosed'), { ok: false, error: 'Invalid re2 regex' });
  assert.equal(parseStatsParams('histogram_buckets=bogus').ok, false);
  assert.throws(() => renderPrometheus(host.stats, { params: { histogramBuckets: 'detailed' } }), /unsupported/);
  host.close();
});

test('admin server: /stats/prometheus and /stats over HTTP, flushed on stats_flush_interval, closes', async () => {
  const host = await moduleHost();
  const dir = mkdtempSync(join(tmpdir(), 'wasm-epp-admin-'));
  const configPath = join(dir, 'envoy.yaml');
  writeFileSync(configPath, readFileSync(ENVOY_YAML, 'utf8') + '\nstats_flush_interval: 0.05s\n');
  const admin = await startAdmin({ host, port: 0, configPath });
  const hist = host.stats.find('inference_objective_request_duration_ms.model_name=qwen;.target_model_name=qwen-lora;', 'histogram')!;
  assert.equal(hist.used, false, 'no flush yet');
  try {
    assert.match(admin.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const dur = 'inference_objective_request_duration_ms_count{model_name="qwen",target_model_name="qwen-lora"}';
    let r = await fetch(`${admin.url}/stats/prometheus`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.ok((await r.text()).includes('wasm_epp_requests_routed{} 6\n'));
    await new Promise((res) => setTimeout(res, 200));
    const body = await (await fetch(`${admin.url}/stats/prometheus`)).text();
    assert.ok(body.includes(`${dur} 4\n`), 'the timer flushed');

    r = await fetch(`${admin.url}/stats?filter=requests_routed`);
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=UTF-8');
    assert.equal(await r.text(), 'wasmcustom.wasm_epp.requests_routed: 6\n');
    assert.equal(await (await fetch(`${admin.url}/stats?format=prometheus&filter=requests_routed`)).text(), '# TYPE wasm_epp_requests_routed counter\nwasm_epp_requests_routed{} 6\n');
    r = await fetch(`${admin.url}/stats?filter=(`);
    assert.equal(r.status, 400);
    assert.equal(await r.text(), 'Invalid re2 regex');
    assert.equal((await fetch(`${admin.url}/stats/prometheus?histogram_buckets=detailed`)).status, 400);
    assert.equal((await fetch(`${admin.url}/clusters`)).status, 404);
  } finally {
    await admin.close();
    host.close();
  }
  await assert.rejects(fetch(`${admin.url}/stats`));
});

test('admin config: flush interval from the bootstrap (Duration forms), stats_flush_on_admin, use_all_default_tags', () => {
  assert.equal(durationMs('5s', 'x'), 5000);
  assert.equal(durationMs('0.25s', 'x'), 250);
  assert.equal(durationMs({ seconds: 1, nanos: 500_000_000 }, 'x'), 1500);
  assert.throws(() => durationMs('5m', 'x'), /not a duration/);
  assert.equal(adminStatsConfig({ stats_flush_interval: '10s' }).flushIntervalMs, 10_000);
  assert.equal(adminStatsConfig({ stats_flush_on_admin: true }).flushIntervalMs, null);
  const noDefaults = adminStatsConfig({ stats_config: { use_all_default_tags: false, stats_tags: CONTRACT } });
  assert.deepEqual(noDefaults.tags.produce('cluster.c.x').tags, []);
  assert.deepEqual(noDefaults.tags.produce('wasmcustom.a.model_name=m;').tags, [{ name: 'model_name', value: 'm' }]);
});

test('flush(true) forgets merged samples and keeps what the admin endpoints show', () => {
  const s = new StatsStore();
  const h = s.getOrCreate('wasmcustom.lat', 'histogram');
  h.samples.push(5n, 50n);
  h.value = 2n;
  s.flush(true);
  assert.equal(h.samples.length, 0);
  h.samples.push(500n);
  h.value = 3n;
  s.flush(true);
  const text = renderPrometheus(s);
  assert.deepEqual(text.split('\n').filter((l) => l.startsWith('lat_count')), ['lat_count{} 3']);
  assert.equal(h.samples.length, 0);
});
