import { findUsage, ResponseTail, Usage } from "../../assembly/observe/usage";

function scan(s: string): Usage {
  return findUsage(Uint8Array.wrap(String.UTF8.encode(s)));
}

// Streams `s` through a tail of `cap` bytes in chunks of `chunk` bytes, reading only what the
// tail wants of each, and scans the result.
function streamed(s: string, cap: i32, chunk: i32): Usage {
  const all = Uint8Array.wrap(String.UTF8.encode(s));
  const t = new ResponseTail(cap);
  for (let i = 0; i < all.length; i += chunk) {
    const size = i + chunk <= all.length ? chunk : all.length - i;
    const n = t.wanted(size);
    t.push(size, all.dataStart + <usize>(i + size - n), n);
  }
  expect(t.total).toBe(<i64>all.length);
  return findUsage(t.bytes());
}

const VLLM_JSON = '{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi \\"usage\\": {\\"prompt_tokens\\": 999}"},"finish_reason":"stop"}],' +
  '"usage":{"prompt_tokens":1234,"total_tokens":1300,"completion_tokens":66,"prompt_tokens_details":{"cached_tokens":1024}},"prompt_logprobs":null,"kv_transfer_params":null}';

const SSE = 'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}\n\n' +
  'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"}}],"usage":null}\n\n' +
  'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":40,"total_tokens":47,"completion_tokens":7}}\n\n' +
  "data: [DONE]\n\n";

describe("findUsage", () => {
  it("reads a non-streaming body's usage, not the look-alike inside the content", () => {
    const u = scan(VLLM_JSON);
    expect(u.found).toBe(true);
    expect(u.promptTokens).toBe(1234);
    expect(u.completionTokens).toBe(66);
    expect(u.cachedTokens).toBe(1024);
  });

  it("reads a stream's usage chunk and skips the null ones", () => {
    const u = scan(SSE);
    expect(u.found).toBe(true);
    expect(u.promptTokens).toBe(40);
    expect(u.completionTokens).toBe(7);
    expect(u.cachedTokens).toBe(-1); // vLLM leaves it out when it is 0 or not enabled
  });

  it("takes the last usage when every chunk carries one (continuous usage stats)", () => {
    const s = 'data: {"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":10,"completion_tokens":1}}\n\n' +
      'data: {"choices":[{"delta":{"content":"b"}}],"usage":{"prompt_tokens":10,"completion_tokens":2}}\n\ndata: [DONE]\n\n';
    expect(scan(s).completionTokens).toBe(2);
  });

  it("reads cached_tokens only from prompt_tokens_details", () => {
    const u = scan('{"usage":{"prompt_tokens":5,"completion_tokens_details":{"cached_tokens":3},"completion_tokens":1}}');
    expect(u.cachedTokens).toBe(-1);
    const v = scan('{"usage":{"prompt_tokens_details":{"cached_tokens":3},"prompt_tokens":5,"completion_tokens":1}}');
    expect(v.cachedTokens).toBe(3);
    expect(v.promptTokens).toBe(5);
  });

  it("tolerates whitespace and SGLang's field order", () => {
    const u = scan('{ "usage" : {\n "prompt_tokens" : 12 ,\n "total_tokens": 20, "completion_tokens": 8, "prompt_tokens_details": { "cached_tokens": 0 } } }');
    expect(u.promptTokens).toBe(12);
    expect(u.completionTokens).toBe(8);
    expect(u.cachedTokens).toBe(0);
  });

  it("finds nothing in an answer without usage, a truncated one, or garbage", () => {
    expect(scan('{"choices":[]}').found).toBe(false);
    expect(scan('{"usage":{"prompt_tokens":12,"completion_').found).toBe(false);
    expect(scan('{"usage":null}').found).toBe(false);
    expect(scan('"usage"').found).toBe(false);
    expect(scan('{"usage":{}}').found).toBe(false);
    expect(scan("\"usage\":{\"prompt_tokens\":\"12\"}").found).toBe(false);
    expect(scan("").found).toBe(false);
    expect(scan("\\\\\\\"usage\":{\"prompt_tokens\":1}").found).toBe(false);
  });

  it("takes an earlier complete usage when the last one is cut off", () => {
    const u = scan('data: {"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\ndata: {"usage":{"prompt_tokens":3,"compl');
    expect(u.found).toBe(true);
    expect(u.completionTokens).toBe(4);
  });

  it("caps absurd numbers instead of overflowing", () => {
    const u = scan('{"usage":{"prompt_tokens":99999999999999999999999999,"completion_tokens":1}}');
    expect(u.promptTokens).toBe(1_000_000_000_000);
  });

  it("ignores negative and fractional counts' signs and fractions", () => {
    const u = scan('{"usage":{"prompt_tokens":-4,"completion_tokens":7.5}}');
    expect(u.promptTokens).toBe(-1);
    expect(u.completionTokens).toBe(7);
  });
});

