import { decodeState, isHostPort, State, STRATEGY_PREFIX_CACHE, STRATEGY_DEFAULT, CRITICAL, SHEDDABLE, STANDARD } from "../../assembly/state/document";
import { storeState, StateCache, storedDocument, CONFLICT, STORED } from "../../assembly/state/store";
import { MemoryStore } from "../../assembly/util/store";

const DOC = "{\"version\": 42, \"generated_at_ms\": 1763600000000, \"pools\": [{\"name\": \"default/vllm-qwen-pool\", \"strategy\": \"PREFIX_CACHE\", \"runtime\": \"vllm\", \"endpoints\": [{\"pod\": \"qwen-0\", \"address\": \"10.0.0.1:8000\", \"ready\": true, \"metrics_age_ms\": 35, \"waiting\": 2, \"running\": 14, \"kv_usage\": 0.41, \"lora_running\": [\"travel-helper-v1\"], \"lora_waiting\": [], \"max_lora\": 2, \"score\": 0.73, \"future_field\": {\"x\": 1}}]}], \"models\": [{\"name\": \"/model/qwen\", \"pool\": \"default/vllm-qwen-pool\", \"criticality\": \"Critical\", \"targets\": [{\"name\": \"/model/qwen\", \"weight\": 100}]}]}";

function decode(text: string): State | null {
  return decodeState(String.UTF8.encode(text), 1024).state;
}

function errorOf(text: string): string {
  return decodeState(String.UTF8.encode(text), 1024).error;
}

function doc(endpoint: string, extra: string = ""): string {
  return "{\"version\":1,\"generated_at_ms\":1,\"pools\":[{\"name\":\"ns/p\",\"endpoints\":[" + endpoint + "]}],\"models\":[" + extra + "]}";
}

describe("decodeState", () => {
  it("reads the documented example", () => {
    const st = decode(DOC) as State;
    expect(st.version).toBe(42);
    expect(st.generatedAtMs).toBe(1763600000000);
    expect(st.pools.length).toBe(1);
    const p = st.pools[0];
    expect(p.name).toBe("default/vllm-qwen-pool");
    expect(p.strategy).toBe(STRATEGY_PREFIX_CACHE);
    const e = p.endpoints[0];
    expect(e.pod).toBe("qwen-0");
    expect(e.address).toBe("10.0.0.1:8000");
    expect(e.waiting).toBe(2);
    expect(e.running).toBe(14);
    expect(e.kvUsage).toBe(0.41);
    expect(e.loraRunning).toStrictEqual(["travel-helper-v1"]);
    expect(e.maxLora).toBe(2);
    expect(e.score).toBe(0.73);
    expect(p.ids[0]).toBe(e.id);
    expect(p.models.has("/model/qwen")).toBe(true);
    expect(p.models.get("/model/qwen").criticality).toBe(CRITICAL);
  });

  it("names the path of what is wrong", () => {
    expect(errorOf("[]")).toBe("the state document must be a JSON object");
    expect(errorOf("{\"generated_at_ms\":1,\"pools\":[],\"models\":[]}")).toBe("version: must be a non-negative number");
    expect(errorOf("{\"version\":1,\"pools\":[],\"models\":[]}")).toBe("generated_at_ms: must be a non-negative number (milliseconds since the epoch)");
    expect(errorOf("{\"version\":1,\"generated_at_ms\":1,\"models\":[]}")).toBe(".pools: is required");
    expect(errorOf(doc("{\"pod\":\"a\",\"address\":\"10.0.0.1\"}"))).toBe("pools[0].endpoints[0].address: must be ip:port (IPv4, or [IPv6]:port)");
    expect(errorOf(doc("{\"pod\":\"a\",\"address\":\"10.0.0.1:80\",\"waiting\":\"3\"}"))).toBe("pools[0].endpoints[0].waiting: must be a number");
    expect(errorOf(doc("{\"pod\":\"a\",\"address\":\"10.0.0.1:80\"},{\"pod\":\"b\",\"address\":\"10.0.0.1:80\"}"))).toBe("pools[0].endpoints[1].address: duplicate address 10.0.0.1:80");
    expect(errorOf(doc("{\"address\":\"10.0.0.1:80\"}"))).toBe("pools[0].endpoints[0].pod: must be a string");
    expect(errorOf("{\"version\":1,\"generated_at_ms\":1,\"pools\":[{\"name\":\"nopool\",\"endpoints\":[]}],\"models\":[]}")).toBe("pools[0].name: must be \"namespace/name\"");
    expect(errorOf("{not json")).toBe("not valid JSON: expected a string key at byte 1");
  });

  it("refuses an address that could inject into a header", () => {
    expect(errorOf(doc("{\"pod\":\"a\",\"address\":\"10.0.0.1:80\\r\\nx-evil: 1\"}"))).toBe("pools[0].endpoints[0].address: must be ip:port (IPv4, or [IPv6]:port)");
    expect(errorOf(doc("{\"pod\":\"a\",\"address\":\"evil.example.com:80\"}"))).toBe("pools[0].endpoints[0].address: must be ip:port (IPv4, or [IPv6]:port)");
  });

  it("is lenient where the document may grow", () => {
    const st = decode(doc("{\"pod\":\"a\",\"address\":\"10.0.0.1:80\",\"kv_usage\":1.7,\"score\":-2}", "{\"name\":\"m\",\"pool\":\"ns/p\",\"criticality\":\"Urgent\"}")) as State;
    const e = st.pools[0].endpoints[0];
    expect(e.kvUsage).toBe(1);
    expect(e.score).toBe(0);
    expect(e.ready).toBe(true);
    expect(st.pools[0].models.get("m").criticality).toBe(STANDARD);
    const u = decode("{\"version\":1,\"generated_at_ms\":1,\"pools\":[{\"name\":\"ns/p\",\"strategy\":\"FANCY\",\"endpoints\":[]}],\"models\":[]}") as State;
    expect(u.pools[0].strategy).toBe(STRATEGY_DEFAULT);
    expect(u.warnings.length).toBe(1);
  });

  it("keeps the first of two models with one name, and reads Sheddable", () => {
    const st = decode(doc("", "{\"name\":\"m\",\"pool\":\"ns/p\",\"criticality\":\"Sheddable\",\"targets\":[{\"name\":\"a\",\"weight\":1}]},{\"name\":\"m\",\"pool\":\"ns/p\",\"targets\":[{\"name\":\"b\"}]}")) as State;
    const m = st.pools[0].models.get("m");
    expect(m.criticality).toBe(SHEDDABLE);
    expect(m.targets[0].name).toBe("a");
  });

  it("bounds the number of endpoints", () => {
    let eps = "";
    for (let i = 0; i < 5; i++) eps += (i > 0 ? "," : "") + "{\"pod\":\"p" + i.toString() + "\",\"address\":\"10.0.0." + (i + 1).toString() + ":80\"}";
    expect(decodeState(String.UTF8.encode(doc(eps)), 4).error).toBe("pools[0].endpoints: has more than 4 entries");
  });
});

