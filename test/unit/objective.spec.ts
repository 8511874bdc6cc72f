import { decodeState, State, Pool, Model, Target, Objective, criticalityOfPriority, CRITICAL, STANDARD, SHEDDABLE } from "../../assembly/state/document";
import { resolveModel, handledLine, objectiveSuffix, Resolution } from "../../assembly/route";
import { applyObjective, OBJECTIVE_NONE, OBJECTIVE_APPLIED, OBJECTIVE_UNKNOWN } from "../../assembly/objective/lookup";
import { preferred, OBJECTIVE_HEADER, OBJECTIVE_HEADER_ALIAS, FAIRNESS_HEADER, FAIRNESS_HEADER_ALIAS, REWRITE_HEADERS } from "../../assembly/objective/headers";
import { flowId, DEFAULT_FLOW } from "../../assembly/objective/flow";
import { Held, WorkerQueue } from "../../assembly/queue/band";
import { Config, parseConfig, FAIRNESS_ROUND_ROBIN, FAIRNESS_FCFS } from "../../assembly/config";
import { Endpoint } from "../../assembly/state/document";
import { Pick } from "../../assembly/schedule/pick";
import { Rng } from "../../assembly/util/rng";
import { xxh64 } from "../../assembly/prefix/xxhash64";

const HEAD = "{\"version\":1,\"generated_at_ms\":1,";
const EP = "{\"pod\":\"a\",\"address\":\"10.0.0.1:80\"}";

// A document with pool ns/p (and its extra members), the models and the objectives given.
function doc(poolExtra: string, models: string, objectives: string | null): string {
  return HEAD + "\"pools\":[{\"name\":\"ns/p\"" + poolExtra + ",\"endpoints\":[" + EP + "]}],\"models\":[" + models + "]" +
    (objectives !== null ? ",\"objectives\":" + (objectives as string) : "") + "}";
}

function decode(text: string): State {
  const r = decodeState(String.UTF8.encode(text), 1024);
  if (r.state === null) throw new Error("refused: " + r.error);
  return r.state as State;
}

function errorOf(text: string): string {
  return decodeState(String.UTF8.encode(text), 1024).error;
}

function obj(name: string, pool: string, priority: string, criticality: string): string {
  return "{\"name\":\"" + name + "\",\"pool\":\"" + pool + "\"" + (priority.length > 0 ? ",\"priority\":" + priority : "") +
    (criticality.length > 0 ? ",\"criticality\":" + criticality : "") + "}";
}

