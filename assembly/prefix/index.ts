// The prefix index: which endpoints were recently sent which prompt prefixes, shared by all
// worker VMs through shared data, with a fixed memory ceiling.
//
// Shared data has no delete, so the index is a fixed table of `sets` keys; each set holds up to
// WAYS block hashes (least recently used evicted) and each hash up to ENDPOINTS endpoints with
// the time they were last sent it (oldest replaced). Entries older than the TTL count as absent.
// Ceiling: sets x WAYS x (12 + 8 x ENDPOINTS) bytes of values (176 bytes per set).
//
// Because h[i] names the whole prefix up to block i, "endpoint E has block i" implies E had
// blocks 0..i when they were recorded. The index therefore records and probes only a grid of
// block positions growing geometrically (25 of 256 positions), and a lookup finds the longest
// recorded prefix by galloping then bisecting over that grid: about eight reads per request
// instead of one per block.
//
// A block held by more endpoints than an entry has slots is not evidence for any of them: a
// system prompt that every request starts with ends up cached on every pod. When recording
// pushes out a live slot of another endpoint, the entry is marked crowded, and lookups then
// take every endpoint to hold that block (PrefixMatch.common).
//
// Set layout (little-endian): u8 count, then count x { u64 hash, u8 n | 0x80 if crowded,
// n x { u32 endpoint id, u32 time (ms since the epoch, modulo 2^32) } }.

import { SharedStore } from "../util/store";
import { PrefixJournal } from "../peers/journal";

export const WAYS: i32 = 4;
export const ENDPOINTS: i32 = 4;
const CROWDED: u8 = 0x80;
const MAX_WRITE_ATTEMPTS: i32 = 4;

export class IndexSet {
  hashes: Array<u64> = new Array<u64>();
  eps: Array<u32> = new Array<u32>(); // ENDPOINTS slots per hash, 0 = empty
  times: Array<u32> = new Array<u32>();
  crowded: Array<bool> = new Array<bool>();

  static decode(buf: ArrayBuffer | null): IndexSet {
    const s = new IndexSet();
    if (buf === null || buf.byteLength < 1) return s;
    const p = changetype<usize>(buf);
    const len = buf.byteLength;
    const count = <i32>load<u8>(p);
    let off = 1;
    for (let i = 0; i < count && i < WAYS; i++) {
      if (off + 9 > len) return new IndexSet();
      const h = load<u64>(p + <usize>off);
      const nb = load<u8>(p + <usize>off + 8);
      const n = <i32>(nb & ~CROWDED);
      off += 9;
      if (n > ENDPOINTS || off + n * 8 > len) return new IndexSet();
      s.hashes.push(h);
      s.crowded.push((nb & CROWDED) != 0);
      for (let k = 0; k < ENDPOINTS; k++) {
        if (k < n) {
          s.eps.push(load<u32>(p + <usize>(off + k * 8)));
          s.times.push(load<u32>(p + <usize>(off + k * 8 + 4)));
        } else {
          s.eps.push(0);
          s.times.push(0);
        }
      }
      off += n * 8;
    }
    return s;
  }

  encode(): ArrayBuffer {
    let size = 1;
    for (let i = 0; i < this.hashes.length; i++) size += 9 + 8 * this.used(i);
    const out = new ArrayBuffer(size);
    const p = changetype<usize>(out);
    store<u8>(p, <u8>this.hashes.length);
    let off = 1;
    for (let i = 0; i < this.hashes.length; i++) {
      store<u64>(p + <usize>off, unchecked(this.hashes[i]));
      store<u8>(p + <usize>off + 8, <u8>this.used(i) | (unchecked(this.crowded[i]) ? CROWDED : 0));
      off += 9;
      for (let k = 0; k < ENDPOINTS; k++) {
        const ep = unchecked(this.eps[i * ENDPOINTS + k]);
        if (ep == 0) continue;
        store<u32>(p + <usize>off, ep);
        store<u32>(p + <usize>off + 4, unchecked(this.times[i * ENDPOINTS + k]));
        off += 8;
      }
    }
    return out;
  }

  private used(i: i32): i32 {
    let n = 0;
    for (let k = 0; k < ENDPOINTS; k++) if (unchecked(this.eps[i * ENDPOINTS + k]) != 0) n++;
    return n;
  }

  find(hash: u64): i32 {
    for (let i = 0; i < this.hashes.length; i++) if (unchecked(this.hashes[i]) == hash) return i;
    return -1;
  }

  // Time endpoint `ep` was last recorded for entry i, or -1.
  timeOf(i: i32, ep: u32): i64 {
    for (let k = 0; k < ENDPOINTS; k++) {
      if (unchecked(this.eps[i * ENDPOINTS + k]) == ep) return <i64>unchecked(this.times[i * ENDPOINTS + k]);
    }
    return -1;
  }

  // Records that endpoint `ep` was sent the prefix `hash` at time `now`.
  touch(hash: u64, ep: u32, now: u32, ttl: u32): void {
    this.put(hash, ep, now, now, ttl, false);
  }

