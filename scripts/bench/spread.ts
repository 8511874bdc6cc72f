// Several gateway replicas behind a load balancer that knows nothing of prompts (--gateways N,
// docs/benchmark.md "Gateway replicas"). spread() makes N routers, each with its own state, look
// like one to the simulated cluster:
//   - each request goes to a replica drawn uniformly at random (the spreader's own seeded
//     generator), and the spreader remembers which replica took it;
//   - that replica's answer passes through: a pod, a rejection, or a hold; a held request is later
//     sent or rejected by that replica alone, through the HoldControl it got in attach() (the
//     cluster's own, wrapped only to keep the replica's books) or through its onTick;
//   - a request's later hooks (onFirstToken, onPrefillDone, onFinished) go to its replica only;
//   - every scrape goes to every replica (each replica's sidecar scrapes every pod itself; the
//     page is rendered once and handed to each);
//   - onTick goes to every replica that has one, each at its own period (the spreader ticks at
//     the smallest), and their decisions are merged in replica order;
//   - stats() sums the replicas' figures, key by key.
// Each replica sees the pods' scraped metrics as they all do, but its own count of requests in
// flight per pod (PodView.outstanding: the requests *this* router sent that have not finished),
// as a replica of SGLang's router or of a least-request balancer counts only its own.
// An oracle is one omniscient router and cannot be spread. With one router, spread() returns it
// unchanged.

import type { HeldDecision, HoldControl, PdRoute, PodMetrics, PodView, RouteDecision, Router, RouterView, SimRequest } from '../../test/sim/cluster.ts';
import { Rng } from '../../test/sim/rng.ts';

const DEFAULT_TICK_MS = 10; // the cluster's default