describe("state document: objectives", () => {
  it("reads the objectives of each pool by name, with priority and criticality", () => {
    const st = decode(doc("", "", "[" + obj("premium", "ns/p", "10", "\"Critical\"") + "," + obj("batch", "ns/p", "-1", "\"Sheddable\"") + "," + obj("plain", "ns/p", "0", "\"Standard\"") + "]"));
    const p = st.pools[0];
    expect(p.objectives.size).toBe(3);
    expect(p.objectives.get("premium").priority).toBe(10);
    expect(p.objectives.get("premium").criticality).toBe(CRITICAL);
    expect(p.objectives.get("batch").priority).toBe(-1);
    expect(p.objectives.get("batch").criticality).toBe(SHEDDABLE);
    expect(p.objectives.get("plain").criticality).toBe(STANDARD);
    expect(st.warnings.length).toBe(0);
  });

  it("is optional: a document without objectives (or with null) has none", () => {
    expect(decode(doc("", "", null)).pools[0].objectives.size).toBe(0);
    expect(decode(doc("", "", "null")).pools[0].objectives.size).toBe(0);
    expect(decode(doc("", "", "[]")).pools[0].objectives.size).toBe(0);
  });

  it("derives the band from the priority when the criticality is absent or unknown (with a warning)", () => {
    const st = decode(doc("", "", "[" + obj("up", "ns/p", "3", "") + "," + obj("down", "ns/p", "-7", "\"Urgent\"") + "," + obj("zero", "ns/p", "", "") + "]"));
    const p = st.pools[0];
    expect(p.objectives.get("up").criticality).toBe(CRITICAL);
    expect(p.objectives.get("down").criticality).toBe(SHEDDABLE);
    expect(p.objectives.get("zero").priority).toBe(0);
    expect(p.objectives.get("zero").criticality).toBe(STANDARD);
    expect(st.warnings.length).toBe(1);
    expect(st.warnings[0]).toBe("objectives[1].criticality: unknown criticality \"Urgent\", using Sheddable (from the priority)");
  });

  it("keeps the first of two objectives with one name in a pool; ignores those of unknown pools with a warning", () => {
    const st = decode(doc("", "", "[" + obj("o", "ns/p", "5", "\"Critical\"") + "," + obj("o", "ns/p", "-5", "\"Sheddable\"") + "," + obj("o", "ns/other", "1", "\"Critical\"") + "]"));
    expect(st.pools[0].objectives.size).toBe(1);
    expect(st.pools[0].objectives.get("o").priority).toBe(5);
    expect(st.warnings).toStrictEqual(["objectives[2].pool: no pool named ns/other"]);
  });

  it("ignores unknown members of an objective", () => {
    const st = decode(doc("", "", "[{\"name\":\"o\",\"pool\":\"ns/p\",\"priority\":2,\"criticality\":\"Critical\",\"future\":{\"x\":[1]}}]"));
    expect(st.pools[0].objectives.get("o").criticality).toBe(CRITICAL);
  });

  it("refuses the whole document for a bad objective, naming its path", () => {
    expect(errorOf(doc("", "", "{}"))).toBe(".objectives: must be an array");
    expect(errorOf(doc("", "", "[3]"))).toBe("objectives[0]: must be an object");
    expect(errorOf(doc("", "", "[{\"pool\":\"ns/p\"}]"))).toBe("objectives[0].name: must be a string");
    expect(errorOf(doc("", "", "[{\"name\":\"\",\"pool\":\"ns/p\"}]"))).toBe("objectives[0].name: must have 1 to 1024 characters");
    expect(errorOf(doc("", "", "[" + obj("o", "ns/p", "1", "") + ",{\"name\":\"x\"}]"))).toBe("objectives[1].pool: must be a string");
    expect(errorOf(doc("", "", "[" + obj("o", "ns/p", "\"high\"", "") + "]"))).toBe("objectives[0].priority: must be a number");
    expect(errorOf(doc("", "", "[" + obj("o", "ns/p", "1.5", "") + "]"))).toBe("objectives[0].priority: must be an integer");
    expect(errorOf(doc("", "", "[" + obj("o", "ns/p", "2147483648", "") + "]"))).toBe("objectives[0].priority: must be between -2147483648 and 2147483647");
    expect(errorOf(doc("", "", "[" + obj("o", "ns/p", "1", "7") + "]"))).toBe("objectives[0].criticality: must be a string");
  });

  it("bounds the number of objectives at 8192", () => {
    const many = new Array<string>();
    for (let i = 0; i < 8193; i++) many.push(obj("o" + i.toString(), "ns/p", "", ""));
    expect(errorOf(doc("", "", "[" + many.join(",") + "]"))).toBe(".objectives: has more than 8192 entries");
    many.pop();
    const ok = decode(doc("", "", "[" + many.join(",") + "]"));
    expect(ok.pools[0].objectives.size).toBe(8192);
  });

  it("maps priorities to bands as GIE's sheddable rule: above 0 Critical, 0 Standard, below 0 Sheddable", () => {
    expect(criticalityOfPriority(1)).toBe(CRITICAL);
    expect(criticalityOfPriority(2147483647)).toBe(CRITICAL);
    expect(criticalityOfPriority(0)).toBe(STANDARD);
    expect(criticalityOfPriority(-1)).toBe(SHEDDABLE);
  });
});

