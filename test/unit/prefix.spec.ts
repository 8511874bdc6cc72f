import { parseOpenAIBody, ParsedRequest } from "../../assembly/request/openai";
import { chainSeed, PromptText } from "../../assembly/prefix/prompt";
import { xxh64 } from "../../assembly/prefix/xxhash64";
import { gridPositions, IndexSet, PrefixIndex, ENDPOINTS, WAYS } from "../../assembly/prefix/index";
import { MemoryStore } from "../../assembly/util/store";

const BLOCK = 64;

function idIndex(ids: Array<u32>): Map<u32, i32> {
  const m = new Map<u32, i32>();
  for (let i = 0; i < ids.length; i++) m.set(ids[i], i);
  return m;
}
const bodies: Array<ArrayBuffer> = [];

function hashes(text: string, model: string = "/models/Qwen3-32B", salt: string = ""): StaticArray<u64> {
  const buf = String.UTF8.encode(text);
  bodies.push(buf);
  const r = parseOpenAIBody(changetype<usize>(buf), buf.byteLength, BLOCK * 256);
  expect(r.error).toBeNull();
  return r.prompt.hashBlocks(changetype<usize>(buf), BLOCK, chainSeed(model, salt));
}

// The seeds' prefix check: round 2 continues the conversation of round 1.
const ROUND1 = "{\"max_tokens\":24,\"messages\":[{\"content\":\"Hi, here's some system prompt: hi hi hi hi hi hi hi hi hi hi.For user 3, here are some other context: hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi.I would like to test your intelligence. for this purpose I would like you to play zork. you can interact with the game by typing in commands. I will forward these commands to the game and type in any response. are you ready?\",\"role\":\"user\"}],\"model\":\"/models/Qwen3-32B\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"temperature\":0}";
const ROUND2 = "{\"max_tokens\":3,\"messages\":[{\"content\":\"Hi, here's some system prompt: hi hi hi hi hi hi hi hi hi hi.For user 3, here are some other context: hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi.I would like to test your intelligence. for this purpose I would like you to play zork. you can interact with the game by typing in commands. I will forward these commands to the game and type in any response. are you ready?\",\"role\":\"user\"},{\"content\":\"Hi there! It looks like you're setting up a fun test. I'm ready to play Zork! You can\",\"role\":\"assistant\"},{\"content\":\"% zork\\nWelcome to Dungeon. This version created 11-MAR-91.\\nYou are in an open field west of a big white house with a boarded\\nfront door.\\nThere is a small mailbox here.\\n>\",\"role\":\"user\"},{\"content\":\"Great!\",\"role\":\"assistant\"},{\"content\":\"Opening the mailbox reveals:\\n A leaflet.\\n>\",\"role\":\"user\"}],\"model\":\"/models/Qwen3-32B\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"temperature\":0}";

describe("block hashes", () => {
  it("hashes full blocks only, chained", () => {
    const h = hashes("{\"model\":\"m\",\"prompt\":\"" + "a".repeat(200) + "\"}", "m");
    // 200 bytes + 1 separator = 201 bytes -> 3 full blocks of 64.
    expect(h.length).toBe(3);
    // h[0] = XXH64(block0 ‖ le64(seed)), computed independently here.
    const block = new ArrayBuffer(BLOCK + 8);
    memory.fill(changetype<usize>(block), 0x61, BLOCK);
    store<u64>(changetype<usize>(block) + BLOCK, chainSeed("m", ""));
    expect(h[0]).toBe(xxh64(changetype<usize>(block), BLOCK + 8));
    // Same text, later block: the chain makes it differ from block 0.
    expect(h[1]).not.toBe(h[0]);
  });

  it("gives nothing for a prompt shorter than a block", () => {
    expect(hashes("{\"model\":\"m\",\"prompt\":\"short\"}").length).toBe(0);
  });

  it("shares every block of round 1 with round 2 (the seeds' prefix check)", () => {
    const a = hashes(ROUND1);
    const b = hashes(ROUND2);
    expect(a.length).toBeGreaterThan(4);
    expect(b.length).toBeGreaterThan(a.length);
    for (let i = 0; i < a.length; i++) expect(b[i]).toBe(a[i]);
  });

  it("separates models and cache salts", () => {
    const a = hashes(ROUND1, "model-a");
    const b = hashes(ROUND1, "model-b");
    const c = hashes(ROUND1, "model-a", "tenant");
    expect(a[0]).not.toBe(b[0]);
    expect(a[0]).not.toBe(c[0]);
  });

  it("caps the hashed prefix at the limit", () => {
    const buf = String.UTF8.encode("{\"model\":\"m\",\"prompt\":\"" + "z".repeat(100000) + "\"}");
    const r = parseOpenAIBody(changetype<usize>(buf), buf.byteLength, BLOCK * 256);
    expect(r.prompt.hashBlocks(changetype<usize>(buf), BLOCK, 1).length).toBe(256);
  });

  it("counts the whole prompt's size, past what it records", () => {
    const p = new PromptText(10);
    p.addSpan(0, 8);
    p.addSeparator(0x1e);
    p.addSpan(8, 100);
    expect(p.bytes).toBe(10);
    expect(p.seen).toBe(101);
  });

  it("cuts blocks across spans and separators", () => {
    const p = new PromptText(1000);
    const buf = String.UTF8.encode("abcdefgh");
    p.addSpan(0, 3);
    p.addSeparator(0x1e);
    p.addSpan(3, 8);
    expect(p.bytes).toBe(9);
    const h = p.hashBlocks(changetype<usize>(buf), 3, 7);
    expect(h.length).toBe(3);
    const whole = new PromptText(1000);
    const joined = String.UTF8.encode("abc\x1edefgh");
    whole.addSpan(0, 9);
    const h2 = whole.hashBlocks(changetype<usize>(joined), 3, 7);
    for (let i = 0; i < 3; i++) expect(h[i]).toBe(h2[i]);
  });
});