  // Merges another replica's record: endpoint `ep` was sent `hash` at time `t` (at or before
  // `now`). Newer wins, so merging the same record twice changes nothing: false when the set
  // already knows ep had it at t or later, when t is older than the TTL, or when every entry the
  // record would push out is fresher than it.
  merge(hash: u64, ep: u32, t: u32, now: u32, ttl: u32): bool {
    if (now - t > ttl) return false;
    return this.put(hash, ep, t, now, ttl, true);
  }

  private put(hash: u64, ep: u32, t: u32, now: u32, ttl: u32, newerOnly: bool): bool {
    const age = now - t;
    let i = this.find(hash);
    if (i < 0) {
      if (this.hashes.length < WAYS) {
        i = this.hashes.length;
        this.hashes.push(hash);
        this.crowded.push(false);
        for (let k = 0; k < ENDPOINTS; k++) {
          this.eps.push(0);
          this.times.push(0);
        }
      } else {
        i = this.leastRecent(now);
        if (newerOnly && this.newestAge(i, now) < age) return false;
        unchecked((this.hashes[i] = hash));
        unchecked((this.crowded[i] = false));
        for (let k = 0; k < ENDPOINTS; k++) unchecked((this.eps[i * ENDPOINTS + k] = 0));
      }
    }
    // Same endpoint, else an empty or expired slot, else the oldest.
    let slot = -1;
    let oldest = -1;
    let oldestAge: u32 = 0;
    for (let k = 0; k < ENDPOINTS; k++) {
      const e = unchecked(this.eps[i * ENDPOINTS + k]);
      const slotAge = now - unchecked(this.times[i * ENDPOINTS + k]);
      if (e == ep) {
        if (newerOnly && slotAge <= age) return false;
        slot = k;
        break;
      }
      if (e == 0 || slotAge > ttl) {
        if (slot < 0) slot = k;
        continue;
      }
      if (oldest < 0 || slotAge > oldestAge) {
        oldest = k;
        oldestAge = slotAge;
      }
    }
    if (slot < 0) {
      // Every slot holds another endpoint that had this block within the TTL.
      unchecked((this.crowded[i] = true));
      if (newerOnly && oldestAge <= age) return true;
      slot = oldest;
    }
    unchecked((this.eps[i * ENDPOINTS + slot] = ep));
    unchecked((this.times[i * ENDPOINTS + slot] = t));
    return true;
  }

  // The age of entry i's most recent endpoint.
  private newestAge(i: i32, now: u32): u32 {
    let newest: u32 = 0xffffffff;
    for (let k = 0; k < ENDPOINTS; k++) {
      if (unchecked(this.eps[i * ENDPOINTS + k]) == 0) continue;
      const age = now - unchecked(this.times[i * ENDPOINTS + k]);
      if (age < newest) newest = age;
    }
    return newest;
  }

  private leastRecent(now: u32): i32 {
    let best = 0;
    let bestAge: u32 = 0;
    for (let i = 0; i < this.hashes.length; i++) {
      const newest = this.newestAge(i, now);
      if (i == 0 || newest > bestAge) {
        best = i;
        bestAge = newest;
      }
    }
    return best;
  }
}

// Block positions the index records and probes for a prompt of n blocks: every position below
// 8, then positions growing by a quarter each step (8, 10, 12, 15, 18, 22, ...), and always the
// last block: 25 positions for 256 blocks, so a match length is known to within 25%.
export function gridPositions(n: i32): Array<i32> {
  const out = new Array<i32>();
  let i = 0;
  while (i < n) {
    out.push(i);
    const next = i + (i >> 2);
    i = next > i ? next : i + 1;
  }
  if (n > 0 && out[out.length - 1] != n - 1) out.push(n - 1);
  return out;
}

export function ms32(ms: f64): u32 {
  return <u32>(<u64>ms);
}

export class PrefixMatch {
  // Matched blocks per endpoint index of the pool (longest recorded prefix seen).
  matched: Int32Array;
  // When the record behind matched[i] was written (ms32), for endpoints with a match.
  at: Uint32Array;
  total: i32;
  // Blocks taken to be held by every endpoint (the deepest crowded block matched): no evidence
  // for one endpoint over another.
  common: i32 = 0;
  probes: i32 = 0;
  best: i32 = 0;
  grid: Array<i32>;

  constructor(endpoints: i32, total: i32) {
    this.matched = new Int32Array(endpoints);
    this.at = new Uint32Array(endpoints);
    this.total = total;
    this.grid = gridPositions(total);
  }
}

export class PrefixIndex {
  store: SharedStore;
  sets: u32;
  ttl: u32;
  // When set, what record() writes is also journaled for the gateway's other replicas.
  journal: PrefixJournal | null = null;
  // What became of the last record()'s journal entry: 1 journaled, -1 dropped, 0 none.
  lastJournal: i32 = 0;
  private written: Array<u64> = new Array<u64>();

  constructor(store: SharedStore, sets: i32, ttlMs: f64) {
    this.store = store;
    this.sets = <u32>sets;
    this.ttl = <u32>ttlMs;
  }

  key(hash: u64): string {
    return "wasm-epp/px/" + (<u32>((hash ^ (hash >> 32)) % <u64>this.sets)).toString(16);
  }