describe("ResponseTail", () => {
  it("keeps the last bytes across chunk boundaries", () => {
    for (let chunk = 1; chunk < 64; chunk += 7) {
      const u = streamed(SSE, 256, chunk);
      expect(u.found).toBe(true);
      expect(u.completionTokens).toBe(7);
    }
  });

  it("reads only the tail of a chunk larger than the ring", () => {
    const filler = "x".repeat(100000);
    const body = '{"choices":[{"message":{"content":"' + filler + '"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}';
    const u = streamed(body, 1024, 65536);
    expect(u.found).toBe(true);
    expect(u.completionTokens).toBe(2);
  });

  it("gives up on a usage object that starts before the ring", () => {
    const body = '{"usage":{"prompt_tokens":1,"pad":"' + "y".repeat(5000) + '","completion_tokens":2}}';
    expect(streamed(body, 1024, 100).found).toBe(false);
  });

  it("holds exactly the last capacity bytes", () => {
    const t = new ResponseTail(4);
    const a = Uint8Array.wrap(String.UTF8.encode("abcdefg"));
    t.push(3, a.dataStart, 3);
    t.push(4, a.dataStart + 3, 4);
    expect(String.UTF8.decode(t.bytes().buffer)).toBe("defg");
    // linear() rotates a wrapped ring in place and keeps it working.
    t.push(2, a.dataStart, 2);
    expect(String.UTF8.decode(t.linear().slice(0).buffer)).toBe("fgab");
    t.push(1, a.dataStart + 2, 1);
    expect(String.UTF8.decode(t.bytes().buffer)).toBe("gabc");
    t.push(2, a.dataStart, 1); // only the last byte of a 2-byte chunk was read: the ring restarts
    expect(String.UTF8.decode(t.bytes().buffer)).toBe("a");
  });
});

import { labelValue, label } from "../../assembly/observe/metrics";
import { ResponseWatch, OUTCOME_OK, OUTCOME_ERROR, OUTCOME_INCOMPLETE } from "../../assembly/observe/watch";
import { Learner, CONFIRMED, MISSED, NO_VERDICT } from "../../assembly/observe/learn";

describe("labels", () => {
  it("keep values readable and never let one end early or break a line", () => {
    expect(labelValue("/model/qwen2.5-7b")).toBe("/model/qwen2.5-7b");
    expect(labelValue("a;b\nc")).toBe("a_b_c");
    expect(labelValue("")).toBe("none");
    expect(labelValue("x".repeat(300)).length).toBe(128);
    expect(label("model_name", "m")).toBe(".model_name=m;");
  });
});

// A finished, streamed answer: sent at 0, first byte at `ttft`, usage as given.
function answered(ttft: f64, estimate: f64, prompt: i64, cached: i64, recordedBlocks: i32, ageMs: f64): ResponseWatch {
  const w = new ResponseWatch(0, 256);
  w.routedMs = 0;
  w.cachePodId = 7;
  w.estimateMs = estimate;
  w.promptBytes = prompt * 4; // 4 bytes per token
  w.recordedBlocks = recordedBlocks;
  w.recordedAgeMs = ageMs;
  w.onHeaders(200, false, ttft);
  w.firstByteMs = ttft;
  w.usage.found = true;
  w.usage.promptTokens = prompt;
  w.usage.completionTokens = 5;
  w.usage.cachedTokens = cached;
  w.ended = true;
  w.endMs = ttft + 100;
  w.status = 200;
  return w;
}

describe("ResponseWatch", () => {
  it("reads nothing of a body of known length until its last ring's worth", () => {
    const w = new ResponseWatch(0, 100);
    w.expectedBytes = 1000;
    expect(w.wanted(400)).toBe(0); // ends at 400: 600 to go
    w.seen = 400;
    expect(w.wanted(500)).toBe(0); // ends at 900: exactly the ring's 100 before the end
    w.seen = 900;
    expect(w.wanted(100)).toBe(100);
    const u = new ResponseWatch(0, 100); // no content-length: every chunk's tail
    expect(u.wanted(400)).toBe(100);
  });

  it("lends its ring back and takes one again", () => {
    const w = new ResponseWatch(0, 64);
    const t = w.ring();
    expect(w.ring()).toBe(t);
    w.release();
    expect(w.tail).toBeNull();
    const v = new ResponseWatch(0, 64);
    expect(v.ring()).toBe(t); // the spare, emptied
    expect(t.total).toBe(0);
  });

  it("times an answer and names how it ended", () => {
    const w = new ResponseWatch(100, 256);
    expect(w.outcome).toBe(OUTCOME_INCOMPLETE);
    w.routedMs = 150;
    w.onHeaders(200, false, 180);
    expect(w.ttftMs).toBe(-1);
    expect(w.wanted(1000)).toBe(256);
    expect(w.wanted(100)).toBe(100);
    w.firstByteMs = 220;
    expect(w.ttftMs).toBe(120);
    expect(w.upstreamTtftMs).toBe(70);
    w.end(400);
    expect(w.durationMs).toBe(300);
    expect(w.outcome).toBe(OUTCOME_OK);
    const e = new ResponseWatch(0, 256);
    e.onHeaders(503, true, 5);
    expect(e.outcome).toBe(OUTCOME_ERROR);
  });

  it("turns predicted blocks into the server's tokens", () => {
    const w = answered(100, 100, 1000, 500, 40, 1000); // 40 blocks x 64 bytes of 4000 bytes
    w.predictedBlocks = 40;
    expect(w.predictedCachedTokens(64)).toBe(640);
    w.predictedBlocks = 1000; // more than the prompt: capped at the prompt
    expect(w.predictedCachedTokens(64)).toBe(1000);
  });
});

