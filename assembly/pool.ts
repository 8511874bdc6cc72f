// The pool a request is routed in, and what its pick sees of it: the worker's state, the pool this
// filter serves (or a 503 sent), whether the state is too old to trust (degraded mode), and the
// endpoints' in-flight counts shared by every worker.

import * as errors from "./errors";
import * as stats from "./stats";
import { Pool, State } from "./state/document";
import { LoadView, PoolLoad, loadKey } from "./schedule/load";
import { peersLoad } from "./peers/load";
import { PickInput } from "./schedule/pick";
import { EppHttp, EppRoot } from "./filter";

// The pool to route in, or null with a 503 already sent to the client.
export function poolOrAnswer(h: EppHttp, st: State | null): Pool | null {
  const root = h.root;
  if (st === null) {
    root.count(stats.NO_STATE);
    root.warn("no_state", "no routing state has been pushed yet; requests get 503 until the sidecar pushes one");
    h.reply(errors.noState("no routing state has been pushed to the gateway yet; is the wasm-epp sidecar running?"));
    return null;
  }
  const pool = root.poolOf(st as State);
  if (pool === null) {
    const name = root.config.pool.length > 0 ? root.config.pool : "(none configured, and the state has " + st.pools.length.toString() + " pools)";
    root.count(stats.NO_STATE);
    root.warn("no_pool", "inference pool " + name + " is not in the routing state");
    h.reply(errors.noState("inference pool " + name + " is not in the routing state"));
    return null;
  }
  return pool;
}

// The state is older than stale_after_ms: metrics are not trusted (warned at most every 10 s).
export function isDegraded(root: EppRoot, st: State, now: f64): bool {
  const age = now - st.generatedAtMs;
  if (age <= root.config.staleAfterMs) return false;
  root.warn("stale", "routing state is " + (<i64>age).toString() + " ms old (stale_after_ms " + (<i64>root.config.staleAfterMs).toString() + "): routing on in-flight counts and prefix affinity only");
  return true;
}

// What a pick sees: the pool, the endpoints' in-flight counts shared by every worker (and, when
// the gateway's replicas share their loads, theirs), the state's age.
export function pickInputFor(root: EppRoot, pool: Pool, state: State, now: f64): PickInput {
  const local = new LoadView(root.store.get(loadKey(pool.name)));
  const peers = root.config.peersEnabled ? peersLoad(root.store, pool.name, now, root.config.peersLoadTtlMs) : null;
  const input = new PickInput(pool, root.config, new PoolLoad(local, peers));
  input.nowMs = now;
  input.generatedAtMs = state.generatedAtMs;
  input.degraded = isDegraded(root, state, now);
  return input;
}