describe("state document: default_targets", () => {
  it("reads a pool's default targets with their weights (1 when absent)", () => {
    const p = decode(doc(",\"default_targets\":[{\"name\":\"base-a\",\"weight\":3},{\"name\":\"base-b\"}]", "", null)).pools[0];
    expect(p.defaultModel).not.toBeNull();
    const m = p.defaultModel!;
    expect(m.targets.length).toBe(2);
    expect(m.targets[0].name).toBe("base-a");
    expect(m.targets[0].weight).toBe(3);
    expect(m.targets[1].weight).toBe(1);
    expect(m.criticality).toBe(STANDARD);
    expect(decode(doc("", "", null)).pools[0].defaultModel).toBeNull();
    expect(decode(doc(",\"default_targets\":null", "", null)).pools[0].defaultModel).toBeNull();
  });

  it("ignores unknown members of a default target", () => {
    const p = decode(doc(",\"default_targets\":[{\"name\":\"base\",\"weight\":0,\"note\":\"x\"}]", "", null)).pools[0];
    expect((p.defaultModel as Model).targets[0].weight).toBe(0);
  });

  it("refuses the whole document for bad default targets, naming their path", () => {
    expect(errorOf(doc(",\"default_targets\":{}", "", null))).toBe("pools[0].default_targets: must be an array");
    expect(errorOf(doc(",\"default_targets\":[]", "", null))).toBe("pools[0].default_targets: must have 1 to 256 entries");
    expect(errorOf(doc(",\"default_targets\":[\"base\"]", "", null))).toBe("pools[0].default_targets[0]: must be an object");
    expect(errorOf(doc(",\"default_targets\":[{\"name\":\"a\"},{\"weight\":1}]", "", null))).toBe("pools[0].default_targets[1].name: must be a string");
    expect(errorOf(doc(",\"default_targets\":[{\"name\":\"a\",\"weight\":-1}]", "", null))).toBe("pools[0].default_targets[0].weight: must be between 0 and 1000000");
    expect(errorOf(doc(",\"default_targets\":[{\"name\":\"a\",\"weight\":\"1\"}]", "", null))).toBe("pools[0].default_targets[0].weight: must be a number");
    let many = "";
    for (let i = 0; i < 257; i++) many += (i > 0 ? "," : "") + "{\"name\":\"t" + i.toString() + "\"}";
    expect(errorOf(doc(",\"default_targets\":[" + many + "]", "", null))).toBe("pools[0].default_targets: has more than 256 entries");
  });
});

function poolWith(defaults: Array<Target> | null): Pool {
  const p = new Pool();
  p.name = "ns/p";
  const m = new Model();
  m.name = "/model/qwen";
  m.pool = "ns/p";
  m.criticality = SHEDDABLE;
  m.targets = [new Target("/model/qwen", 1)];
  p.models.set(m.name, m);
  if (defaults !== null) {
    const d = new Model();
    d.pool = "ns/p";
    d.targets = defaults as Array<Target>;
    p.defaultModel = d;
  }
  const o = new Objective();
  o.name = "premium";
  o.pool = "ns/p";
  o.priority = 5;
  o.criticality = CRITICAL;
  p.objectives.set(o.name, o);
  return p;
}

describe("resolveModel with default targets", () => {
  it("resolves a model without an entry to a default target by weight, as known and Standard", () => {
    const p = poolWith([new Target("base-a", 90), new Target("base-b", 10)]);
    const rng = new Rng(11);
    let b = 0;
    for (let i = 0; i < 10000; i++) {
      const r = resolveModel(p, "anything", rng);
      expect(r.known).toBe(true);
      expect(r.byDefault).toBe(true);
      expect(r.criticality).toBe(STANDARD);
      if (r.target == "base-b") b++;
      else expect(r.target).toBe("base-a");
    }
    expect(b).toBeGreaterThan(850);
    expect(b).toBeLessThan(1150);
  });

  it("picks uniformly when every default weight is zero", () => {
    const p = poolWith([new Target("x", 0), new Target("y", 0)]);
    const rng = new Rng(5);
    let y = 0;
    for (let i = 0; i < 1000; i++) if (resolveModel(p, "m", rng).target == "y") y++;
    expect(y).toBeGreaterThan(400);
    expect(y).toBeLessThan(600);
  });

  it("keeps a model's own entry ahead of the defaults, and an unknown model unknown without defaults", () => {
    const p = poolWith([new Target("base", 1)]);
    const own = resolveModel(p, "/model/qwen", new Rng(1));
    expect(own.byDefault).toBe(false);
    expect(own.target).toBe("/model/qwen");
    expect(own.criticality).toBe(SHEDDABLE);
    const none = resolveModel(poolWith(null), "other", new Rng(1));
    expect(none.known).toBe(false);
    expect(none.byDefault).toBe(false);
    expect(none.target).toBe("other");
  });

  it("reads default_targets from a pushed document into the same resolution", () => {
    const st = decode(doc(",\"default_targets\":[{\"name\":\"base\"}]", "{\"name\":\"m\",\"pool\":\"ns/p\",\"criticality\":\"Critical\"}", null));
    const r = resolveModel(st.pools[0], "other", new Rng(3));
    expect(r.known).toBe(true);
    expect(r.target).toBe("base");
    expect(resolveModel(st.pools[0], "m", new Rng(3)).target).toBe("m");
  });
});

