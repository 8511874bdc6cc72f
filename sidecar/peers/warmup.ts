// Warm-up of a starting replica: before it reports ready, fetch one reachable peer's snapshot
// (peers tried in random order) and post it into the own filter in batches, all within a deadline.
// The outcome is logged by the caller; readiness does not wait longer than the deadline whatever
// happens.

import type { Peer } from "./discovery.ts";
import type { ImportResult } from "./filter-client.ts";
import { count, rebatch } from "./records.ts";

export type WarmupOutcome =
  | { result: "done"; peer: string; records: number; bytes: number; imported: number }
  | { result: "no_peers" }
  | { result: "disabled" }
  | { result: "unreachable"; tried: string[]; last: string }
  | { result: "timeout"; during: "discovery" | "snapshot" | "import"; imported?: number }
  | { result: "sharing_off"; message: string };

export interface WarmupDeps {
  deadline: number; // on the `now` clock
  now: () => number;
  // Peers once discovery has listed, or undefined when it has not by the deadline.
  peers: (deadline: number) => Promise<Peer[] | undefined>;
  fetchSnapshot: (peer: Peer, timeoutMs: number) => Promise<{ ok: true; body: Buffer } | { ok: false; message: string }>;
  importBatch: (batch: Uint8Array, timeoutMs: number) => Promise<ImportResult>;
  onSnapshot?: (body: Buffer, records: number) => void;
  maxBytes: number;
  random?: () => number;
  retryDelayMs?: number;
}

export async function warmUp(d: WarmupDeps): Promise<WarmupOutcome> {
  const left = () => d.deadline - d.now();
  const peers = await d.peers(d.deadline);
  if (peers === undefined) return { result: "timeout", during: "discovery" };
  if (peers.length === 0) return { result: "no_peers" };
  const order = shuffle(peers, d.random ?? Math.random);
  const tried: string[] = [];
  let last = "";
  for (const peer of order) {
    if (left() <= 0) return { result: "timeout", during: "snapshot" };
    tried.push(peer.id);
    const r = await d.fetchSnapshot(peer, left());
    if (!r.ok) {
      last = `${peer.id}: ${r.message}`;
      continue;
    }
    let records: number;
    let batches: Uint8Array[];
    try {
      records = count(r.body);
      batches = rebatch(r.body, d.maxBytes);
    } catch (err) {
      last = `${peer.id}: ${(err as Error).message}`;
      continue;
    }
    d.onSnapshot?.(r.body, records);
    let imported = 0;
    for (const b of batches) {
      let taken = false;
      for (;;) {
        if (left() <= 0) return { result: "timeout", during: "import", imported };
        const res = await d.importBatch(b, left());
        if (res.ok) {
          taken = true;
          break;
        }
        if (res.reason === "sharing_off") return { result: "sharing_off", message: res.message };
        if (res.reason === "rejected" || res.reason === "too_large") break; // this batch will never go in
        // The filter may not be up yet (Envoy starting): try again shortly.
        await new Promise((resolve) => setTimeout(resolve, Math.min(d.retryDelayMs ?? 100, Math.max(0, left()))));
      }
      if (taken) imported += count(b);
    }
    return { result: "done", peer: peer.id, records, bytes: r.body.length, imported };
  }
  if (left() <= 0) return { result: "timeout", during: "snapshot" };
  return { result: "unreachable", tried, last };
}

function shuffle<T>(list: T[], random: () => number): T[] {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
