// The Gateway API Inference Extension's endpoint picker with its default configuration (v1.5):
// queue-scorer (min-max of waiting requests, weight 2), kv-cache-utilization-scorer (1 - KV
// usage, weight 2), prefix-cache-scorer (approximate prefix index, weight 3), max-score picker
// with random tie-breaking. The prefix index: the prompt's 64-character blocks, chained hashes,
// greedy match from the first block until a block no pod has; after each pick the chosen pod's
// LRU (capacity: its num_gpu_blocks, the default autoTune) records every block. Metrics come
// from the same periodic scrapes every strategy gets.
//
// Admission without flow control (the legacy admission controller, the v1-era behaviour): a
// Sheddable request (priority < 0) is answered 429 when the saturation detector says the pool is
// saturated (saturation >= 1.0); every other request is forwarded, however loaded the pool.
// Saturation is the utilization detector's: the mean over pods of max(waiting / 5, KV usage /
// 0.8), a pod whose metrics are older than 200 ms (or missing) counting 1.0.

import type { PodView, Router, RouterView, SimRequest } from '../../../test/sim/cluster.ts';
import { Rng } from '../../../test/sim/rng.ts';
import { blockHashes, PodLru, promptText } from './prefix-blocks.ts';

const DEFAULT_LRU = 31_250;

// GIE's approximate prefix index: per pod an LRU of the block hashes it was sent.
export class ApproxPrefixIndex {
  private readonly lrus: PodLru[] = [];

  // Blocks matched per pod (greedy: count until a block no pod has), and the prompt's hashes.
  match(req: SimRequest, pods: number, model: string): { hashes: bigint[]; matched: number[] } {
    while (this.lrus.length < pods) this.lrus.push(new PodLru(DEFAULT_LRU));
    const hashes = blockHashes(promptText(req), req.lora ?? model);
    const matched = new Array<number>(pods).fill(0);
    for (const h of hashes) {
      let any = false;
      for (let i = 0; i < pods; i++) {
        if (this.lrus[i].has(h)) {
          matched[i]++;
          any = true;
        }
      }
      if (!any) break;
    }
    return { hashes, matched };
  }

  // The chosen pod was sent these blocks; its LRU holds up to its KV blocks (autoTune).
  record(pod: number, hashes: bigint[], kvBlocks?: number): void {
    if (kvBlocks && kvBlocks > 0) this.lrus[pod].capacity = kvBlocks;
    for (const h of hashes) this.lrus[pod].add(h);
  }
}

// GIE's queue-scorer: min-max of waiting requests, 1 for the shortest queue (and for all when equal).
export function queueScores(waiting: number[]): number[] {
  const min = Math.min(...waiting);
  const max = Math.max(...waiting);
  return waiting.map((w) => (max === min ? 1 : (max - w) / (max - min)));
}

// GIE's max-score picker: the best score, ties broken uniformly at random.
export function maxScorePick(scores: number[], rng: Rng): number {
  let best = -Infinity;
  let pick = 0;
  let ties = 0;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i] > best + 1e-12) {
      best = scores[i];
      pick = i;
      ties = 1;
    } else if (Math.abs(scores[i] - best) <= 1e-12 && rng.next() * ++ties < 1) {
      pick = i;
    }
  }
  return pick;
}

// The utilization saturation detector's defaults.
export const QUEUE_DEPTH_THRESHOLD = 5;
export const KV_CACHE_UTIL_THRESHOLD = 0.8;
export const METRICS_STALENESS_MS = 200;

/** The pool's saturation as GIE's utilization detector computes it (1.0 with no pods). */
export function poolSaturation(pods: readonly PodView[], now: number): number {
  if (pods.length === 0) return 1;
  let total = 0;
  for (const p of pods) {
    const m = p.metrics;
    if (!m || now - m.scrapedAtMs > METRICS_STALENESS_MS) total += 1;
    else total += Math.max(m.waiting / QUEUE_DEPTH_THRESHOLD, m.kvUsage / KV_CACHE_UTIL_THRESHOLD);
  }
  return total / pods.length;
}

/** GIE's scheduling with its default profile: the pod for a request, recorded in the prefix index. */
export function giePicker(seed = 11, model = '/model/qwen'): (req: SimRequest, view: RouterView) => number {
  const rng = new Rng(seed);
  const index = new ApproxPrefixIndex();
  return (req, view) => {
    const pods = view.pods;
    const n = pods.length;
    const { hashes, matched } = index.match(req, n, model);
    const queue = queueScores(pods.map((p) => p.metrics?.waiting ?? 0));
    const scores = pods.map((p, i) => {
      const prefix = hashes.length > 0 ? matched[i] / hashes.length : 0;
      return 2 * queue[i] + 2 * (1 - (p.metrics?.kvUsage ?? 0)) + 3 * prefix;
    });
    const pick = maxScorePick(scores, rng);
    index.record(pick, hashes, pods[pick].metrics?.kvBlocksTotal);
    return pick;
  };
}

export function gie(seed = 11, model = '/model/qwen'): Router {
  const pick = giePicker(seed, model);
  return {
    name: 'gie',
    route(req, now, view) {
      if (req.criticality === 'Sheddable' && poolSaturation(view.pods, now) >= 1) return { reject: 429 };
      return pick(req, view);
    },
  };
}
