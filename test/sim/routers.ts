// Baseline routers for the cluster driver. Each sees only what a real proxy has: its own
// count of outstanding requests per pod and the pods' scraped metrics.
//
//   roundRobin    the next pod in turn (Kubernetes Service / Envoy ROUND_ROBIN)
//   random        a uniformly random pod (Envoy RANDOM)
//   leastRequest  the pod with the fewest outstanding requests from this router, ties broken at
//                 random; with `choices` set, the fewer of that many random pods (Envoy
//                 LEAST_REQUEST's power-of-two-choices)

import type { PodView, Router } from "./cluster.ts";
import { Rng } from "./rng.ts";

export function roundRobin(): Router {
  let next = 0;
  return {
    name: "round-robin",
    route(_req, _now, view) {
      const pod = next % view.pods.length;
      next = pod + 1;
      return pod;
    },
  };
}

export function random(seed = 1): Router {
  const rng = new Rng(seed);
  return {
    name: "random",
    route: (_req, _now, view) => rng.int(0, view.pods.length - 1),
  };
}

export function leastRequest(opts: { seed?: number; choices?: number } = {}): Router {
  const rng = new Rng(opts.seed ?? 1);
  return {
    name: opts.choices ? `least-request(p${opts.choices}c)` : "least-request",
    route(_req, _now, view) {
      const pods = view.pods;
      if (opts.choices && opts.choices < pods.length) {
        let best = -1;
        for (let k = 0; k < opts.choices; k++) {
          const i = rng.int(0, pods.length - 1);
          if (best < 0 || pods[i].outstanding < pods[best].outstanding) best = i;
        }
        return best;
      }
      let min = Infinity;
      let ties = 0;
      let pick = 0;
      for (const p of pods) {
        if (p.outstanding < min) {
          min = p.outstanding;
          ties = 1;
          pick = p.index;
        } else if (p.outstanding === min && rng.next() * ++ties < 1) {
          pick = p.index;
        }
      }
      return pick;
    },
  };
}

function ofRole(pods: readonly PodView[], role: "prefill" | "decode"): PodView[] {
  return pods.filter((p) => p.role === role);
}

export function pdRoundRobin(): Router {
  const next = { prefill: 0, decode: 0 };
  const pick = (pods: readonly PodView[], role: "prefill" | "decode") => {
    const list = ofRole(pods, role);
    const p = list[next[role] % list.length];
    next[role] = (next[role] % list.length) + 1;
    return p.index;
  };
  return {
    name: "pd-round-robin",
    route: (_req, _now, view) => ({ prefill: pick(view.pods, "prefill"), decode: pick(view.pods, "decode") }),
  };
}

export function pdLeastRequest(opts: { seed?: number } = {}): Router {
  const rng = new Rng(opts.seed ?? 1);
  const pick = (pods: readonly PodView[], role: "prefill" | "decode") => {
    let min = Infinity;
    let ties = 0;
    let best = -1;
    for (const p of ofRole(pods, role)) {
      if (p.outstanding < min) {
        min = p.outstanding;
        ties = 1;
        best = p.index;
      } else if (p.outstanding === min && rng.next() * ++ties < 1) {
        best = p.index;
      }
    }
    return best;
  };
  return {
    name: "pd-least-request",
    route: (_req, _now, view) => ({ prefill: pick(view.pods, "prefill"), decode: pick(view.pods, "decode") }),
  };
}
