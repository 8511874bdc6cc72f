// wasm-epp itself in the simulation loop: the compiled build/wasm-epp.wasm under the proxy-wasm
// test host (two worker VMs, a manual clock driven by virtual time), fed by the sidecar's own code:
// each scrape's /metrics page goes through the sidecar's parser and extractor, the sidecar's
// document builder turns pods, pool and model into the state document, and the document reaches
// the filter's push endpoint the way the sidecar sends it — at once after a scrape in a quiet
// period, else at the end of the --push-coalesce window (at most one document per window) — plus
// a network delay, so the filter sees metrics exactly as stale as the sidecar would deliver them. Each request is sent as
// an OpenAI completions body through the filter; the pod is whatever its
// x-gateway-destination-endpoint says. The stream stays open until the request finishes, so the
// filter's in-flight accounting works as in Envoy.
//
// On a prefill/decode cluster the pool is declared by an InferenceTrafficPolicy (profile.pd, the
// seeds' form; `pd` below says which roles are prefix-aware), each pod carries its role label,
// and pages are SGLang's, read per role. The request goes to the decode pod the filter chose; its
// prefill copy is the filter's own proxy_http_call, whose x-gateway-destination-endpoint names
// the prefill pod, and whose answer is delivered when the simulated prefill pod's part ends.
//
// Criticalities: a request with one is sent with the model name of its band (CRITICALITY_MODELS),
// each declared by an InferenceModel of that criticality whose target is the base model, so the
// filter knows each request's band. The filter may then answer a request itself (a local reply:
// its status is the rejection's) or hold it (neither a reply nor the whole request upstream yet);
// a held stream is watched: when its request has gone upstream (upstream.endStream) it was released
// to the pod its x-gateway-destination-endpoint names, and a local reply rejects it. The clock
// is advanced on every hook, and every tickMs (the filter's queue.tick_ms, 10 ms by default)
// while streams are held, so the filter's proxy_on_tick runs and releases them.

import type { HoldControl, PdRoute, PodView, Router, RouteDecision } from '../../../test/sim/cluster.ts';
import type { Criticality } from '../../../test/sim/workload.ts';
import { ProxyWasmHost, type HttpCallReply, type HttpStream, type Plugin } from '../../../test/host/index.ts';
import { buildDocument, renderDocument, type EndpointInput } from '../../../sidecar/state/document.ts';
import { parsePool } from '../../../sidecar/k8s/pool-spec.ts';
import { extract, selectorFor } from '../../../sidecar/metrics/runtime.ts';
import type { TargetRecord } from '../../../sidecar/metrics/scraper.ts';
import type { InferenceModel, InferencePool, InferenceTrafficPolicy } from '../../../sidecar/k8s/types.ts';
import { detokenize } from '../../../test/sim/tokens.ts';
import type { PeerLink, PeerNet } from '../exchange.ts';

export interface WasmEppOptions {
  wasm: Uint8Array;
  strategy?: 'DEFAULT' | 'PREFIX_CACHE';
  /** The sidecar's --push-coalesce: the least time between two documents. */
  coalesceMs?: number;
  /** Network and decode time from the sidecar to the filter. */
  pushLatencyMs?: number;
  /** The sidecar's --metrics-stale. */
  metricsStaleMs?: number;
  /** Extra plugin configuration for the routing filter. */
  config?: Record<string, unknown>;
  model?: string;
  /** Seed of the filter's random tie-breaking (through WASI random_get). */
  seed?: number;
  /** Prefill/decode clusters: which roles the policy makes prefix-aware (default both, as the seeds' prefix-cache variant). */
  pd?: { prefillPrefix: boolean; decodePrefix: boolean };
  /** The simulated servers report prompt cache hits (vLLM --enable-prompt-tokens-details; default true). */
  reportCachedTokens?: boolean;
  /**
   * Gateway replicas whose sidecars share prefix-index records (exchange.ts): this replica joins,
   * with the filter's peers.enabled, unless the configuration turns peers off.
   */
  peers?: PeerNet;
  /**
   * Chaos: the gateway instance restarts at this virtual time. The new one starts empty; its
   * sidecar pushes the state at once and, when sharing, first warms its filter from a peer's
   * snapshot; the old one finishes the streams it has.
   */
  restartAtMs?: number;
}

