import { pdBody, PdFields, roomOf, ridOf, ROOM_MASK } from "../../assembly/pd/body";
import { classify, PdCalls, PendingPrefill, OUTCOME_OK, OUTCOME_REJECTED, OUTCOME_FAILED, OUTCOME_TIMEOUT } from "../../assembly/pd/calls";
import { downSet, markDown, MAX_DOWN } from "../../assembly/pd/down";
import { decodeState, Endpoint, ROLE_DECODE, ROLE_NONE, ROLE_PREFILL, STRATEGY_DEFAULT, STRATEGY_PREFIX_CACHE } from "../../assembly/state/document";
import { parseConfig, Config } from "../../assembly/config";
import { MemoryStore } from "../../assembly/util/store";

function fields(): PdFields {
  const f = new PdFields();
  f.host = "10.0.0.7";
  f.port = 34000;
  f.room = 9223372036854775807;
  f.rid = "00112233445566778899aabbccddeeff";
  return f;
}

function rewrite(body: string, target: string | null = null): string {
  const b = String.UTF8.encode(body);
  const m = body.indexOf("\"model\":");
  let start = 0;
  let end = 0;
  if (m >= 0) {
    start = m + 8;
    end = body.indexOf("\"", start + 1) + 1;
  }
  const r = pdBody(b, start, end, target, fields());
  expect(r.error).toBe("");
  return String.UTF8.decode(r.body as ArrayBuffer);
}

describe("pdBody", () => {
  it("puts the three bootstrap fields and a rid first, the room as an exact integer", () => {
    expect(rewrite("{\"model\":\"m\",\"messages\":[]}")).toBe(
      "{\"bootstrap_host\":\"10.0.0.7\",\"bootstrap_port\":34000,\"bootstrap_room\":9223372036854775807,\"rid\":\"00112233445566778899aabbccddeeff\",\"model\":\"m\",\"messages\":[]}");
  });

  it("removes every bootstrap field the client sent, escaped keys too", () => {
    const out = rewrite("{ \"bootstrap_room\" : 1 , \"model\":\"m\", \"bootstrap\\u005fhost\":\"6.6.6.6\",\"bootstrap_port\":{\"a\":[1]} }");
    expect(out).toBe("{\"bootstrap_host\":\"10.0.0.7\",\"bootstrap_port\":34000,\"bootstrap_room\":9223372036854775807,\"rid\":\"00112233445566778899aabbccddeeff\",\"model\":\"m\"}");
    const b = String.UTF8.encode("{\"bootstrap_room\":1,\"model\":\"m\",\"bootstrap_host\":\"x\"}");
    expect(pdBody(b, 0, 0, null, fields()).removed).toBe(2);
  });

  it("rewrites the model to its target in the same pass", () => {
    expect(rewrite("{\"messages\":[],\"model\":\"alias\",\"stream\":true}", "/models/Qwen3-32B")).toBe(
      "{\"bootstrap_host\":\"10.0.0.7\",\"bootstrap_port\":34000,\"bootstrap_room\":9223372036854775807,\"rid\":\"00112233445566778899aabbccddeeff\",\"messages\":[],\"model\":\"/models/Qwen3-32B\",\"stream\":true}");
  });

  it("keeps a client's string rid and uses it", () => {
    const r = pdBody(String.UTF8.encode("{\"model\":\"m\",\"rid\":\"mine\"}"), 8, 11, null, fields());
    expect(r.rid).toBe("mine");
    expect(String.UTF8.decode(r.body as ArrayBuffer)).toBe("{\"bootstrap_host\":\"10.0.0.7\",\"bootstrap_port\":34000,\"bootstrap_room\":9223372036854775807,\"model\":\"m\",\"rid\":\"mine\"}");
  });

  it("adds no scalar rid to batches (several prompts, n > 1, a list of rids)", () => {
    expect(pdBody(String.UTF8.encode("{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}"), 0, 0, null, fields()).rid).toBe("");
    expect(pdBody(String.UTF8.encode("{\"model\":\"m\",\"prompt\":[[1,2],[3]]}"), 0, 0, null, fields()).rid).toBe("");
    expect(pdBody(String.UTF8.encode("{\"model\":\"m\",\"n\":3,\"messages\":[]}"), 0, 0, null, fields()).rid).toBe("");
    expect(pdBody(String.UTF8.encode("{\"model\":\"m\",\"rid\":[\"a\",\"b\"]}"), 0, 0, null, fields()).rid).toBe("");
    expect(pdBody(String.UTF8.encode("{\"model\":\"m\",\"prompt\":[1,2,3]}"), 0, 0, null, fields()).rid).toBe("00112233445566778899aabbccddeeff");
    expect(pdBody(String.UTF8.encode("{\"model\":\"m\",\"n\":1}"), 0, 0, null, fields()).rid).toBe("00112233445566778899aabbccddeeff");
  });

  it("writes an empty object's fields without a trailing comma", () => {
    expect(rewrite("{}")).toBe("{\"bootstrap_host\":\"10.0.0.7\",\"bootstrap_port\":34000,\"bootstrap_room\":9223372036854775807,\"rid\":\"00112233445566778899aabbccddeeff\"}");
    expect(rewrite("{\"bootstrap_room\":5}")).toBe("{\"bootstrap_host\":\"10.0.0.7\",\"bootstrap_port\":34000,\"bootstrap_room\":9223372036854775807,\"rid\":\"00112233445566778899aabbccddeeff\"}");
  });

  it("refuses what is not a JSON object", () => {
    expect(pdBody(String.UTF8.encode("[1]"), 0, 0, null, fields()).body).toBeNull();
    expect(pdBody(String.UTF8.encode("{\"a\":"), 0, 0, null, fields()).error.length).toBeGreaterThan(0);
  });
});