export function spread(routers: Router[], seed: number): Router {
  if (routers.length === 0) throw new RangeError('spread: no routers');
  const oracle = routers.find((r) => r.oracle);
  if (oracle) throw new Error(`spread: ${oracle.name} is an oracle (one omniscient router), it cannot be spread over replicas`);
  if (routers.length === 1) return routers[0];

  const n = routers.length;
  const rng = new Rng(seed);
  const name = routers[0].name;
  // Request id -> the replica that took it, from route() until it finished or was rejected.
  const owner = new Map<string, number>();
  // Per replica and pod: the requests the replica sent there that have not finished.
  const inFlight: number[][] = routers.map(() => []);
  const tickOf = routers.map((r) => r.tickMs ?? DEFAULT_TICK_MS);
  for (let i = 0; i < n; i++) if (!(tickOf[i] > 0)) throw new RangeError(`spread: ${routers[i].name} (replica ${i}): tickMs must be > 0, got ${tickOf[i]}`);
  const nextTick = new Array<number>(n).fill(0);
  const ticking = routers.some((r) => r.onTick);

  const add = (i: number, pod: number, by: number) => {
    inFlight[i][pod] = (inFlight[i][pod] ?? 0) + by;
  };
  const sent = (i: number, route: number | PdRoute) => {
    if (typeof route === 'number') add(i, route, 1);
    else {
      add(i, route.decode, 1);
      add(i, route.prefill, 1);
    }
  };
  const ownerOf = (id: string, hook: string): number => {
    const i = owner.get(id);
    if (i === undefined) throw new Error(`spread: ${hook} for ${id}, a request no replica took`);
    return i;
  };
  const mustOwn = (i: number, id: string) => {
    if (owner.get(id) !== i) throw new Error(`spread: replica ${i} (${routers[i].name}) decided on ${id}, a request it does not hold`);
  };
  // A held request's fate, decided by replica i.
  const decided = (i: number, d: HeldDecision) => {
    mustOwn(i, d.id);
    if ('reject' in d) owner.delete(d.id);
    else sent(i, d.pod);
  };

  // Each replica's view: the cluster's, with its own in-flight counts.
  let base: RouterView | undefined;
  let views: RouterView[] = [];
  const viewFor = (i: number, view: RouterView): RouterView => {
    if (view !== base) {
      base = view;
      views = routers.map((_, k) => replicaView(view, inFlight[k]));
    }
    return views[i];
  };

  return {
    name,
    tickMs: Math.min(...tickOf),
    attach(control: HoldControl) {
      routers.forEach((r, i) =>
        r.attach?.({
          dispatch(id, pod) {
            decided(i, { id, pod });
            control.dispatch(id, pod);
          },
          reject(id, status) {
            decided(i, { id, reject: status });
            control.reject(id, status);
          },
        }),
      );
    },
    route(req: SimRequest, now: number, view: RouterView) {
      const i = rng.int(0, n - 1);
      const r = routers[i];
      owner.set(req.id, i);
      const took = (d: RouteDecision): RouteDecision => {
        if (typeof d === 'object' && d !== null && 'hold' in d && d.hold === true) {
          if (!r.onTick && !r.attach) throw new Error(`router ${r.name} holds ${req.id} but has neither onTick nor attach`);
        } else if (typeof d === 'object' && d !== null && 'reject' in d) {
          owner.delete(req.id);
        } else {
          sent(i, d as number | PdRoute);
        }
        return d;
      };
      const d = r.route(req, now, viewFor(i, view));
      return d instanceof Promise ? d.then(took) : took(d);
    },
    ...(ticking
      ? {
          async onTick(now: number, view: RouterView) {
            const all: HeldDecision[] = [];
            for (let i = 0; i < n; i++) {
              const r = routers[i];
              if (!r.onTick || now < nextTick[i]) continue;
              nextTick[i] = (Math.floor(now / tickOf[i]) + 1) * tickOf[i];
              const got = await r.onTick(now, viewFor(i, view));
              if (!got) continue;
              for (const d of got) decided(i, d);
              all.push(...got);
            }
            return all.length > 0 ? all : undefined;
          },
        }
      : {}),
    onFirstToken(req: SimRequest, pod: number, now: number) {
      routers[ownerOf(req.id, 'onFirstToken')].onFirstToken?.(req, pod, now);
    },
    onPrefillDone(req: SimRequest, prefillPod: number, ok: boolean, now: number) {
      const i = ownerOf(req.id, 'onPrefillDone');
      add(i, prefillPod, -1);
      return routers[i].onPrefillDone?.(req, prefillPod, ok, now);
    },
    onFinished(req, pod, now, usage) {
      const i = ownerOf(req.id, 'onFinished');
      owner.delete(req.id);
      add(i, pod, -1);
      routers[i].onFinished?.(req, pod, now, usage);
    },
    async onScrape(pod: number, metrics: PodMetrics, now: number, page: () => string) {
      let text: string | undefined;
      const once = () => (text ??= page());
      for (const r of routers) if (r.onScrape) await r.onScrape(pod, metrics, now, once);
    },
    ...(routers.some((r) => r.stats)
      ? {
          stats() {
            const sum: Record<string, number> = {};
            for (const r of routers) for (const [k, v] of Object.entries(r.stats?.() ?? {})) sum[k] = (sum[k] ?? 0) + v;
            return sum;
          },
        }
      : {}),
  };
}

/** The cluster's view with this replica's own in-flight counts. */
function replicaView(view: RouterView, inFlight: number[]): RouterView {
  const pods: PodView[] = view.pods.map((p) => {
    const pv = {
      index: p.index,
      name: p.name,
      address: p.address,
      get metrics() {
        return p.metrics;
      },
      get outstanding() {
        return inFlight[p.index] ?? 0;
      },
    };
    if (p.role !== undefined) Object.defineProperty(pv, 'role', { value: p.role, enumerable: true });
    if ('removed' in p) Object.defineProperty(pv, 'removed', { get: () => p.removed, enumerable: true });
    return pv;
  });
  return {
    get now() {
      return view.now;
    },
    pods,
  };
}
