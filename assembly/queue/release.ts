// Releasing what a worker holds (priority queuing, see band.ts, counts.ts and gate.ts): the root
// context's passes over its queue, its share of the shared held counts, and the wake-ups it sends
// other workers through their shared queues.

import * as host from "../host";
import * as stats from "../stats";
import { Stats } from "../stats";
import { State } from "../state/document";
import { BANDS } from "./band";
import { heldEverywhere, holders, publishCounts, higherWaiting, REFRESH_MS } from "./counts";
import { EppHttp, EppRoot } from "../filter";
import { canRoute, gateOpen } from "./hold";

// Releases held requests while the pool has room, highest band first; answers those whose time
// is up. One pass either answers or releases: never both (a local reply and a continue in one
// VM call can re-enter the host through its deferred actions).
export function drainHeld(root: EppRoot): void {
  const q = root.queue;
  if (q.total == 0) {
    root.publish(false);
    return;
  }
  const now = host.nowMs();
  const expired = q.expire(now);
  if (expired.length > 0) {
    for (let i = 0; i < expired.length; i++) {
      const h = expired[i];
      root.count(stats.QUEUE_EXPIRED + h.band);
      (root.stats as Stats).queued(now - h.arrivedMs);
      if (host.setEffectiveContext(h.id)) h.ref.answerExpired(now);
    }
    root.publish(true);
    return;
  }
  let released = 0;
  while (released < 256) {
    const h = q.peek();
    if (h === null) break;
    const st = root.currentState();
    if (st === null) break;
    const pool = root.poolOf(st as State);
    if (pool === null) break;
    const counts = heldEverywhere(root.store, root.heldPool, now);
    if (higherWaiting(counts, h.band)) break;
    if (!gateOpen(h.ref, pool, st as State, now)) break;
    // A request that will be answered rather than routed waits for the next pass if this one
    // has continued others.
    if (released > 0 && !canRoute(pool)) break;
    q.pop();
    root.publish(true);
    (root.stats as Stats).queued(now - h.arrivedMs);
    if (!host.setEffectiveContext(h.id)) {
      root.count(stats.QUEUE_CANCELLED + h.band);
      continue;
    }
    root.count(stats.QUEUE_ADMITTED + h.band);
    if (!h.ref.releaseHeld(now)) break;
    host.continueRequest();
    released++;
  }
  root.publish(false);
}

// Shares this worker's held counts when they changed (or to keep them alive), and the
// pool-wide sizes as gauges.
export function publishHeld(root: EppRoot, changed: bool): void {
  const now = host.nowMs();
  const q = root.queue;
  let differs = false;
  for (let b = 0; b < BANDS; b++) if (q.count(b) != root.published[b]) differs = true;
  let any = false;
  for (let b = 0; b < BANDS; b++) if (root.published[b] > 0) any = true;
  if (!differs && !(any && now - root.publishedMs >= REFRESH_MS)) return;
  const counts = new StaticArray<i32>(BANDS);
  for (let b = 0; b < BANDS; b++) counts[b] = q.count(b);
  if (publishCounts(root.store, root.heldPool, root.workerId, counts, now)) {
    root.published = counts;
    root.publishedMs = now;
  }
  const all = heldEverywhere(root.store, root.heldPool, now);
  const s = root.stats as Stats;
  for (let b = 0; b < BANDS; b++) s.set(stats.GAUGE_QUEUE_SIZE + b, <u64>(all[b] > 0 ? all[b] : 0));
}

// Tells every worker holding requests (this one included) to try releasing them: a request
// finished, or a new state arrived.
export function wakeHolders(root: EppRoot): void {
  const ids = holders(root.store, host.nowMs());
  if (ids.length == 0) return;
  const msg = new ArrayBuffer(1);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    let token: u32 = 0;
    if (root.wakeTokens.has(id)) token = root.wakeTokens.get(id);
    else {
      token = host.resolveQueue(root.vmId, wakeQueueName(id));
      if (token != 0 && root.wakeTokens.size < 4096) root.wakeTokens.set(id, token);
    }
    if (token != 0) host.enqueue(token, msg);
  }
}

// The shared queue that wakes worker `id` up.
export function wakeQueueName(id: u32): string {
  return "wasm-epp.wake/" + id.toString(16);
}

// A client that went away while held leaves the queue at once.
export function leaveQueue(h: EppHttp): void {
  if (!h.held) return;
  h.held = false;
  const root = h.root;
  if (root.queue.remove(h.context_id) !== null) {
    root.count(stats.QUEUE_CANCELLED + h.heldBand);
    root.publish(true);
  }
}