describe("rooms and rids", () => {
  it("keeps rooms below 2^63", () => {
    expect(roomOf(0xffffffffffffffff)).toBe(ROOM_MASK);
    expect(roomOf(0x8000000000000001)).toBe(1);
  });

  it("writes 32 lowercase hex digits", () => {
    expect(ridOf(0xdeadbeef, 0x0123456789abcdef)).toBe("00000000deadbeef0123456789abcdef");
  });
});

describe("prefill outcomes", () => {
  it("classifies answers", () => {
    expect(classify(3, 200)).toBe(OUTCOME_OK);
    expect(classify(3, 204)).toBe(OUTCOME_OK);
    expect(classify(0, 0)).toBe(OUTCOME_FAILED);
    expect(classify(3, 0)).toBe(OUTCOME_FAILED);
    expect(classify(3, 500)).toBe(OUTCOME_FAILED);
    expect(classify(3, 503)).toBe(OUTCOME_FAILED);
    expect(classify(3, 504)).toBe(OUTCOME_TIMEOUT);
    expect(classify(3, 400)).toBe(OUTCOME_REJECTED);
    expect(classify(3, 429)).toBe(OUTCOME_REJECTED);
  });

  it("tracks calls and whether the client can still be answered", () => {
    const c = new PdCalls();
    const p = new PendingPrefill();
    p.stream = 7;
    c.track(12, p);
    expect(c.inFlight).toBe(1);
    expect(c.canAnswer(7)).toBe(true);
    c.responseStarted(7);
    expect(c.canAnswer(7)).toBe(false);
    expect(c.take(12)).toBe(p);
    expect(c.take(12)).toBeNull();
    expect(c.inFlight).toBe(0);
    c.trackAbort(16);
    expect(c.takeAbort(16)).toBe(true);
    expect(c.takeAbort(16)).toBe(false);
    c.streamDone(7);
    expect(c.canAnswer(7)).toBe(false);
  });
});