describe("gridPositions", () => {
  it("covers every block below 8, then grows by a quarter, and ends on the last block", () => {
    expect(gridPositions(0).length).toBe(0);
    expect(gridPositions(5)).toStrictEqual([0, 1, 2, 3, 4]);
    expect(gridPositions(40)).toStrictEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 18, 22, 27, 33, 39]);
    const full = gridPositions(256);
    expect(full.length).toBe(26);
    expect(full[full.length - 1]).toBe(255);
  });
});

describe("IndexSet", () => {
  it("round-trips through its encoding", () => {
    const s = new IndexSet();
    s.touch(11, 100, 1000, 60000);
    s.touch(11, 101, 1001, 60000);
    s.touch(22, 100, 1002, 60000);
    const d = IndexSet.decode(s.encode());
    expect(d.find(11)).toBe(0);
    expect(d.find(22)).toBe(1);
    expect(d.timeOf(0, 101)).toBe(1001);
    expect(d.timeOf(1, 101)).toBe(-1);
  });

  it("evicts the least recently used hash when full", () => {
    const s = new IndexSet();
    for (let i = 0; i < WAYS; i++) s.touch(<u64>(i + 1), 7, 1000 + i, 60000);
    s.touch(1, 7, 2000, 60000); // hash 1 is now the most recent
    s.touch(99, 7, 2001, 60000);
    expect(s.find(99)).toBeGreaterThanOrEqual(0);
    expect(s.find(1)).toBeGreaterThanOrEqual(0);
    expect(s.find(2)).toBe(-1); // the oldest went
    expect(s.hashes.length).toBe(WAYS);
  });

  it("keeps at most ENDPOINTS endpoints per hash, replacing the oldest", () => {
    const s = new IndexSet();
    for (let e = 1; e <= ENDPOINTS + 1; e++) s.touch(5, <u32>e, <u32>(1000 + e), 60000);
    expect(s.timeOf(0, 1)).toBe(-1);
    expect(s.timeOf(0, <u32>(ENDPOINTS + 1))).toBe(1000 + ENDPOINTS + 1);
  });

  it("marks a hash crowded when a live endpoint has to make room, and keeps the mark through encoding", () => {
    const s = new IndexSet();
    for (let e = 1; e <= ENDPOINTS; e++) s.touch(5, <u32>e, <u32>(1000 + e), 60000);
    expect(s.crowded[0]).toBe(false);
    // Refreshing a holder, or replacing an expired one, is not crowding.
    s.touch(5, 2, 2000, 60000);
    expect(s.crowded[0]).toBe(false);
    s.touch(5, 99, 1001 + 60000 + 1, 60000); // endpoint 1's slot has expired
    expect(s.crowded[0]).toBe(false);
    // Every slot live: a new endpoint pushes one out.
    s.touch(5, 100, 1001 + 60000 + 2, 60000);
    expect(s.crowded[0]).toBe(true);
    expect(IndexSet.decode(s.encode()).crowded[0]).toBe(true);
    expect(IndexSet.decode(s.encode()).timeOf(0, 100)).toBe(1001 + 60000 + 2);
  });

  it("treats garbage as an empty set", () => {
    const junk = new ArrayBuffer(7);
    store<u8>(changetype<usize>(junk), 200);
    expect(IndexSet.decode(junk).hashes.length).toBe(0);
    expect(IndexSet.decode(null).hashes.length).toBe(0);
  });
});

