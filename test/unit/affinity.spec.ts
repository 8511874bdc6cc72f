import { hrwWeight } from "../../assembly/schedule/affinity";

// The key's home among `n` endpoints: the highest weight (what the pick does among near-best ones).
function home(key: u64, ids: Uint32Array, n: i32): i32 {
  let best = 0;
  for (let k = 1; k < n; k++) if (hrwWeight(key, ids[k]) > hrwWeight(key, ids[best])) best = k;
  return best;
}
import { parseOpenAIBody, ParsedRequest } from "../../assembly/request/openai";

function ids(list: Array<u32>): Uint32Array {
  const a = new Uint32Array(list.length);
  for (let i = 0; i < list.length; i++) a[i] = list[i];
  return a;
}

let keep: ArrayBuffer = new ArrayBuffer(0);
function parse(text: string): ParsedRequest {
  keep = String.UTF8.encode(text);
  return parseOpenAIBody(changetype<usize>(keep), keep.byteLength, 64 * 256);
}

describe("rendezvous placement", () => {
  it("puts a key on the same endpoint whatever the candidates' order", () => {
    const a = ids([11, 22, 33, 44, 55]);
    const b = ids([55, 33, 11, 44, 22]);
    for (let key: u64 = 1; key < 200; key += 7) {
      const ka = home(key, a, 5);
      const kb = home(key, b, 5);
      expect(a[ka]).toBe(b[kb]);
    }
  });

  it("spreads keys over the endpoints", () => {
    const a = ids([11, 22, 33, 44]);
    const hits = new Int32Array(4);
    for (let key: u64 = 1; key <= 4000; key++) hits[home(key * 0x9e37, a, 4)]++;
    for (let i = 0; i < 4; i++) {
      expect(hits[i]).toBeGreaterThan(800);
      expect(hits[i]).toBeLessThan(1200);
    }
  });

  it("moves only the keys of an endpoint that leaves", () => {
    const four = ids([11, 22, 33, 44]);
    const three = ids([11, 22, 44]);
    let moved = 0;
    for (let key: u64 = 1; key <= 1000; key++) {
      const before = four[home(key * 31, four, 4)];
      const after = three[home(key * 31, three, 3)];
      if (before != 33) expect(after).toBe(before);
      else moved++;
    }
    expect(moved).toBeGreaterThan(150);
  });
});

describe("the affinity key's block", () => {
  it("ends with the first user turn, the same in every later turn", () => {
    const sys = "You are a helpful assistant. ".repeat(10);
    const user = "Please summarise the following text about rivers and mountains. ".repeat(4);
    const t1 = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"" + sys + "\"},{\"role\":\"user\",\"content\":\"" + user + "\"}]}");
    const k1 = t1.prompt.affinityBlock(64, 4, 0);
    const t2 = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"" + sys + "\"},{\"role\":\"user\",\"content\":\"" + user + "\"},{\"role\":\"assistant\",\"content\":\"Rivers run to the sea.\"},{\"role\":\"user\",\"content\":\"And mountains?\"}]}");
    const k2 = t2.prompt.affinityBlock(64, 4, 0);
    expect(k1).toBe(k2);
    expect(t1.prompt.firstUserEnd).toBe(t2.prompt.firstUserEnd);
    // Past the system prompt: the first user turn is in the key.
    expect(k1 * 64).toBeGreaterThan(sys.length);
  });

  it("without turns, blocks past the common ones; a short prompt, its last full block; none below one block", () => {
    const p = parse("{\"model\":\"m\",\"prompt\":\"" + "word ".repeat(400) + "\"}");
    expect(p.prompt.affinityBlock(64, 4, 0)).toBe(3);
    expect(p.prompt.affinityBlock(64, 4, 10)).toBe(13); // past a shared system prompt of 10 blocks
    const q = parse("{\"model\":\"m\",\"prompt\":\"" + "word ".repeat(30) + "\"}");
    expect(q.prompt.affinityBlock(64, 4, 0)).toBe(1);
    const r = parse("{\"model\":\"m\",\"prompt\":\"short\"}");
    expect(r.prompt.affinityBlock(64, 4, 0)).toBe(-1);
  });
});
