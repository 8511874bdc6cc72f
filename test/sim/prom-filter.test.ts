// name[] as prometheus_client's exposition app answers it, in the simulator and the fake model
// servers: sample names, not family names; whole families dropped; the query read as parse_qs
// reads it; the modes of servers that ignore it or answer an empty page.

import { test } from "node:test";
import assert from "node:assert/strict";
import { answerFor, nameParams, restrict } from "../fakes/prom-filter.ts";
import { FakeModelServer } from "../fakes/model-metrics.ts";
import { startPod } from "./server.ts";

const PAGE = [
  "# HELP vllm:num_requests_waiting Number of requests waiting.",
  "# TYPE vllm:num_requests_waiting gauge",
  'vllm:num_requests_waiting{model_name="q"} 2.0',
  "# HELP vllm:prefix_cache_hits_total Prefix cache hits.",
  "# TYPE vllm:prefix_cache_hits_total counter",
  'vllm:prefix_cache_hits_total{model_name="q"} 40.0',
  "# HELP vllm:prefix_cache_hits_created Prefix cache hits.",
  "# TYPE vllm:prefix_cache_hits_created gauge",
  'vllm:prefix_cache_hits_created{model_name="q"} 1.7e9',
  "# HELP vllm:e2e_request_latency_seconds Latency.",
  "# TYPE vllm:e2e_request_latency_seconds histogram",
  'vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="q"} 3.0',
  'vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="q"} 4.0',
  'vllm:e2e_request_latency_seconds_count{model_name="q"} 4.0',
  'vllm:e2e_request_latency_seconds_sum{model_name="q"} 2.5',
  "# TYPE untitled gauge",
  "untitled 1",
  "",
].join("\n");

test("the query is read as parse_qs reads it: only name[] counts, encoded or not; blank values dropped; a comma is part of a name", () => {
  assert.deepEqual(nameParams("/metrics"), undefined);
  assert.deepEqual(nameParams("/metrics?name[]=a&name%5B%5D=b%3Ac&name=x&name[]=&name[]&other=1"), ["a", "b:c"]);
  assert.deepEqual(nameParams("/metrics?name[]=a,b"), ["a,b"]);
  assert.deepEqual(nameParams("/metrics?name[]=a+b"), ["a b"]);
  assert.deepEqual(nameParams("/metrics?name=a"), undefined);
  assert.deepEqual(nameParams("/metrics?name[]="), undefined, "a blank value is dropped: the whole page");
});

test("names are sample names: a gauge by its name, a counter by _total, a histogram by _bucket/_sum/_count; HELP and TYPE follow their samples", () => {
  assert.equal(restrict(PAGE, new Set(["vllm:num_requests_waiting"])), PAGE.split("\n").slice(0, 3).join("\n") + "\n");
  assert.equal(restrict(PAGE, new Set(["vllm:prefix_cache_hits"])), "", "the counter's family name has no sample");
  assert.equal(restrict(PAGE, new Set(["vllm:prefix_cache_hits_total"])), PAGE.split("\n").slice(3, 6).join("\n") + "\n");
  assert.equal(restrict(PAGE, new Set(["vllm:e2e_request_latency_seconds"])), "", "nor has the histogram's");
  assert.equal(restrict(PAGE, new Set(["vllm:e2e_request_latency_seconds_count"])), [PAGE.split("\n")[9], PAGE.split("\n")[10], PAGE.split("\n")[13]].join("\n") + "\n");
  assert.equal(restrict(PAGE, new Set(["untitled"])), "# TYPE untitled gauge\nuntitled 1\n", "a TYPE line after samples opens a family");
  assert.equal(restrict(PAGE, new Set(["nothing"])), "", "unknown names match nothing: an empty page");
});

test("modes: honour filters, ignore sends the whole page, multiprocess an empty one; no name[] is always the whole page", () => {
  const url = "/metrics?name%5B%5D=vllm%3Anum_requests_waiting";
  assert.match(answerFor(url, PAGE), /^# HELP vllm:num_requests_waiting/);
  assert.equal(answerFor(url, PAGE).split("\n").length, 4);
  assert.equal(answerFor(url, PAGE, "ignore"), PAGE);
  assert.equal(answerFor(url, PAGE, "multiprocess"), "");
  for (const mode of ["honour", "ignore", "multiprocess"] as const) assert.equal(answerFor("/metrics", PAGE, mode), PAGE);
});

test("the fake model server and the simulated pods answer name[] on /metrics", async () => {
  const fake = await FakeModelServer.start({ state: { waiting: 3 } });
  const pod = await startPod({ host: "127.0.0.1", port: 0, runtime: "sglang" });
  const quiet = await startPod({ host: "127.0.0.1", port: 0, runtime: "vllm", metricsNameFilter: "ignore" });
  try {
    const whole = await (await fetch(`http://${fake.host}:${fake.port}/metrics`)).text();
    const some = await (await fetch(`http://${fake.host}:${fake.port}/metrics?name%5B%5D=vllm%3Anum_requests_waiting&name%5B%5D=vllm%3Akv_cache_usage_perc`)).text();
    assert.ok(whole.length > 20_000, `the whole page: ${whole.length} bytes`);
    assert.deepEqual(some.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.slice(0, l.indexOf("{"))).sort(), ["vllm:kv_cache_usage_perc", "vllm:num_requests_waiting"]);
    assert.equal(fake.urls.at(-1), "/metrics?name%5B%5D=vllm%3Anum_requests_waiting&name%5B%5D=vllm%3Akv_cache_usage_perc");
    const sg = await (await fetch(`${pod.url}/metrics?name[]=sglang:num_queue_reqs`)).text();
    assert.deepEqual(sg.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.slice(0, l.indexOf("{"))), ["sglang:num_queue_reqs"]);
    const all = await (await fetch(`${quiet.url}/metrics?name[]=vllm:num_requests_waiting`)).text();
    assert.match(all, /vllm:e2e_request_latency_seconds_bucket/, "mode ignore: the whole page");
  } finally {
    await fake.close();
    await pod.close();
    await quiet.close();
  }
});
