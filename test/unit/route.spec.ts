import { resolveModel, chooseTarget, rewriteModel, looksLikeJson, logValue, handledLine } from "../../assembly/route";
import { Pick } from "../../assembly/schedule/pick";
import { bearerMatches } from "../../assembly/util/auth";
import { Endpoint, Model, Pool, Target, CRITICAL, STANDARD, SHEDDABLE } from "../../assembly/state/document";
import { Rng } from "../../assembly/util/rng";

function model(name: string, targets: Array<Target>): Model {
  const m = new Model();
  m.name = name;
  m.pool = "ns/p";
  m.criticality = CRITICAL;
  m.targets = targets;
  return m;
}

describe("resolveModel", () => {
  it("finds the InferenceModel and its criticality", () => {
    const p = new Pool();
    p.models.set("/model/qwen", model("/model/qwen", [new Target("/model/qwen", 100)]));
    const r = resolveModel(p, "/model/qwen", new Rng(1));
    expect(r.known).toBe(true);
    expect(r.target).toBe("/model/qwen");
    expect(r.criticality).toBe(CRITICAL);
  });

  it("resolves an unknown model to itself as Standard", () => {
    const r = resolveModel(new Pool(), "other", new Rng(1));
    expect(r.known).toBe(false);
    expect(r.target).toBe("other");
    expect(r.criticality).toBe(STANDARD);
  });
});

describe("chooseTarget", () => {
  it("splits traffic by weight", () => {
    const m = model("travel", [new Target("travel-helper-v1", 90), new Target("travel-helper-v2", 10)]);
    const rng = new Rng(7);
    let v2 = 0;
    for (let i = 0; i < 10000; i++) if (chooseTarget(m, rng) == "travel-helper-v2") v2++;
    expect(v2).toBeGreaterThan(850);
    expect(v2).toBeLessThan(1150);
  });

  it("never picks a zero weight, uses the model itself without targets", () => {
    const m = model("m", [new Target("a", 0), new Target("b", 5)]);
    const rng = new Rng(3);
    for (let i = 0; i < 100; i++) expect(chooseTarget(m, rng)).toBe("b");
    expect(chooseTarget(model("m", []), rng)).toBe("m");
    const zero = model("m", [new Target("a", 0), new Target("b", 0)]);
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) seen.add(chooseTarget(zero, rng));
    expect(seen.size).toBe(2);
  });
});

describe("rewriteModel", () => {
  it("replaces only the model token, quoting the target", () => {
    const body = String.UTF8.encode("{\"model\":\"travel\",\"x\":1}");
    const out = rewriteModel(body, 9, 17, "travel-helper-\"v2\"");
    expect(String.UTF8.decode(out)).toBe("{\"model\":\"travel-helper-\\\"v2\\\"\",\"x\":1}");
  });
});

describe("looksLikeJson", () => {
  it("trusts the content type, else sniffs for an object", () => {
    expect(looksLikeJson("application/json; charset=utf-8", String.UTF8.encode("x"))).toBe(true);
    expect(looksLikeJson("application/x-www-form-urlencoded", String.UTF8.encode("  {\"model\":1}"))).toBe(true);
    expect(looksLikeJson("multipart/form-data; boundary=x", String.UTF8.encode("--x\r\n"))).toBe(false);
    expect(looksLikeJson("", String.UTF8.encode(""))).toBe(false);
  });
});

describe("logValue", () => {
  it("keeps tokens, quotes anything that could break a log line", () => {
    expect(logValue("/model/qwen")).toBe("/model/qwen");
    expect(logValue("")).toBe("-");
    expect(logValue("a b")).toBe("\"a b\"");
    expect(logValue("x\nRequest Handled pod=evil")).toBe("\"x\\nRequest Handled pod=evil\"");
  });
});

function lineEndpoint(): Endpoint {
  const e = new Endpoint();
  e.pod = "qwen-3";
  e.address = "10.0.0.14:8000";
  return e;
}

function linePool(): Pool {
  const pool = new Pool();
  pool.strategyText = "PREFIX_CACHE";
  return pool;
}

function linePick(): Pick {
  const picked = new Pick();
  picked.prefixBlocks = 5;
  picked.candidates = 4;
  picked.outstanding = 2.6;
  return picked;
}

describe("handledLine", () => {
  it("names the model, target, pod, endpoint, strategy and prefix blocks", () => {
    expect(handledLine("/model/qwen", "lora-a", lineEndpoint(), linePool(), linePick(), 11, CRITICAL, 42, false, true)).toBe(
      "Request Handled model=/model/qwen target=lora-a pod=qwen-3 endpoint=10.0.0.14:8000 strategy=PREFIX_CACHE prefix_blocks=5/11 criticality=Critical candidates=4 outstanding=3 state_version=42");
  });

  it("marks degraded routing and unknown models; a request without a body has model=- target=-", () => {
    expect(handledLine("m x", "m x", lineEndpoint(), linePool(), linePick(), 11, SHEDDABLE, 7, true, false)).toBe(
      "Request Handled model=\"m x\" target=\"m x\" pod=qwen-3 endpoint=10.0.0.14:8000 strategy=PREFIX_CACHE prefix_blocks=5/11 criticality=Sheddable candidates=4 outstanding=3 state_version=7 degraded=true unknown_model=true");
    expect(handledLine("", "", lineEndpoint(), linePool(), new Pick(), 0, STANDARD, 7, false, true)).toBe(
      "Request Handled model=- target=- pod=qwen-3 endpoint=10.0.0.14:8000 strategy=PREFIX_CACHE prefix_blocks=0/0 criticality=Standard candidates=0 outstanding=0 state_version=7");
  });
});

describe("bearerMatches", () => {
  it("accepts only the exact token", () => {
    const t = "s3cr3t-token-0123456789";
    expect(bearerMatches("Bearer " + t, t)).toBe(true);
    expect(bearerMatches("bearer " + t, t)).toBe(true);
    expect(bearerMatches("Bearer " + t + "x", t)).toBe(false);
    expect(bearerMatches("Bearer " + t.substring(1), t)).toBe(false);
    expect(bearerMatches("Basic " + t, t)).toBe(false);
    expect(bearerMatches("", t)).toBe(false);
    expect(bearerMatches("Bearer ", "")).toBe(false);
  });
});
