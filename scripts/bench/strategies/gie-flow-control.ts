// The Gateway API Inference Extension's endpoint picker with flow control on (the `flowControl`
// feature gate; the flow controller now lives in llm-d-router, pkg/epp/flowcontrol/), with its
// defaults, as an external picker sees the pool:
//
//   - bands by priority: Critical (priority 1) > Standard (0, also requests without a
//     criticality) > Sheddable (-1); a Sheddable request is queued like the others, under the
//     same limits (flow control does not shed it at once);
//   - FCFS within a band (one flow per band here: one InferenceModel per criticality);
//   - admission at arrival: a band holding 5000 requests, or whose bytes would pass 1 GB, answers
//     429 at once (a request's bytes: its body, 4 bytes per prompt token, test/sim/tokens.ts, plus
//     64 for the rest of the JSON);
//   - a dispatch cycle when a request arrives and every 1 ms: unless the pool is saturated
//     (GIE's utilization detector, gie.ts: the mean over pods of max(waiting / 5, KV usage / 0.8),
//     stale pods 1.0; the static usage limit 1.0 for every band), the head of the highest
//     non-empty band is dispatched — one request per cycle — and scheduled by GIE's default
//     profile (gie.ts) on the metrics of the last scrape;
//   - no in-flight credits: between two scrapes the detector sees the same metrics however many
//     requests were dispatched since, so up to one request per millisecond goes out until the
//     next scrape shows the pods saturated;
//   - a request still queued 60 s after it arrived (the default request TTL) is answered 429.

import type { HeldDecision, HoldControl, Router, RouterView, SimRequest } from '../../../test/sim/cluster.ts';
import { giePicker, poolSaturation } from './gie.ts';

export const FLOW_CONTROL_DEFAULTS = {
  /** Per band. */
  maxRequests: 5000,
  maxBytes: 1_000_000_000,
  ttlMs: 60_000,
  /** The processor's dispatch ticker. */
  dispatchEveryMs: 1,
  /** The static usage limit: dispatch while saturation is below it. */
  usageLimit: 1.0,
};

export type FlowControlOptions = typeof FLOW_CONTROL_DEFAULTS;

export function priorityOf(req: SimRequest): number {
  return req.criticality === 'Critical' ? 1 : req.criticality === 'Sheddable' ? -1 : 0;
}

export function requestBytes(req: SimRequest): number {
  return 4 * req.tokens.length + 64;
}

interface Item {
  req: SimRequest;
  at: number;
  bytes: number;
}

/** A FIFO with O(1) removal at the head. */
class Fifo {
  private items: Item[] = [];
  private head = 0;
  bytes = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(it: Item): void {
    this.items.push(it);
    this.bytes += it.bytes;
  }
  peek(): Item | undefined {
    return this.items[this.head];
  }
  shift(): Item {
    const it = this.items[this.head++];
    this.bytes -= it.bytes;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return it;
  }
}

export function gieFlowControl(seed = 11, options: Partial<FlowControlOptions> = {}, model = '/model/qwen'): Router {
  const o = { ...FLOW_CONTROL_DEFAULTS, ...options };
  const pick = giePicker(seed, model);
  const bands = new Map<number, Fifo>([[1, new Fifo()], [0, new Fifo()], [-1, new Fifo()]]);
  const order = [1, 0, -1];
  let control: HoldControl;

  // One dispatch cycle: the request it sent to a pod, if any.
  const cycle = (now: number, view: RouterView): { req: SimRequest; pod: number } | null => {
    if (poolSaturation(view.pods, now) >= o.usageLimit) return null;
    for (const p of order) {
      const q = bands.get(p)!;
      if (q.size === 0) continue;
      const it = q.shift();
      return { req: it.req, pod: pick(it.req, view) };
    }
    return null;
  };

  return {
    name: 'gie-flow-control',
    tickMs: o.dispatchEveryMs,
    attach(c) {
      control = c;
    },
    route(req, now, view) {
      const q = bands.get(priorityOf(req))!;
      const bytes = requestBytes(req);
      if (q.size + 1 > o.maxRequests || q.bytes + bytes > o.maxBytes) return { reject: 429 };
      q.push({ req, at: now, bytes });
      const d = cycle(now, view);
      if (d && d.req === req) return d.pod;
      if (d) control.dispatch(d.req.id, d.pod);
      return { hold: true };
    },
    onTick(now, view) {
      const out: HeldDecision[] = [];
      // TTL: the request's context deadline.
      for (const p of order) {
        const q = bands.get(p)!;
        while (q.size > 0 && q.peek()!.at + o.ttlMs <= now) out.push({ id: q.shift().req.id, reject: 429 });
      }
      const d = cycle(now, view);
      if (d) out.push({ id: d.req.id, pod: d.pod });
      return out;
    },
  };
}
