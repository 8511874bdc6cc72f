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
    t.push(2, a.dataStart, 1); // only the last byte of a 2-byte chunk was read: the ring restarts
    expect(String.UTF8.decode(t.bytes().buffer)).toBe("a");
  });
});