describe("PrefixIndex", () => {
  it("finds the longest recorded prefix per endpoint", () => {
    const store = new MemoryStore();
    const index = new PrefixIndex(store, 512, 600000);
    const ids = idIndex([10, 20, 30]);
    const r2 = hashes(ROUND2);
    const r1 = hashes(ROUND1);
    // Nothing recorded yet.
    const none = index.lookup(r1, ids, 3, 1000);
    expect(none.best).toBe(0);
    // Endpoint 20 served round 1.
    index.record(r1, none.grid, 20, 0, 1000);
    const m = index.lookup(r2, ids, 3, 2000);
    expect(m.matched[0]).toBe(0);
    expect(m.matched[1]).toBe(r1.length);
    expect(m.matched[2]).toBe(0);
    expect(m.probes).toBeLessThan(10);
  });

  it("takes a crowded block to be held by every endpoint, so it is no evidence for any", () => {
    const store = new MemoryStore();
    const index = new PrefixIndex(store, 512, 600000);
    const ids = idIndex([1, 2, 3, 4, 5, 6]);
    const h = hashes(ROUND1);
    // Round 1's prompt sent to five endpoints in turn: more than an entry has slots.
    for (let e = 1; e <= 5; e++) {
      const m = index.lookup(h, ids, 6, <f64>(e * 10));
      index.record(h, m.grid, <u32>e, m.matched[e - 1], <f64>(e * 10));
    }
    const m = index.lookup(h, ids, 6, 100);
    expect(m.common).toBe(h.length);
    expect(m.best).toBe(h.length);
    // Endpoint 6 never received it, and is taken to hold it all the same.
    expect(m.matched[5]).toBe(0);
    // A longer prompt continuing it matches at least the common blocks everywhere.
    const r2 = hashes(ROUND2);
    expect(index.lookup(r2, ids, 6, 110).common).toBe(h.length);
  });

  it("does not call a prefix common while it fits the slots", () => {
    const store = new MemoryStore();
    const index = new PrefixIndex(store, 512, 600000);
    const ids = idIndex([1, 2, 3, 4]);
    const h = hashes(ROUND1);
    for (let e = 1; e <= 4; e++) {
      const m = index.lookup(h, ids, 4, <f64>(e * 10));
      index.record(h, m.grid, <u32>e, m.matched[e - 1], <f64>(e * 10));
    }
    const m = index.lookup(h, ids, 4, 100);
    expect(m.common).toBe(0);
    for (let i = 0; i < 4; i++) expect(m.matched[i]).toBe(h.length);
  });

  it("forgets entries older than the TTL", () => {
    const store = new MemoryStore();
    const index = new PrefixIndex(store, 512, 10000);
    const ids = idIndex([1]);
    const h = hashes(ROUND1);
    index.record(h, index.lookup(h, ids, 1, 0).grid, 1, 0, 0);
    expect(index.lookup(h, ids, 1, 5000).matched[0]).toBe(h.length);
    expect(index.lookup(h, ids, 1, 20000).matched[0]).toBe(0);
  });

  it("writes only what is new", () => {
    const store = new MemoryStore();
    const index = new PrefixIndex(store, 4096, 600000);
    const ids = idIndex([1]);
    const h = hashes("{\"model\":\"m\",\"prompt\":\"" + "q".repeat(64 * 200) + "\"}");
    const m = index.lookup(h, ids, 1, 0);
    expect(index.record(h, m.grid, 1, 0, 0)).toBe(m.grid.length);
    const again = index.lookup(h, ids, 1, 10);
    expect(again.matched[0]).toBe(h.length);
    // Repeating the prompt soon after rewrites nothing.
    expect(index.record(h, again.grid, 1, again.matched[0], 10)).toBe(0);
  });

  it("never uses more keys than it has sets", () => {
    const store = new MemoryStore();
    const index = new PrefixIndex(store, 8, 600000);
    const ids = idIndex([1, 2]);
    for (let i = 0; i < 20; i++) {
      const h = hashes("{\"model\":\"m\",\"prompt\":\"" + i.toString().repeat(64 * 50) + "\"}");
      const m = index.lookup(h, ids, 2, <f64>i);
      index.record(h, m.grid, <u32>(1 + (i & 1)), m.matched[i & 1], <f64>i);
    }
    expect(store.size).toBeLessThanOrEqual(8);
  });
});
