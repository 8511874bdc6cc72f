import { gridPositions, IndexSet, PrefixIndex, ENDPOINTS, WAYS } from "../../assembly/prefix/index";
import { PrefixJournal, SharingParams, recordSize, writeRecord } from "../../assembly/peers/journal";
import { checkBatch, mergeBatch } from "../../assembly/peers/merge";
import { sinceOf, queryParam } from "../../assembly/peers/handler";
import { LoadView, PoolLoad, sumRecords } from "../../assembly/schedule/load";
import { updatePeerLoad, peersLoad, isLoadRecord } from "../../assembly/peers/load";
import { MemoryStore } from "../../assembly/util/store";

const TTL: u32 = 600000;
const NOW: f64 = 1_763_600_000_000;

function ids(list: Array<u32>): Map<u32, i32> {
  const m = new Map<u32, i32>();
  for (let i = 0; i < list.length; i++) m.set(list[i], i);
  return m;
}

function chain(n: i32, salt: u64): StaticArray<u64> {
  const out = new StaticArray<u64>(n);
  for (let i = 0; i < n; i++) out[i] = (salt * 0x9e3779b97f4a7c15) ^ (<u64>(i + 1) * 0xc2b2ae3d27d4eb4f);
  return out;
}

function batch(eps: Array<u32>, times: Array<u32>, lists: Array<Array<u64>>): ArrayBuffer {
  let size = 0;
  for (let i = 0; i < lists.length; i++) size += recordSize(lists[i].length);
  const out = new ArrayBuffer(size);
  let off = 0;
  for (let i = 0; i < lists.length; i++) {
    writeRecord(changetype<usize>(out) + <usize>off, eps[i], times[i], lists[i]);
    off += recordSize(lists[i].length);
  }
  return out;
}

// The hashes record() writes for a fresh prompt of n blocks: every grid position.
function gridHashes(h: StaticArray<u64>): Array<u64> {
  const g = gridPositions(h.length);
  const out = new Array<u64>();
  for (let i = 0; i < g.length; i++) out.push(h[g[i]]);
  return out;
}

describe("IndexSet.merge", () => {
  it("newer wins, and merging twice changes nothing", () => {
    const s = new IndexSet();
    const now: u32 = 1000000;
    expect(s.merge(7, 11, now - 500, now, TTL)).toBe(true);
    expect(s.timeOf(0, 11)).toBe(<i64>(now - 500));
    expect(s.merge(7, 11, now - 500, now, TTL)).toBe(false);
    expect(s.merge(7, 11, now - 900, now, TTL)).toBe(false);
    expect(s.timeOf(0, 11)).toBe(<i64>(now - 500));
    expect(s.merge(7, 11, now - 100, now, TTL)).toBe(true);
    expect(s.timeOf(0, 11)).toBe(<i64>(now - 100));
  });

  it("an expired record is skipped", () => {
    const s = new IndexSet();
    const now: u32 = 5000000;
    expect(s.merge(7, 11, now - TTL - 1, now, TTL)).toBe(false);
    expect(s.hashes.length).toBe(0);
  });

  it("a full set keeps its fresher entries against an older record", () => {
    const s = new IndexSet();
    const now: u32 = 1000000;
    for (let i = 0; i < WAYS; i++) s.touch(<u64>(100 + i), 1, now - 10, TTL);
    expect(s.merge(999, 2, now - 5000, now, TTL)).toBe(false);
    expect(s.find(999)).toBe(-1);
    // A record newer than the least recent entry replaces it.
    expect(s.merge(999, 2, now - 1, now, TTL)).toBe(true);
    expect(s.find(999)).toBeGreaterThanOrEqual(0);
  });

  it("a fifth endpoint within the TTL marks the entry crowded without pushing out a fresher one", () => {
    const s = new IndexSet();
    const now: u32 = 1000000;
    for (let k = 0; k < ENDPOINTS; k++) s.touch(42, <u32>(1 + k), now - 10, TTL);
    expect(s.crowded[0]).toBe(false);
    expect(s.merge(42, 99, now - 5000, now, TTL)).toBe(true);
    expect(s.crowded[0]).toBe(true);
    expect(s.timeOf(0, 99)).toBe(-1);
    for (let k = 0; k < ENDPOINTS; k++) expect(s.timeOf(0, <u32>(1 + k))).toBe(<i64>(now - 10));
  });
});

