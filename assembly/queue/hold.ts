// Priority queuing at a request's arrival (docs/queuing.md): whether it is held, shed or goes on,
// and, for a held one, whether the pool has room for it now. The highest band present is never
// held; the bands below it are held at the saturation limit less the headroom.

import * as host from "../host";
import * as errors from "../errors";
import * as stats from "../stats";
import { Pool, State, SHEDDABLE, ROLE_DECODE, ROLE_PREFILL, criticalityName } from "../state/document";
import { ParsedRequest } from "../request/openai";
import { Resolution } from "../route";
import { fnv1a32 } from "../util/hash";
import { BANDS, Held } from "./band";
import { heldEverywhere, higherWaiting, sameOrHigherWaiting } from "./counts";
import { poolSaturation } from "./gate";
import { EppHttp, EppRoot } from "../filter";
import { pickInputFor } from "../pool";

// Priority queuing at arrival: true when the request was held or answered (429), false when it
// goes on now. Held: the pool is saturated, or requests of its band or a higher one are waiting
// on some worker (they go first).
export function holdOrAnswer(h: EppHttp, body: ArrayBuffer, req: ParsedRequest, res: Resolution, pool: Pool, state: State): bool {
  const root = h.root;
  const cfg = root.config;
  const now = host.nowMs();
  const band = res.criticality;
  const poolId = fnv1a32(pool.name);
  root.lastSeenMs[band] = now;
  if (band == SHEDDABLE && cfg.queueShedSheddable) {
    // Shed rather than held: when the pool is saturated for it, or when a higher band waits
    // (it never overtakes them).
    const over = saturation(h, pool, state, now, false) >= limitFor(root, band, now);
    if (!over && !higherWaiting(heldEverywhere(root.store, poolId, now), band)) return false;
    root.count(stats.SHED);
    h.reply(errors.shed(pool.name));
    return true;
  }
  // The highest band present is never held: it goes on into the servers as without queuing.
  if (band <= topBand(root.lastSeenMs, now, cfg.queueWindowMs)) return false;
  const saturated = saturation(h, pool, state, now, false) >= limitFor(root, band, now);
  const waiting = heldEverywhere(root.store, poolId, now);
  if (!saturated && !sameOrHigherWaiting(waiting, band)) return false;
  if (!root.queue.fits(band, body.byteLength, cfg.queueMaxRequests, <i64>cfg.queueMaxBytes)) {
    root.count(stats.QUEUE_REJECTED + band);
    root.warn("queue_full", "the " + criticalityName(band) + " queue of this worker is full (queue.max_requests " + cfg.queueMaxRequests.toString() + ", queue.max_bytes " + (<i64>cfg.queueMaxBytes).toString() + "); answering 429");
    h.reply(errors.queueFull(pool.name, criticalityName(band)));
    return true;
  }
  const ttl = band == SHEDDABLE ? cfg.queueSheddableTtlMs : cfg.queueTtlMs;
  h.held = true;
  h.heldBand = band;
  h.heldSinceMs = now;
  h.heldBody = body;
  h.heldReq = req;
  h.heldRes = res;
  root.heldPool = poolId;
  root.queue.push(new Held<EppHttp>(h.context_id, band, now, now + ttl, body.byteLength, h, h.flow));
  root.count(stats.QUEUE_HELD + band);
  root.publish(true);
  return true;
}

// The saturation at which requests of `band` are held: below the limit by the headroom for the
// bands under the highest one present, so that its requests find room.
function limitFor(root: EppRoot, band: i32, now: f64): f64 {
  const cfg = root.config;
  if (band <= topBand(root.lastSeenMs, now, cfg.queueWindowMs)) return cfg.queueSaturationLimit;
  return cfg.queueSaturationLimit - cfg.queueHeadroom;
}

function saturation(h: EppHttp, pool: Pool, state: State, now: f64, credits: bool): f64 {
  return poolSaturation(pickInputFor(h.root, pool, state, now), credits);
}

// Whether the pool has room for this held request now.
export function gateOpen(h: EppHttp, pool: Pool, state: State, now: f64): bool {
  const root = h.root;
  if (h.heldBand == SHEDDABLE && root.config.queueShedSheddable) return true;
  // Its band is now the highest present: it would not be held if it arrived now.
  if (h.heldBand <= topBand(root.lastSeenMs, now, root.config.queueWindowMs)) return true;
  return saturation(h, pool, state, now, true) < limitFor(root, h.heldBand, now);
}

// Whether releasing this request would route it (a ready endpoint of each role it needs).
export function canRoute(pool: Pool): bool {
  let any = false;
  let prefill = false;
  let decode = false;
  for (let i = 0; i < pool.endpoints.length; i++) {
    const e = pool.endpoints[i];
    if (!e.ready) continue;
    any = true;
    if (e.role == ROLE_PREFILL) prefill = true;
    if (e.role == ROLE_DECODE) decode = true;
  }
  return pool.pd !== null ? prefill && decode : any;
}

// The highest band (lowest index) that arrived within `windowMs`; BANDS when none did.
export function topBand(lastSeenMs: StaticArray<f64>, now: f64, windowMs: f64): i32 {
  for (let b = 0; b < BANDS; b++) if (now - lastSeenMs[b] <= windowMs) return b;
  return BANDS;
}
