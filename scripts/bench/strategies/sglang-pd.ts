// SGLang's router in prefill/decode mode (sgl-model-gateway, `--pd-disaggregation`): it picks a
// prefill worker and a decode worker, each by a policy over that role's workers alone
// (`--prefill-policy`, `--decode-policy`; without them the router's `--policy` serves both, and
// cache_aware is the router's default), then sends the body to both.
//   random       uniform over the role's workers, on both sides;
//   cache-aware  cache_aware (strategies/sglang.ts) on each side, with its own tree per role.
// Each side sees only its role's workers, re-indexed, as the router's per-role worker lists do.

import type { PodView, Router, RouterView, SimRequest } from '../../../test/sim/cluster.ts';
import { Rng } from '../../../test/sim/rng.ts';
import { sglangCacheAware } from './sglang.ts';

type Role = 'prefill' | 'decode';

// The role's pods as a view of their own, and the way back to cluster indexes.
function roleView(view: RouterView, role: Role): { sub: RouterView; index: number[] } {
  const index: number[] = [];
  const pods: PodView[] = [];
  for (const p of view.pods) {
    if (p.role !== role) continue;
    pods.push({ index: index.length, name: p.name, address: p.address, metrics: p.metrics, outstanding: p.outstanding, role: p.role });
    index.push(p.index);
  }
  return { sub: { now: view.now, pods }, index };
}

export function sglangPd(policy: 'random' | 'cache-aware', seed = 1): Router {
  if (policy === 'random') {
    const rng = new Rng(seed);
    const pick = (view: RouterView, role: Role) => {
      const { index } = roleView(view, role);
      return index[Math.floor(rng.next() * index.length)];
    };
    return { name: 'sglang-pd-random', route: (_req, _now, view) => ({ prefill: pick(view, 'prefill'), decode: pick(view, 'decode') }) };
  }
  const sides = { prefill: sglangCacheAware(), decode: sglangCacheAware() };
  const side = async (req: SimRequest, now: number, view: RouterView, role: Role) => {
    const { sub, index } = roleView(view, role);
    const k = await sides[role].route(req, now, sub);
    if (typeof k !== 'number') throw new Error('cache_aware returned a P/D route');
    return index[k];
  };
  return {
    name: 'sglang-pd-cache-aware',
    async route(req, now, view) {
      return { prefill: await side(req, now, view, 'prefill'), decode: await side(req, now, view, 'decode') };
    },
  };
}