describe("the journal", () => {
  it("is empty, then reads back what record() wrote, and a cursor moves on", () => {
    const store = new MemoryStore();
    const index = new PrefixIndex(store, 64, <f64>TTL);
    const j = new PrefixJournal(store, 16);
    index.journal = j;
    let r = j.read(-1, 1 << 20);
    expect(r.records).toBe(0);
    expect(r.next).toBe(0);
    expect(r.body.byteLength).toBe(0);

    const h = chain(40, 1);
    index.record(h, gridPositions(40), 0xabc, 0, NOW);
    expect(index.lastJournal).toBe(1);
    r = j.read(0, 1 << 20);
    expect(r.records).toBe(1);
    expect(r.next).toBe(1);
    expect(r.lost).toBe(0);
    const want = gridHashes(h);
    expect(r.body.byteLength).toBe(recordSize(want.length));
    const p = changetype<usize>(r.body);
    expect(load<u32>(p)).toBe(0xabc);
    expect(load<u32>(p + 4)).toBe(<u32>(<u64>NOW));
    expect(<i32>load<u8>(p + 8)).toBe(want.length);
    for (let i = 0; i < want.length; i++) expect(load<u64>(p + 9 + <usize>(i * 8))).toBe(want[i]);

    // Recording the same prompt again a moment later writes nothing new: nothing journaled.
    index.record(h, gridPositions(40), 0xabc, 40, NOW + 10);
    expect(index.lastJournal).toBe(0);
    expect(j.read(1, 1 << 20).records).toBe(0);
  });

  it("counts what the ring overwrote before it was read, and bounds one read", () => {
    const store = new MemoryStore();
    const j = new PrefixJournal(store, 16);
    for (let i = 0; i < 40; i++) j.append(<u32>(i + 1), 100, [<u64>i, <u64>(i * 3)]);
    const r = j.read(0, 1 << 20);
    expect(r.lost).toBe(24);
    expect(r.records).toBe(16);
    expect(r.next).toBe(40);
    expect(load<u32>(changetype<usize>(r.body))).toBe(25); // the oldest held: sequence 24
    const small = j.read(30, recordSize(2) * 3);
    expect(small.records).toBe(3);
    expect(small.next).toBe(33);
    // A cursor past the head belongs to an earlier life of the shared data: start over.
    const past = j.read(1000, 1 << 20);
    expect(past.records).toBe(16);
    expect(past.lost).toBe(0);
  });

  it("a slot claimed but not written yet is skipped and counted lost", () => {
    const shared = new MemoryStore();
    const j = new PrefixJournal(shared, 16);
    j.append(1, 100, [<u64>5]);
    // Another worker claimed sequence 1 and has not written its slot.
    const head = new ArrayBuffer(8);
    store<u64>(changetype<usize>(head), 2);
    shared.set("wasm-epp/pj/head", head, 0);
    const r = j.read(0, 1 << 20);
    expect(r.records).toBe(1);
    expect(r.lost).toBe(1);
    expect(r.next).toBe(2);
  });

  it("sharing parameters round-trip; slots 0 means off", () => {
    const store = new MemoryStore();
    expect(SharingParams.load(store)).toBeNull();
    const p = new SharingParams();
    p.slots = 4096;
    p.sets = 8192;
    p.ttlMs = 600000;
    p.maxImportBytes = 1 << 20;
    p.save(store);
    const q = SharingParams.load(store) as SharingParams;
    expect(q.slots).toBe(4096);
    expect(q.sets).toBe(8192);
    expect(q.ttlMs).toBe(600000);
    expect(q.maxImportBytes).toBe(1 << 20);
    p.slots = 0;
    p.save(store);
    expect(SharingParams.load(store)).toBeNull();
  });
});