const ROLE_LABEL = 'rolebasedgroup.workloads.x-k8s.io/role';

const TOKEN = 'simulation-push-token-0123456789';

/** The model name a request of each criticality is sent with (each an InferenceModel targeting the base model). */
export const CRITICALITY_MODELS: Record<Criticality, string> = { Critical: 'qwen-critical', Standard: 'qwen-standard', Sheddable: 'qwen-sheddable' };
/** Virtual time 0 on the filters' clocks (ms since the epoch). */
export const SIM_EPOCH_MS = 1_763_600_000_000;
const T0 = SIM_EPOCH_MS;

export function wasmEpp(o: WasmEppOptions): Router {
  const model = o.model ?? '/model/qwen';
  const coalesce = o.coalesceMs ?? 20;
  const latency = o.pushLatencyMs ?? 2;
  const staleMs = o.metricsStaleMs ?? 1000;
  const peersConfig = (o.config?.peers ?? {}) as { enabled?: unknown };
  const sharing = o.peers !== undefined && peersConfig.enabled !== false;
  const { share_load: _shareLoad, interval_ms: intervalMs, ...filterPeers } = peersConfig as Record<string, unknown>;
  const config = sharing ? { ...o.config, peers: { ...filterPeers, enabled: true } } : o.config;
  const link: PeerLink | undefined = sharing ? o.peers!.join() : undefined;
  // The sidecars also pass on each replica's load (peers.share_load, a bench-only switch: off to
  // measure the prefix exchange alone).
  const sharesLoad = sharing && (peersConfig as { share_load?: unknown }).share_load !== false;
  // peers.interval_ms: the sidecars' --peer-interval (a benchmark switch, like share_load).
  if (link && intervalMs !== undefined) link.setInterval(Number(intervalMs));
  const env = { WASM_EPP_PUSH_TOKEN: TOKEN };
  const common = { wasm: o.wasm, rootId: 'wasm-epp', vmId: 'wasm-epp', env, workers: 2, allowOnHeadersStopIteration: true, bufferLimitBytes: 64 << 20 };
  // Prefill calls: answered when the simulated prefill pod's part of the request ends.
  const rooms = new Map<string, string>();
  const prefills = new Map<string, (r: HttpCallReply | Error) => void>();
  // The gateway instance: Envoy with its filter VMs and shared data. A restart (o.restartAtMs)
  // replaces it; the old one keeps the streams it has until they finish (Envoy drains).
  let host!: ProxyWasmHost;
  let routing!: Plugin;
  let push!: Plugin;
  const retired: ProxyWasmHost[] = [];
  const boot = (atMs: number) => {
    host = new ProxyWasmHost({ clock: 'manual', startTimeMs: T0 + atMs, logLevel: process.env.WASM_EPP_DEBUG ? 'warn' : 'error', maxLogEntries: 1000, logSink: process.env.WASM_EPP_DEBUG ? (e) => { if (e.message.startsWith('DBG')) console.error(e.message); } : undefined, randomSeed: (o.seed ?? 1) + retired.length * 7919 });
    routing = host.loadPlugin({
      ...common, name: 'wasm-epp', configuration: JSON.stringify({ pool: 'default/sim-pool', log_requests: false, ...config }),
      clusters: [{ name: 'wasm_epp_original_dst', type: 'original_dst', httpHeaderName: 'x-gateway-destination-endpoint' }],
      httpCallHandler: (call) => {
        const room = /"bootstrap_room":(\d+)/.exec(call.bodyText)?.[1];
        if (!room) return { status: 400 };
        return new Promise<HttpCallReply>((resolve, reject) => prefills.set(room, (r) => (r instanceof Error ? reject(r) : resolve(r))));
      },
    });
    push = host.loadPlugin({ ...common, name: 'ext-config', configuration: JSON.stringify({ accept_push: true }) });
  };
  boot(0);
  const hosts = () => (retired.length === 0 ? [host] : [host, ...retired]);
  const drainAll = () => {
    for (const h of hosts()) h.drain();
  };

  const pool: InferencePool = {
    apiVersion: 'inference.networking.x-k8s.io/v1alpha2', kind: 'InferencePool',
    metadata: { name: 'sim-pool', namespace: 'default', annotations: { 'inference.networking.x-k8s.io/routing-strategy': o.strategy ?? 'PREFIX_CACHE' } },
    spec: { targetPortNumber: 8000, selector: { app: 'sim' } },
  } as InferencePool;
  const pdPrefix = o.pd ?? { prefillPrefix: true, decodePrefix: true };
  const policy: InferenceTrafficPolicy = {
    apiVersion: 'inferenceextension.alibabacloud.com/v1alpha1', kind: 'InferenceTrafficPolicy',
    metadata: { name: 'sim-policy', namespace: 'default' },
    spec: {
      poolRef: { name: 'sim-pool' }, modelServerRuntime: 'sglang',
      profile: { pd: {
        trafficPolicy: { prefixCache: { mode: 'estimate' } },
        ...(pdPrefix.prefillPrefix ? { prefillPolicyRef: 'prefixCache' } : {}),
        ...(pdPrefix.decodePrefix ? { decodePolicyRef: 'prefixCache' } : {}),
        pdRoleLabelName: ROLE_LABEL, kvTransfer: { bootstrapPort: 34000 },
      } },
    },
  } as InferenceTrafficPolicy;
  let spec = parsePool(pool, 'default').spec;
  // Set on the first request of a P/D cluster: each pod's role.
  let roles: Array<'prefill' | 'decode' | undefined> = [];
  const inferenceModel = (name: string, criticality: Criticality = 'Critical', target = name): InferenceModel => ({
    apiVersion: 'inference.networking.x-k8s.io/v1alpha2', kind: 'InferenceModel',
    metadata: { name: `sim-model-${name.replace(/[^a-z0-9-]/g, '-')}`.slice(0, 63), namespace: 'default', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { modelName: name, criticality, poolRef: { name: 'sim-pool' }, targetModels: [{ name: target, weight: 100 }] },
  } as InferenceModel);
  const models: InferenceModel[] = [inferenceModel(model)];

  const records: TargetRecord[] = [];
  let addresses: string[] = [];
  let version = 0;
  let lastKey = '';
  let lastPushAt = -Infinity;
  let lastBuildAt = -Infinity;
  let pushDue = Infinity; // when the next document is built (rate bound)
  const deliveries: Array<{ at: number; body: string }> = [];
  const open = new Map<string, HttpStream>();
  // Streams whose answer has started (first token sent).
  const answering = new Set<string>();
  const reportCached = o.reportCachedTokens ?? true;
  let nextWorker = 0;
  // Streams the filter holds, and what became of them since the last look.
  const held = new Map<string, HttpStream>();
  let control: HoldControl | undefined;
  const podOf = (s: HttpStream): number => {
    const dest = s.upstream.header('x-gateway-destination-endpoint');
    const pod = dest ? addresses.indexOf(dest) : -1;
    if (pod < 0) throw new Error(`the filter picked ${dest}, not a pod of the pool`);
    return pod;
  };
  // Where a routed stream went: its pod, or on a P/D cluster its decode pod and the prefill pod
  // its prefill call (made as it was routed, with the same room) went to.
  const routeOf = (id: string, s: HttpStream): number | PdRoute => {
    const pod = podOf(s);
    if (!spec.pd) return pod;
    const room = /"bootstrap_room":(\d+)/.exec(s.upstream.bodyText)?.[1];
    if (!room) throw new Error('the filter sent a P/D request without bootstrap_room');
    // The host runs the call's handler now.
    host.drain();
    const made = host.httpCalls.made;
    let call = undefined;
    for (let k = made.length - 1; k >= 0 && k >= made.length - 512; k--) {
      if (made[k].bodyText.includes(`"bootstrap_room":${room}`)) {
        call = made[k];
        break;
      }
    }
    const prefill = call?.target ? addresses.indexOf(call.target) : -1;
    if (!call || prefill < 0) throw new Error(`no prefill call for room ${room}`);
    if (!prefills.has(room)) throw new Error(`the prefill call for room ${room} did not reach its upstream`);
    rooms.set(id, room);
    return { decode: pod, prefill } satisfies PdRoute;
  };
  // A held stream's outcome: released upstream (to its pod) or answered by the filter.
  const settled = (id: string, s: HttpStream) => {
    if (s.localReply) {
      held.delete(id);
      if (s.localReply.status !== 429) throw new Error(`the filter answered ${s.localReply.status} to a held request: ${s.localReply.bodyText}`);
      control!.reject(id, s.localReply.status);
    } else if (s.upstream.endStream) {
      held.delete(id);
      open.set(id, s);
      control!.dispatch(id, routeOf(id, s));
    } else if (s.done) {
      throw new Error(`a held stream ended without a reply (${s.state})`);
    }
  };
  // The pods as the cluster shows them (set at the first request): a deletion is seen at once.
  let podViews: readonly PodView[] = [];
  let removedSeen = 0;
  const watchPods = (now: number) => {
    let removed = 0;
    for (const p of podViews) if (p.removed) removed++;
    if (removed === removedSeen) return;
    removedSeen = removed;
    // The sidecar's watch event: a new document, within the coalescing window.
    lastKey = '';
    if (pushDue === Infinity) pushDue = Math.max(now, lastBuildAt + coalesce);
  };
  let restarts = 0;
  const changed: Array<[string, HttpStream]> = [];
  const checkHeld = () => {
    while (changed.length > 0) {
      const [id, s] = changed.shift()!;
      if (held.get(id) === s) settled(id, s);
    }
    for (const h of hosts()) if (h.traps.length > 0) throw new Error(`the filter trapped: ${h.traps[0].message}`);
  };

  const clockTo = (now: number) => {
    const target = T0 + now;
    for (const h of hosts()) {
      const d = target - h.clock.nowMs();
      if (d > 0) h.advance(d);
    }
  };

  const build = (now: number) => {
    // Before the first request the pods' addresses are not known: nothing to publish yet.
    if (addresses.length === 0) return;
    lastBuildAt = now;
    // A deleted pod leaves the sidecar's document as soon as its watch sees it.
    const live = addresses.map((_, i) => !podViews[i]?.removed);
    const endpoints: EndpointInput[] = addresses.map((a, i) => ({
      pod: `pod-${i}`, ip: a.split(':')[0], k8sReady: true, firstSeenMs: 0, record: records[i],
      ...(roles[i] ? { labels: { [ROLE_LABEL]: roles[i]! } } : {}),
    })).filter((_, i) => live[i]);
    const built = buildDocument({ pools: [{ spec, endpoints }], models, defaultNamespace: 'default', metricsStaleMs: staleMs, nowMs: T0 + now });
    // The sidecar pushes when the document changes, and at least every push interval (1 s).
    if (built.key === lastKey && now - lastPushAt < 1000) return;
    lastKey = built.key;
    lastPushAt = now;
    deliveries.push({ at: now + latency, body: renderDocument(built, ++version, T0 + now) });
  };

  // Runs everything due by `now`, in time order: documents built, documents delivered.
  let delivered = 0;
  const deliver = (body: string) => {
    delivered++;
    const r = push.worker(0).requestSync({ method: 'POST', path: '/wasm-epp/v1/state', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body });
    if (r.status !== 204) throw new Error(`the filter refused the sidecar's document: ${r.status} ${r.kind === 'local' ? r.bodyText : ''}`);
  };

  // The sidecar's prefix exchange (exchange.ts): read the journal, merge what peers sent.
  // One request each way, as the sidecar does (/wasm-epp/v1/share: sections of kind 1, prefix
  // records, and 2, a load record).
  const SHARE = '/wasm-epp/v1/share';
  const POOL = 'default/sim-pool';
  const section = (kind: number, payload: Uint8Array): Uint8Array => {
    const out = new Uint8Array(5 + payload.byteLength);
    out[0] = kind;
    new DataView(out.buffer).setUint32(1, payload.byteLength, true);
    out.set(payload, 5);
    return out;
  };
  const loadSection = (replica: string, record: Uint8Array): Uint8Array => {
    const p = Buffer.from(POOL);
    const r = Buffer.from(replica);
    return section(2, Buffer.concat([Buffer.from([p.length]), p, Buffer.from([r.length]), r, record]));
  };
  const pull = (l: PeerLink, at: number) => {
    l.pulled();
    const r = push.worker(0).requestSync({ method: 'GET', path: `${SHARE}?since=${l.cursor}${sharesLoad ? `&pool=${POOL}` : ''}`, headers: { authorization: `Bearer ${TOKEN}` } });
    if (r.status !== 200 || r.kind !== 'local') throw new Error(`the filter refused the sidecar's read: ${r.status} ${r.kind === 'local' ? r.bodyText : ''}`);
    l.cursor = Number(r.header('x-wasm-epp-prefix-next'));
    const lost = Number(r.header('x-wasm-epp-prefix-lost'));
    if (lost > 0) journalLost += lost;
    const b = r.body;
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let off = 0; off < b.byteLength;) {
      const kind = b[off];
      const len = v.getUint32(off + 1, true);
      const payload = b.slice(off + 5, off + 5 + len);
      if (kind === 1 && payload.byteLength > 0) l.send(payload, at);
      // A load section: pool length, pool, replica length (0: this replica), record.
      if (kind === 2) l.sendLoad(payload.subarray(2 + payload[0]), at);
      off += 5 + len;
    }
  };
  const postShare = (body: Uint8Array) => {
    const r = push.worker(0).requestSync({ method: 'POST', path: SHARE, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/vnd.wasm-epp.share' }, body });
    if (r.status !== 204) throw new Error(`the filter refused what a peer sent: ${r.status} ${r.kind === 'local' ? r.bodyText : ''}`);
    return r;
  };
  const mergeLoad = (from: number, record: Uint8Array) => void postShare(loadSection(`replica-${from}`, record));
  const mergeBatch = (batch: Uint8Array): number => Number(postShare(section(1, batch)).header('x-wasm-epp-prefix-merged'));
  let journalLost = 0;

  // Chaos: a new gateway instance replaces this one.
  let restartDue = o.restartAtMs ?? Infinity;
  const restart = (at: number) => {
    restartDue = Infinity;
    if (held.size > 0) throw new Error('restarting a replica that holds requests is not modelled');
    retired.push(host);
    boot(at);
    restarts++;
    // Its sidecar starts with it: documents on their way to the old instance are gone.
    deliveries.length = 0;
    pushDue = Infinity;
    if (link) {
      // Warm-up before ready: a peer's snapshot into the new filter, then a fresh cursor.
      link.cursor = 0;
      for (const batch of link.snapshot(at)) warmedHashes += mergeBatch(batch);
    }
    if (addresses.length > 0) {
      lastKey = '';
      build(at);
      deliver(deliveries.pop()!.body);
    } else {
      delivered = 0;
    }
  };
  let warmedHashes = 0;

  const catchUp = (now: number) => {
    watchPods(now);
    while (true) {
      const nextDelivery = deliveries.length > 0 ? deliveries[0].at : Infinity;
      const nextPull = link ? link.next : Infinity;
      const nextBatch = link && link.inbox.length > 0 ? link.inbox[0].at : Infinity;
      const t = Math.min(pushDue, nextDelivery, nextPull, nextBatch, restartDue);
      if (t > now) break;
      clockTo(t);
      if (t === restartDue) {
        restart(t);
        continue;
      }
      if (t === pushDue) {
        pushDue = Infinity;
        build(t);
        continue;
      }
      if (t === nextDelivery) {
        deliver(deliveries.shift()!.body);
        continue;
      }
      if (t === nextPull) {
        pull(link!, t);
        continue;
      }
      const d = link!.inbox.shift()!;
      if (d.kind === 'load') mergeLoad(d.from, d.batch);
      else link!.merged(d, mergeBatch(d.batch));
    }
    clockTo(now);
  };

  const tickMs = Number((config?.queue as { tick_ms?: unknown } | undefined)?.tick_ms ?? 10);
  return {
    name: 'wasm-epp',
    stats() {
      // The filter's own view of its answers (its metrics, summed over labels).
      const sum = (prefix: string) => hosts().reduce((t, h) => t + h.metrics.filter((m) => m.name.startsWith(`wasmcustom.${prefix}`)).reduce((a, m) => a + m.value, 0), 0);
      return {
        prompt_tokens: sum('wasm_epp.prompt_tokens_total'),
        cached_tokens: sum('wasm_epp.cached_tokens_total'),
        predicted_cached_tokens: sum('wasm_epp.predicted_cached_tokens_total'),
        responses_without_usage: sum('wasm_epp.responses_without_usage'),
        ...(restarts > 0 ? { restarts, warmup_hashes_merged: warmedHashes } : {}),
        ...(link ? { peer_records_journaled: sum('wasm_epp.peer_records_journaled'), peer_hashes_merged: sum('wasm_epp.peer_hashes_merged'), peer_journal_lost: journalLost } : {}),
        prefix_confirmed: sum('wasm_epp.endpoint_prefix_confirmed_total'),
        prefix_missed: sum('wasm_epp.endpoint_prefix_missed_total'),
      };
    },
    tickMs: Number.isFinite(tickMs) && tickMs > 0 ? tickMs : 10,
    attach(c) {
      control = c;
    },
    onTick(now) {
      catchUp(now);
      checkHeld();
    },
    onScrape(pod, _metrics, now, page) {
      catchUp(now);
      checkHeld();
      const role = roles[pod];
      const runtime = spec.pd ? 'sglang' : 'vllm';
      const x = extract(runtime, selectorFor(runtime, role).select(Buffer.from(page())).samples, role);
      const rec = (records[pod] ??= { firstSeenMs: 0, attempts: 0, consecutiveUnreachable: 0, unreachable: false });
      rec.attempts++;
      if (x.ok) {
        rec.metrics = x.metrics;
        rec.lastSuccessMs = T0 + now;
      }
      if (pushDue === Infinity) {
        // Leading edge in a quiet period; otherwise the end of the window since the last one.
        pushDue = Math.max(now, lastBuildAt + coalesce);
        catchUp(now);
        checkHeld();
      }
    },
    route(req, now, view) {
      if (addresses.length === 0) {
        podViews = view.pods;
        addresses = view.pods.map((p) => p.address);
        roles = view.pods.map((p) => p.role);
        if (roles.some(Boolean)) {
          spec = parsePool(pool, 'default', [policy]).spec;
          if (!spec.pd) throw new Error('the prefill/decode policy was not read');
        }
      }
      catchUp(now);
      checkHeld();
      if (delivered === 0) {
        // The stack ran before the load started: the sidecar's first document is in place.
        pushDue = Infinity;
        deliveries.length = 0;
        build(now);
        deliver(deliveries.shift()!.body);
      }
      // A request for a LoRA adapter names the adapter as its model, as OpenAI clients of vLLM do;
      // the operator declared an InferenceModel for it before the load started. A request with a
      // criticality names its band's model; the three were declared before the load started.
      const name = req.lora ?? (req.criticality ? CRITICALITY_MODELS[req.criticality] : model);
      if (!models.some((m) => m.spec?.modelName === name)) {
        if (req.criticality && !req.lora) {
          for (const c of ['Critical', 'Standard', 'Sheddable'] as const) models.push(inferenceModel(CRITICALITY_MODELS[c], c, model));
        } else {
          models.push(inferenceModel(name));
        }
        pushDue = Infinity;
        build(now);
        const latest = deliveries.pop()!;
        deliveries.length = 0; // it supersedes any document still on its way
        deliver(latest.body);
      }
      const body = JSON.stringify({ model: name, prompt: detokenize(req.tokens), max_tokens: req.maxTokens, stream: true, stream_options: { include_usage: true } });
      const s = routing.worker(nextWorker++ % 2).newHttpStream();
      s.requestHeaders({ ':method': 'POST', ':path': '/v1/completions', ':authority': 'sim', ':scheme': 'http', 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }, false);
      s.requestBody(body, true);
      checkHeld();
      if (s.localReply) {
        // A rejection (429: a full band, or a Sheddable request shed) is an answer; anything else a fault.
        if (s.localReply.status === 429) return { reject: 429 } satisfies RouteDecision;
        throw new Error(`the filter answered ${s.localReply.status}: ${s.localReply.bodyText}`);
      }
      if (!s.upstream.endStream) {
        // Held by the filter's queue: released later from its root context.
        if (!control) throw new Error('the filter held a request before attach()');
        held.set(req.id, s);
        s.observer = { upstreamRequestComplete: () => changed.push([req.id, s]), downstream: () => changed.push([req.id, s]) };
        return { hold: true };
      }
      open.set(req.id, s);
      return routeOf(req.id, s);
    },
    async onPrefillDone(req, _pod, ok, now) {
      catchUp(now);
      const room = rooms.get(req.id);
      if (room === undefined) return;
      rooms.delete(req.id);
      const answer = prefills.get(room);
      prefills.delete(room);
      answer?.(ok ? { status: 200, headers: { 'content-type': 'application/json' }, body: '{}' } : new Error('reset'));
      // The answer reaches the filter's root context through the host's dispatcher.
      await new Promise((r) => setImmediate(r));
      drainAll();
    },
    onFirstToken(req, _pod, now) {
      catchUp(now);
      checkHeld();
      const s = open.get(req.id);
      if (!s || answering.has(req.id)) return;
      answering.add(req.id);
      // The answer starts: headers, then the first token's chunk, as vLLM streams a completion.
      s.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
      s.responseBody(`data: {"id":"cmpl-${req.id}","object":"text_completion","created":0,"model":"${model}","choices":[{"index":0,"text":" x","logprobs":null,"finish_reason":null}],"usage":null}\n\n`, false);
    },
    onFinished(req, _pod, now, usage) {
      catchUp(now);
      checkHeld();
      const s = open.get(req.id);
      if (!s) return;
      open.delete(req.id);
      const started = answering.delete(req.id);
      if (!usage) {
        // A failed request: its stream ends where it is.
        if (!started) s.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, true);
        else s.responseBody('', true);
      } else {
        if (!started) s.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }, false);
        // The usage chunk (stream_options.include_usage), with the prefix-cache hit as vLLM reports
        // it under --enable-prompt-tokens-details (left out when 0), then [DONE].
        const u: Record<string, unknown> = { prompt_tokens: usage.promptTokens, total_tokens: usage.promptTokens + usage.completionTokens, completion_tokens: usage.completionTokens };
        if (reportCached && usage.cachedTokens > 0) u.prompt_tokens_details = { cached_tokens: usage.cachedTokens };
        s.responseBody(`data: ${JSON.stringify({ id: `cmpl-${req.id}`, object: 'text_completion', created: 0, model, choices: [], usage: u })}\n\ndata: [DONE]\n\n`, true);
      }
      // A finished request may wake the filter's queue: what it released or answered.
      drainAll();
      checkHeld();
    },
  };
}