  // Finds, for each of `count` endpoints (`index` maps an endpoint id to its position), the
  // longest recorded prefix of `hashes`.
  lookup(hashes: StaticArray<u64>, index: Map<u32, i32>, count: i32, nowMs: f64): PrefixMatch {
    const m = new PrefixMatch(count, hashes.length);
    const g = m.grid.length;
    if (g == 0 || count == 0) return m;
    const now = ms32(nowMs);
    // Gallop over grid indices 0, 1, 3, 7, 15, ... until a miss, then bisect.
    let lo = -1;
    let hi = g;
    let probe = 0;
    while (probe < g) {
      if (this.probe(hashes, m, probe, index, now)) {
        lo = probe;
        probe = probe * 2 + 1;
      } else {
        hi = probe;
        break;
      }
    }
    if (probe >= g && lo < g - 1 && hi == g) {
      // Galloping overshot the grid without a miss: check the last position.
      if (this.probe(hashes, m, g - 1, index, now)) lo = g - 1;
      else hi = g - 1;
    }
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (this.probe(hashes, m, mid, index, now)) lo = mid;
      else hi = mid;
    }
    return m;
  }

  private probe(hashes: StaticArray<u64>, m: PrefixMatch, gi: i32, index: Map<u32, i32>, now: u32): bool {
    const pos = unchecked(m.grid[gi]);
    const h = unchecked(hashes[pos]);
    m.probes++;
    const set = IndexSet.decode(this.store.get(this.key(h)));
    const e = set.find(h);
    if (e < 0) return false;
    let hit = false;
    if (unchecked(set.crowded[e]) && this.crowdedFresh(set, e, now)) {
      if (pos + 1 > m.common) m.common = pos + 1;
      if (pos + 1 > m.best) m.best = pos + 1;
      hit = true;
    }
    for (let k = 0; k < ENDPOINTS; k++) {
      const ep = unchecked(set.eps[e * ENDPOINTS + k]);
      if (ep == 0 || now - unchecked(set.times[e * ENDPOINTS + k]) > this.ttl || !index.has(ep)) continue;
      const j = index.get(ep);
      hit = true;
      if (pos + 1 > m.matched[j]) {
        m.matched[j] = pos + 1;
        m.at[j] = unchecked(set.times[e * ENDPOINTS + k]);
      }
      if (pos + 1 > m.best) m.best = pos + 1;
    }
    return hit;
  }

  // A crowded entry counts while some endpoint was recorded for it within the TTL.
  private crowdedFresh(set: IndexSet, e: i32, now: u32): bool {
    for (let k = 0; k < ENDPOINTS; k++) {
      if (unchecked(set.eps[e * ENDPOINTS + k]) != 0 && now - unchecked(set.times[e * ENDPOINTS + k]) <= this.ttl) return true;
    }
    return false;
  }

  // Records that endpoint `ep` (which had `matched` blocks recorded) was sent this prompt: every
  // grid position past what it already had. Returns the number of sets written.
  record(hashes: StaticArray<u64>, grid: Array<i32>, ep: u32, matched: i32, nowMs: f64): i32 {
    const now = ms32(nowMs);
    const journal = this.journal;
    const written = this.written;
    written.length = 0;
    let writes = 0;
    for (let gi = 0; gi < grid.length; gi++) {
      const pos = unchecked(grid[gi]);
      const h = unchecked(hashes[pos]);
      if (pos < matched) {
        // Already recorded. Keep the positions every lookup gallops through (grid indices
        // 0, 1, 3, 7, ...) recent, so a prefix in constant use never ages out of the index.
        if ((gi & (gi + 1)) != 0) continue;
        if (!this.touch(h, ep, now, true)) continue;
      } else if (!this.touch(h, ep, now, false)) {
        continue;
      }
      writes++;
      if (journal !== null) written.push(h);
    }
    this.lastJournal = 0;
    if (journal !== null && written.length > 0) this.lastJournal = journal.append(ep, now, written) ? 1 : -1;
    return writes;
  }

  // Merges another replica's record of one hash (peers/merge.ts): true when it was news.
  merge(h: u64, ep: u32, t: u32, now: u32): bool {
    const key = this.key(h);
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const set = IndexSet.decode(this.store.get(key));
      const cas = this.store.cas;
      if (!set.merge(h, ep, t, now, this.ttl)) return false;
      if (this.store.set(key, set.encode(), cas)) return true;
    }
    return false;
  }

  private touch(h: u64, ep: u32, now: u32, onlyIfOld: bool): bool {
    const key = this.key(h);
    for (let attempt = 0; attempt < MAX_WRITE_ATTEMPTS; attempt++) {
      const set = IndexSet.decode(this.store.get(key));
      const cas = this.store.cas;
      if (onlyIfOld) {
        const e = set.find(h);
        if (e >= 0) {
          const t = set.timeOf(e, ep);
          if (t >= 0 && now - <u32>t < this.ttl / 8) return false;
        }
      }
      set.touch(h, ep, now, this.ttl);
      if (this.store.set(key, set.encode(), cas)) return true;
    }
    return false;
  }
}