describe("merging a batch", () => {
  it("makes another replica's record findable by lookup, idempotently, without journaling it", () => {
    // Replica A records; its journal is merged into replica B's separate index.
    const a = new MemoryStore();
    const ia = new PrefixIndex(a, 64, <f64>TTL);
    ia.journal = new PrefixJournal(a, 64);
    const h = chain(40, 2);
    ia.record(h, gridPositions(40), 0x77, 0, NOW);
    const body = (ia.journal as PrefixJournal).read(0, 1 << 20).body;

    const b = new MemoryStore();
    const ib = new PrefixIndex(b, 64, <f64>TTL);
    ib.journal = new PrefixJournal(b, 64);
    const before = ib.lookup(h, ids([0x55, 0x77]), 2, NOW + 100);
    expect(before.matched[1]).toBe(0);
    const r = mergeBatch(ib, body, NOW + 100);
    expect(r.error).toBe("");
    expect(r.records).toBe(1);
    expect(r.merged).toBe(gridHashes(h).length);
    expect(r.skipped).toBe(0);
    const after = ib.lookup(h, ids([0x55, 0x77]), 2, NOW + 100);
    expect(after.matched[1]).toBe(40);
    expect(after.matched[0]).toBe(0);
    // Again: nothing new.
    const again = mergeBatch(ib, body, NOW + 200);
    expect(again.merged).toBe(0);
    expect(again.skipped).toBe(gridHashes(h).length);
    // Nothing echoes into B's own journal.
    expect((ib.journal as PrefixJournal).read(0, 1 << 20).records).toBe(0);
  });

  it("expired records are skipped; a record from a clock ahead counts as now", () => {
    const b = new MemoryStore();
    const ib = new PrefixIndex(b, 64, <f64>TTL);
    const old = batch([5], [<u32>(<u64>NOW) - TTL - 10], [[<u64>1, <u64>2]]);
    const r = mergeBatch(ib, old, NOW);
    expect(r.merged).toBe(0);
    expect(r.skipped).toBe(2);
    const ahead = batch([5], [<u32>(<u64>NOW) + 3600000], [[<u64>1]]);
    expect(mergeBatch(ib, ahead, NOW).merged).toBe(1);
    const s = IndexSet.decode(b.get(ib.key(1)));
    expect(s.timeOf(s.find(1), 5)).toBe(<i64>(<u32>(<u64>NOW)));
    // It expires a TTL from now, not from the future time it claimed.
    expect(mergeBatch(ib, batch([5], [<u32>(<u64>NOW) + TTL + 5], [[<u64>9]]), NOW).merged).toBe(1);
    const m = ib.lookup(StaticArray.fromArray<u64>([<u64>9]), ids([5]), 1, NOW + <f64>TTL + 1);
    expect(m.matched[0]).toBe(0);
  });

  it("a malformed batch is refused whole, with the offset", () => {
    const b = new MemoryStore();
    const ib = new PrefixIndex(b, 64, <f64>TTL);
    const good = batch([5, 6], [1, 2], [[<u64>1], [<u64>2, <u64>3]]);
    expect(checkBatch(changetype<usize>(good), good.byteLength)).toBe(-1);
    const cut = good.slice(0, good.byteLength - 3);
    const r = mergeBatch(ib, cut, NOW);
    expect(r.error).toBe("malformed prefix record at byte 17 of " + cut.byteLength.toString());
    expect(r.merged).toBe(0);
    expect(b.size).toBe(0);
    const zero = new ArrayBuffer(9);
    expect(checkBatch(changetype<usize>(zero), 9)).toBe(0);
    const tooMany = new ArrayBuffer(9 + 8 * 65);
    store<u8>(changetype<usize>(tooMany) + 8, 65);
    expect(checkBatch(changetype<usize>(tooMany), tooMany.byteLength)).toBe(0);
    expect(checkBatch(changetype<usize>(good), 5)).toBe(0);
  });
});

describe("the cursor", () => {
  it("reads since= from a query string", () => {
    expect(sinceOf("")).toBe(-1);
    expect(sinceOf("since=42")).toBe(42);
    expect(sinceOf("a=1&since=7&b=2")).toBe(7);
    expect(sinceOf("since=")).toBe(-2);
    expect(sinceOf("since=-3")).toBe(-2);
    expect(sinceOf("since=1x")).toBe(-2);
    expect(sinceOf("since=99999999999999999999")).toBe(-2);
  });
});

// ---- loads ----

function rec(buf: ArrayBuffer | null, id: u32, delta: i32, now: f64, work: f64 = 0): ArrayBuffer {
  const next = new LoadView(buf).with(id, delta, now, 64, work);
  return next !== null ? next : (buf as ArrayBuffer);
}