describe("pods to avoid", () => {
  it("marks a pod down until its time, shared through the store", () => {
    const s = new MemoryStore();
    expect(downSet(s, "ns/p", 0).size).toBe(0);
    expect(markDown(s, "ns/p", 42, 1000, 0)).toBe(true);
    expect(downSet(s, "ns/p", 500).has(42)).toBe(true);
    expect(downSet(s, "ns/p", 1000).has(42)).toBe(false);
    expect(downSet(s, "ns/q", 500).size).toBe(0);
  });

  it("drops expired entries and keeps at most MAX_DOWN", () => {
    const s = new MemoryStore();
    markDown(s, "ns/p", 1, 100, 0);
    markDown(s, "ns/p", 2, 5000, 200);
    const set = downSet(s, "ns/p", 200);
    expect(set.has(1)).toBe(false);
    expect(set.has(2)).toBe(true);
    for (let i = 0; i < MAX_DOWN + 10; i++) markDown(s, "ns/p", 100 + i, 10000 + <f64>i, 300);
    const all = downSet(s, "ns/p", 300);
    expect(all.size).toBe(MAX_DOWN);
    expect(all.has(100 + MAX_DOWN + 9)).toBe(true);
  });
});

describe("prefill/decode state", () => {
  it("reads pd and endpoint roles", () => {
    const doc = "{\"version\":1,\"generated_at_ms\":1,\"pools\":[{\"name\":\"ns/p\",\"runtime\":\"sglang\"," +
      "\"pd\":{\"role_label\":\"r\",\"bootstrap_port\":34000,\"prefill\":{\"strategy\":\"PREFIX_CACHE\"},\"decode\":{\"strategy\":\"DEFAULT\"}}," +
      "\"endpoints\":[{\"pod\":\"a\",\"address\":\"10.0.0.1:8000\",\"role\":\"prefill\"},{\"pod\":\"b\",\"address\":\"[fd00::2]:8000\",\"role\":\"decode\"},{\"pod\":\"c\",\"address\":\"10.0.0.3:8000\",\"role\":\"router\"}]}],\"models\":[]}";
    const r = decodeState(String.UTF8.encode(doc), 100);
    expect(r.error).toBe("");
    const pool = (r.state as State).pools[0];
    expect(pool.pd).not.toBeNull();
    const pd = pool.pd!;
    expect(pd.bootstrapPort).toBe(34000);
    expect(pd.prefillStrategy).toBe(STRATEGY_PREFIX_CACHE);
    expect(pd.decodeStrategy).toBe(STRATEGY_DEFAULT);
    expect(pool.endpoints[0].role).toBe(ROLE_PREFILL);
    expect(pool.endpoints[1].role).toBe(ROLE_DECODE);
    expect(pool.endpoints[1].ip).toBe("fd00::2");
    expect(pool.endpoints[0].ip).toBe("10.0.0.1");
    expect(pool.endpoints[2].role).toBe(ROLE_NONE);
    expect((r.state as State).warnings.length).toBe(1);
  });

  it("refuses a bad bootstrap port", () => {
    const doc = "{\"version\":1,\"generated_at_ms\":1,\"pools\":[{\"name\":\"ns/p\",\"pd\":{\"bootstrap_port\":70000},\"endpoints\":[]}],\"models\":[]}";
    expect(decodeState(String.UTF8.encode(doc), 100).state).toBeNull();
  });

  it("a pool without pd has none", () => {
    const doc = "{\"version\":1,\"generated_at_ms\":1,\"pools\":[{\"name\":\"ns/p\",\"endpoints\":[]}],\"models\":[]}";
    expect((decodeState(String.UTF8.encode(doc), 100).state as State).pools[0].pd).toBeNull();
  });
});

describe("pd configuration", () => {
  it("has defaults and reads the pd section", () => {
    const d = new Config();
    expect(d.pdCluster).toBe("wasm_epp_original_dst");
    expect(d.pdTimeoutMs).toBe(300000);
    const c = parseConfig("{\"pd\":{\"cluster\":\"x\",\"timeout_ms\":1000,\"failure_cooldown_ms\":0,\"abort_path\":\"\"}}").config as Config;
    expect(c.pdCluster).toBe("x");
    expect(c.pdTimeoutMs).toBe(1000);
    expect(c.pdFailureCooldownMs).toBe(0);
    expect(c.pdAbortPath).toBe("");
    expect(parseConfig("{\"pd\":{\"abort_path\":\"abort\"}}").error.startsWith("pd.abort_path:")).toBe(true);
    expect(parseConfig("{\"pd\":{\"cluster\":\"\"}}").error.startsWith("pd.cluster:")).toBe(true);
  });
});

import { State } from "../../assembly/state/document";