describe("isHostPort", () => {
  it("accepts IPv4 and bracketed IPv6 with a port", () => {
    expect(isHostPort("10.0.0.1:8000")).toBe(true);
    expect(isHostPort("255.255.255.255:65535")).toBe(true);
    expect(isHostPort("[fd00::1]:8000")).toBe(true);
    expect(isHostPort("[2001:db8:0:0:0:0:0:1]:80")).toBe(true);
    expect(isHostPort("[::]:1")).toBe(true);
  });

  it("rejects everything else", () => {
    expect(isHostPort("10.0.0.1")).toBe(false);
    expect(isHostPort("10.0.0.256:80")).toBe(false);
    expect(isHostPort("10.0.0:80")).toBe(false);
    expect(isHostPort("010.0.0.1:80")).toBe(false);
    expect(isHostPort("10.0.0.1:0")).toBe(false);
    expect(isHostPort("10.0.0.1:65536")).toBe(false);
    expect(isHostPort("10.0.0.1:080")).toBe(false);
    expect(isHostPort("fd00::1:80")).toBe(false);
    expect(isHostPort("[fd00::1::2]:80")).toBe(false);
    expect(isHostPort("[1:2:3:4:5:6:7:8:9]:80")).toBe(false);
    expect(isHostPort("[fd00::1:]:80")).toBe(false);
    expect(isHostPort("host:80")).toBe(false);
    expect(isHostPort(" 10.0.0.1:80")).toBe(false);
    expect(isHostPort(":80")).toBe(false);
  });
});

describe("state store", () => {
  it("stores, refuses older documents, and lets workers pick up changes", () => {
    const shared = new MemoryStore();
    const worker = new StateCache(shared, 1024);
    expect(worker.refresh()).toBe(0);
    expect(worker.state).toBeNull();
    const body = String.UTF8.encode(DOC);
    expect(storeState(shared, body, 1000, 1).status).toBe(STORED);
    expect(worker.refresh()).toBe(1);
    expect((worker.state as State).version).toBe(42);
    expect(worker.refresh()).toBe(0);
    const older = storeState(shared, body, 999, 2);
    expect(older.status).toBe(CONFLICT);
    expect(older.storedGeneratedAt).toBe(1000);
    expect(storeState(shared, body, 1000, 3).status).toBe(STORED);
    expect(worker.refresh()).toBe(1);
    expect(String.UTF8.decode(storedDocument(shared) as ArrayBuffer)).toBe(DOC);
  });

  it("keeps the previous state when a stored one cannot be decoded", () => {
    const shared = new MemoryStore();
    const worker = new StateCache(shared, 1024);
    storeState(shared, String.UTF8.encode(DOC), 1, 1);
    expect(worker.refresh()).toBe(1);
    storeState(shared, String.UTF8.encode("{broken"), 2, 2);
    expect(worker.refresh()).toBe(-1);
    expect((worker.state as State).version).toBe(42);
    expect(worker.lastError.length).toBeGreaterThan(0);
  });
});