describe("applyObjective", () => {
  it("sets the objective's criticality over the model's", () => {
    const p = poolWith(null);
    const r = resolveModel(p, "/model/qwen", new Rng(1));
    expect(r.criticality).toBe(SHEDDABLE);
    expect(applyObjective(r, p, "premium")).toBe(OBJECTIVE_APPLIED);
    expect(r.criticality).toBe(CRITICAL);
    expect(r.objective).toBe("premium");
  });

  it("applies to a model resolved by default targets and to an unknown model", () => {
    const p = poolWith([new Target("base", 1)]);
    const d = resolveModel(p, "other", new Rng(1));
    expect(applyObjective(d, p, "premium")).toBe(OBJECTIVE_APPLIED);
    expect(d.criticality).toBe(CRITICAL);
    const u = resolveModel(poolWith(null), "other", new Rng(1));
    expect(applyObjective(u, poolWith(null), "premium")).toBe(OBJECTIVE_APPLIED);
    expect(u.criticality).toBe(CRITICAL);
  });

  it("leaves the request unchanged for an unknown objective or none", () => {
    const p = poolWith(null);
    const r = resolveModel(p, "/model/qwen", new Rng(1));
    expect(applyObjective(r, p, "Premium")).toBe(OBJECTIVE_UNKNOWN);
    expect(r.criticality).toBe(SHEDDABLE);
    expect(r.objective).toBe("");
    expect(applyObjective(r, p, "")).toBe(OBJECTIVE_NONE);
    expect(r.criticality).toBe(SHEDDABLE);
  });

  it("looks objectives up in the request's pool only", () => {
    const other = new Pool();
    other.name = "ns/other";
    const r = new Resolution();
    expect(applyObjective(r, other, "premium")).toBe(OBJECTIVE_UNKNOWN);
    expect(r.criticality).toBe(STANDARD);
  });
});

describe("objective and fairness headers", () => {
  it("names llm-d-router's headers first and GIE's as aliases", () => {
    expect(OBJECTIVE_HEADER).toBe("x-llm-d-inference-objective");
    expect(OBJECTIVE_HEADER_ALIAS).toBe("x-gateway-inference-objective");
    expect(FAIRNESS_HEADER).toBe("x-llm-d-inference-fairness-id");
    expect(FAIRNESS_HEADER_ALIAS).toBe("x-gateway-inference-fairness-id");
    expect(REWRITE_HEADERS.length).toBe(2);
    expect(REWRITE_HEADERS[0]).toBe("x-llm-d-model-name-rewrite");
    expect(REWRITE_HEADERS[1]).toBe("x-gateway-model-name-rewrite");
  });

  it("prefers the x-llm-d value, falls back to the x-gateway one", () => {
    expect(preferred("a", "b")).toBe("a");
    expect(preferred(null, "b")).toBe("b");
    expect(preferred("", "b")).toBe("b");
    expect(preferred("a", null)).toBe("a");
    expect(preferred(null, null)).toBe("");
    expect(preferred("", "")).toBe("");
  });
});

describe("flowId", () => {
  it("hashes the fairness id; absent or empty is default-flow", () => {
    const bytes = String.UTF8.encode("tenant-a");
    expect(flowId("tenant-a")).toBe(xxh64(changetype<usize>(bytes), bytes.byteLength));
    expect(flowId("")).toBe(flowId(DEFAULT_FLOW));
    expect(flowId("tenant-a")).not.toBe(flowId("tenant-b"));
    expect(flowId("tenant-a")).not.toBe(flowId(""));
  });

  it("hashes values longer than 256 bytes whole", () => {
    const base = "x".repeat(300);
    expect(flowId(base + "a")).not.toBe(flowId(base + "b"));
  });
});