describe("Learner", () => {
  it("learns a pod's speed relative to its peers, and only past the dead band", () => {
    const l = new Learner(0.5, 600000, 100, 16, 0.2);
    for (let i = 0; i < 20; i++) {
      const slow = answered(900, 100, 1000, 0, 0, -1); // (900+100)/(100+100) = 5
      l.observe(slow, 1, true, 64);
      const fast = answered(100, 100, 1000, 0, 0, -1); // 1
      l.observe(fast, 2, true, 64);
      const same = answered(110, 100, 1000, 0, 0, -1);
      l.observe(same, 3, true, 64);
    }
    // Mean speed (5 + 1 + 1.05) / 3: pod 1 is about 2.1x its peers, pods 2 and 3 about 0.43-0.45x.
    expect(l.speedOf(1)).toBeGreaterThan(2);
    expect(l.speedOf(2)).toBeLessThan(0.5);
    // Equal pods stay at 1.
    const m = new Learner(0.5, 600000, 100, 16, 0.2);
    for (let i = 0; i < 20; i++) {
      m.observe(answered(100 + <f64>(i % 3) * 10, 100, 1000, 0, 0, -1), 1, true, 64);
      m.observe(answered(105, 100, 1000, 0, 0, -1), 2, true, 64);
    }
    expect(m.speedOf(1)).toBe(1);
    expect(m.speedOf(2)).toBe(1);
  });

  it("needs 16 answers before a speed counts, and ignores answers that were not streamed", () => {
    const l = new Learner(0.5, 600000, 100, 16, 0);
    for (let i = 0; i < 15; i++) l.observe(answered(900, 100, 1000, 0, 0, -1), 1, true, 64);
    expect(l.speedOf(1)).toBe(1);
    for (let i = 0; i < 30; i++) l.observe(answered(5000, 100, 1000, 0, 0, -1), 2, false, 64);
    expect(l.pods.has(2)).toBe(false);
  });

  it("confirms or misses the index's record, and moves retention only when contradicted", () => {
    const l = new Learner(0.5, 600000, 100, 16);
    // 40 blocks of 64 bytes at 4 bytes a token: 640 tokens predicted.
    expect(l.observe(answered(100, 100, 1000, 640, 40, 30000), 7, true, 64)).toBe(CONFIRMED);
    expect(l.retentionOf(7)).toBe(600000); // a hit younger than the retention says nothing new
    expect(l.observe(answered(100, 100, 1000, 100, 40, 60000), 7, true, 64)).toBe(MISSED);
    expect(l.retentionOf(7)).toBe(300000); // lowered by (1 - alpha)
    expect(l.observe(answered(100, 100, 1000, 100, 40, 400000), 7, true, 64)).toBe(MISSED);
    expect(l.retentionOf(7)).toBe(300000); // a miss older than the retention says nothing new
    for (let i = 0; i < 10; i++) l.observe(answered(100, 100, 1000, 100, 40, 60000), 7, true, 64);
    expect(l.retentionOf(7)).toBeLessThan(60000); // settles below the ages that miss
    expect(l.retentionOf(7)).toBeGreaterThan(30000);
    l.observe(answered(100, 100, 1000, 640, 40, 200000), 7, true, 64);
    expect(l.retentionOf(7)).toBeLessThan(60000 * 1.5 + 1); // a hit older raises it by (1 + alpha) at most
    expect(l.observe(answered(100, 100, 1000, 400, 40, 30000), 7, true, 64)).toBe(NO_VERDICT); // between half and all
    expect(l.observe(answered(100, 100, 1000, 640, 0, 30000), 7, true, 64)).toBe(NO_VERDICT); // nothing recorded
  });

  it("reads a missing cached_tokens as 0 once the servers are known to report it", () => {
    const l = new Learner(0.5, 600000, 100, 16);
    expect(l.observe(answered(100, 100, 1000, -1, 40, 30000), 7, true, 64)).toBe(NO_VERDICT);
    l.observe(answered(100, 100, 1000, 640, 40, 30000), 7, true, 64);
    expect(l.observe(answered(100, 100, 1000, -1, 40, 30000), 7, true, 64)).toBe(MISSED);
  });

  it("keeps at most maxPods endpoints", () => {
    const l = new Learner(0.5, 600000, 100, 4);
    for (let id: u32 = 1; id <= 10; id++) l.observe(answered(100, 100, 1000, 0, 0, -1), id, true, 64);
    expect(l.pods.size).toBe(4);
  });
});