describe("summed loads", () => {
  it("adds in-flight, net dispatches and backlogs; the union of endpoints", () => {
    const t = NOW;
    let a: ArrayBuffer | null = null;
    a = rec(a, 5, 1, t, 100);
    a = rec(a, 5, 1, t + 1, 50);
    a = rec(a, 9, 1, t + 2);
    let b: ArrayBuffer | null = null;
    b = rec(b, 5, 1, t + 70, 30); // a later time bucket
    b = rec(b, 7, 1, t + 70);
    const sum = new LoadView(sumRecords([new LoadView(a), new LoadView(b)], t + 80, 64));
    expect(sum.count).toBe(3);
    expect(sum.inflightAt(sum.find(5))).toBe(3);
    expect(sum.inflightAt(sum.find(7))).toBe(1);
    expect(sum.inflightAt(sum.find(9))).toBe(1);
    // Backlog: a's 150 ms from t (70 left at t + 80), b's 30 from t + 70 (20 left).
    expect(sum.backlogMs(sum.find(5), t + 80)).toBeCloseTo(90, 6);
    // Net dispatches since t: both records' buckets, aligned.
    expect(sum.netSince(sum.find(5), t, t + 80)).toBe(3);
    expect(sum.netSince(sum.find(5), t + 70, t + 80)).toBe(1);
  });

  it("a pick's view adds the peers' sum to its own record", () => {
    let a: ArrayBuffer | null = null;
    a = rec(a, 5, 1, NOW, 40);
    let b: ArrayBuffer | null = null;
    b = rec(b, 5, 1, NOW, 60);
    b = rec(b, 5, 1, NOW, 0);
    const both = new PoolLoad(new LoadView(a), new LoadView(sumRecords([new LoadView(b)], NOW, 64)));
    expect(both.inflightOf(5)).toBe(3);
    expect(both.backlogOf(5, NOW)).toBeCloseTo(100, 6);
    expect(both.netSinceOf(5, NOW - 1, NOW)).toBe(3);
    const alone = new PoolLoad(new LoadView(a));
    expect(alone.inflightOf(5)).toBe(1);
    expect(alone.inflightOf(6)).toBe(0);
  });
});

describe("peers' loads in shared data", () => {
  it("keeps each replica's latest record, sums them, and forgets silent ones", () => {
    const shared = new MemoryStore();
    const a = rec(null, 5, 1, NOW);
    const b = rec(rec(null, 5, 1, NOW), 5, 1, NOW);
    expect(peersLoad(shared, "ns/p", NOW, 1000)).toBeNull();
    expect(updatePeerLoad(shared, "ns/p", 1, a, NOW, 1000, 64)).toBe(1);
    expect(updatePeerLoad(shared, "ns/p", 2, b, NOW + 10, 1000, 64)).toBe(2);
    let v = peersLoad(shared, "ns/p", NOW + 20, 1000) as LoadView;
    expect(v.inflightAt(v.find(5))).toBe(3);
    // Replica 1 again, now with nothing in flight: replaced, not added.
    expect(updatePeerLoad(shared, "ns/p", 1, new ArrayBuffer(0), NOW + 30, 1000, 64)).toBe(2);
    v = peersLoad(shared, "ns/p", NOW + 40, 1000) as LoadView;
    expect(v.inflightAt(v.find(5))).toBe(2);
    // Replica 2 falls silent: dropped at the next update after its TTL.
    expect(updatePeerLoad(shared, "ns/p", 1, a, NOW + 1500, 1000, 64)).toBe(1);
    v = peersLoad(shared, "ns/p", NOW + 1500, 1000) as LoadView;
    expect(v.inflightAt(v.find(5))).toBe(1);
    // Everyone silent: the sum itself expires.
    expect(peersLoad(shared, "ns/p", NOW + 2600, 1000)).toBeNull();
    // Other pools are apart.
    expect(peersLoad(shared, "ns/q", NOW + 1500, 1000)).toBeNull();
  });

  it("tells load records from garbage", () => {
    expect(isLoadRecord(new ArrayBuffer(0))).toBe(true);
    expect(isLoadRecord(rec(null, 5, 1, NOW))).toBe(true);
    expect(isLoadRecord(new ArrayBuffer(30))).toBe(false);
  });
});

describe("query parameters", () => {
  it("finds and percent-decodes values", () => {
    expect(queryParam("pool=ns/p&replica=r-1", "pool") as string).toBe("ns/p");
    expect(queryParam("pool=ns%2Fp", "pool") as string).toBe("ns/p");
    expect(queryParam("replica=r-1", "pool")).toBeNull();
    expect(queryParam("pool=ns%2", "pool")).toBeNull();
    expect(queryParam("pool=ns%zz", "pool")).toBeNull();
    expect(queryParam("pool=", "pool") as string).toBe("");
  });
});