describe("handled line with an objective", () => {
  it("ends with objective=<name> only when one was applied", () => {
    const e = new Endpoint();
    e.pod = "qwen-0";
    e.address = "10.0.0.1:8000";
    const p = new Pool();
    const r = new Resolution();
    const before = handledLine("m", "m", e, p, new Pick(), 0, CRITICAL, 3, false, true);
    expect(objectiveSuffix(r)).toBe("");
    r.objective = "premium";
    expect(before + objectiveSuffix(r)).toBe("Request Handled model=m target=m pod=qwen-0 endpoint=10.0.0.1:8000 strategy=DEFAULT prefix_blocks=0/0 criticality=Critical candidates=0 outstanding=0 state_version=3 objective=premium");
    r.objective = "a b";
    expect(objectiveSuffix(r)).toBe(" objective=\"a b\"");
  });
});

// A held request of `flow` (ids are unique; the flow is a small number standing for a hash).
function held(id: u32, band: i32, flow: u64, at: f64 = 0, ttl: f64 = 1000): Held<u32> {
  return new Held<u32>(id, band, at, at + ttl, 10, id, flow);
}

function drain(q: WorkerQueue<u32>): Array<u32> {
  const out = new Array<u32>();
  for (let h = q.peek(); h !== null; h = q.peek()) {
    const p = q.pop() as Held<u32>;
    expect(p.id).toBe(h.id);
    out.push(p.id);
  }
  return out;
}

describe("WorkerQueue fairness", () => {
  it("releases round-robin over the flows of a band, first in first out within each flow", () => {
    const q = new WorkerQueue<u32>();
    q.push(held(1, 1, 100));
    q.push(held(2, 1, 100));
    q.push(held(3, 1, 100));
    q.push(held(4, 1, 200));
    q.push(held(5, 1, 200));
    q.push(held(6, 1, 300));
    expect(q.flows(1)).toBe(3);
    expect(drain(q)).toStrictEqual([1, 4, 6, 2, 5, 3]);
    expect(q.flows(1)).toBe(0);
    expect(q.total).toBe(0);
    expect(q.bytes(1)).toBe(0);
  });

  it("serves a flow that has waited before one served since; a flow that joins counts as served when it joins", () => {
    const q = new WorkerQueue<u32>();
    q.push(held(1, 1, 100));
    q.push(held(2, 1, 100));
    q.push(held(3, 1, 100));
    q.push(held(4, 1, 200));
    expect(q.pop()!.id).toBe(1); // A's head is the oldest
    expect(q.pop()!.id).toBe(4); // B waited since it joined; B leaves the queue
    q.push(held(5, 1, 300)); // C joins after A was served
    q.push(held(6, 1, 200)); // B comes back: a new flow again
    // A (served at release 1) goes before C and B (joined after release 2).
    expect(drain(q)).toStrictEqual([2, 5, 6, 3]);
  });

  // Each release sees two new flows: the heavy flow still comes round once per turn over the
  // flows that were waiting when it was last served (releases 1, 4 and 11), where counting
  // a returning or new flow as never served would serve it once and then never again.
  it("does not let one id per request starve a heavy flow", () => {
    const q = new WorkerQueue<u32>();
    for (let i: u32 = 0; i < 4; i++) q.push(held(i, 1, 7));
    const order = new Array<u32>();
    let next: u32 = 100;
    for (let k = 0; k < 12; k++) {
      // Two requests with fresh fairness ids arrive before every release.
      q.push(held(next, 1, <u64>next));
      next++;
      q.push(held(next, 1, <u64>next));
      next++;
      order.push(q.pop()!.id);
    }
    let heavy = 0;
    for (let i = 0; i < order.length; i++) if (order[i] < 4) heavy++;
    expect(heavy).toBe(3);
    expect(order[0]).toBe(0);
    expect(order[3]).toBe(1);
    expect(order[10]).toBe(2);
  });

  it("is first come first served across flows with round-robin off (fcfs)", () => {
    const q = new WorkerQueue<u32>();
    q.roundRobin = false;
    q.push(held(1, 1, 100));
    q.push(held(2, 1, 100));
    q.push(held(3, 1, 200));
    q.push(held(4, 1, 100));
    q.push(held(5, 1, 300));
    expect(drain(q)).toStrictEqual([1, 2, 3, 4, 5]);
    expect(q.flows(1)).toBe(0);
  });

  it("keeps bands strict: a lower band's flows wait until every higher band is empty", () => {
    const q = new WorkerQueue<u32>();
    q.push(held(1, 2, 100));
    q.push(held(2, 1, 100));
    q.push(held(3, 1, 200));
    q.push(held(4, 2, 200));
    q.push(held(5, 0, 300));
    q.push(held(6, 1, 100));
    q.push(held(7, 0, 100));
    expect(drain(q)).toStrictEqual([5, 7, 2, 3, 6, 1, 4]);
  });

  it("is today's single queue for requests without a fairness id", () => {
    const q = new WorkerQueue<u32>();
    const d = flowId("");
    q.push(held(1, 1, d));
    q.push(held(2, 2, d));
    q.push(held(3, 0, d));
    q.push(held(4, 1, d));
    q.push(held(5, 1, d));
    expect(q.flows(1)).toBe(1);
    expect(drain(q)).toStrictEqual([3, 1, 4, 5, 2]);
  });

  it("forgets a flow once its requests leave by release, cancellation or expiry", () => {
    const q = new WorkerQueue<u32>();
    for (let i: u32 = 0; i < 50; i++) q.push(held(i, 1, 1000 + <u64>i, <f64>i, 100));
    expect(q.flows(1)).toBe(50);
    expect(q.remove(7)!.id).toBe(7);
    expect(q.flows(1)).toBe(49);
    const gone = q.expire(120); // arrived at 0..20
    expect(gone.length).toBe(20);
    expect(q.flows(1)).toBe(29);
    drain(q);
    expect(q.flows(1)).toBe(0);
    expect(q.total).toBe(0);
    expect(q.bytes(1)).toBe(0);
    // A flow that returns starts over, and the round-robin goes on as for new flows.
    q.push(held(60, 1, 1001));
    q.push(held(61, 1, 1002));
    q.push(held(62, 1, 1001));
    expect(drain(q)).toStrictEqual([60, 61, 62]);
  });

  it("removes a cancelled request from the middle of its flow, keeping the rest in order", () => {
    const q = new WorkerQueue<u32>();
    q.push(held(1, 1, 100));
    q.push(held(2, 1, 100));
    q.push(held(3, 1, 100));
    q.push(held(4, 1, 200));
    expect(q.remove(2)!.id).toBe(2);
    expect(q.count(1)).toBe(3);
    expect(drain(q)).toStrictEqual([1, 4, 3]);
  });
});

describe("objective and fairness configuration", () => {
  it("reads objective headers and round-robin by default", () => {
    const d = new Config();
    expect(d.objectiveHeader).toBe(true);
    expect(d.queueFairness).toBe(FAIRNESS_ROUND_ROBIN);
    const c = parseConfig("{\"objective_header\":false,\"queue\":{\"fairness\":\"fcfs\"}}").config as Config;
    expect(c.objectiveHeader).toBe(false);
    expect(c.queueFairness).toBe(FAIRNESS_FCFS);
    expect((parseConfig("{\"queue\":{\"fairness\":\"round_robin\"}}").config as Config).queueFairness).toBe(FAIRNESS_ROUND_ROBIN);
  });

  it("names the key that is wrong", () => {
    expect(parseConfig("{\"objective_header\":\"yes\"}").error).toBe("objective_header: must be true or false");
    expect(parseConfig("{\"queue\":{\"fairness\":\"fair\"}}").error).toBe("queue.fairness: must be \"round_robin\" or \"fcfs\"");
    expect(parseConfig("{\"queue\":{\"fairness\":1}}").error).toBe("queue.fairness: must be a string");
  });
});
