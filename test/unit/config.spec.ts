import { parseConfig, Config, UNKNOWN_MODEL_REJECT, isPoolName } from "../../assembly/config";

function err(text: string): string {
  return parseConfig(text).error;
}

describe("parseConfig", () => {
  it("has the documented defaults", () => {
    const c = parseConfig("").config as Config;
    expect(c.pool).toBe("");
    expect(c.acceptPush).toBe(false);
    expect(c.maxBodyBytes).toBe(8388608);
    expect(c.unknownModel).toBe(0);
    expect(c.queueThreshold).toBe(5);
    expect(c.kvThreshold).toBe(0.8);
    expect(c.prefixBlockSize).toBe(64);
    expect(c.prefixMaxBlocks).toBe(256);
    expect(c.weights.queue).toBe(2);
    expect(c.weights.kvCache).toBe(2);
    expect(c.weights.prefix).toBe(3);
    expect(c.endpointHeader).toBe("x-gateway-destination-endpoint");
    expect(c.weights.ttft).toBe(2);
    expect(c.ttftTolerance).toBe(0);
    expect(c.ttftClosedLoopTolerance).toBe(3);
    expect(c.prefillTokensPerSec).toBe(5000);
    expect(c.bytesPerToken).toBe(4);
    expect(c.balanceLoadFactor).toBe(0);
  });

  it("reads the ttft and balance sections", () => {
    const c = parseConfig("{\"weights\":{\"ttft\":2},\"ttft\":{\"prefill_tokens_per_s\":20000,\"tolerance\":0.3,\"slack_ms\":5,\"floor_ms\":50,\"queued_request_ms\":400,\"backlog_mode\":0,\"lora_blocked_ms\":1000},\"balance\":{\"load_factor\":1.25,\"load_slack\":2}}").config as Config;
    expect(c.weights.ttft).toBe(2);
    expect(c.prefillTokensPerSec).toBe(20000);
    expect(c.ttftTolerance).toBe(0.3);
    expect(c.ttftSlackMs).toBe(5);
    expect(c.ttftFloorMs).toBe(50);
    expect(c.ttftQueuedRequestMs).toBe(400);
    expect(c.ttftBacklogMode).toBe(0);
    expect(c.ttftLoraBlockedMs).toBe(1000);
    expect(c.balanceLoadFactor).toBe(1.25);
    expect(c.balanceLoadSlack).toBe(2);
    expect(err("{\"balance\":{\"load_factor\":0.5}}")).toBe("balance.load_factor: must be 0 (off) or at least 1");
    expect(err("{\"ttft\":{\"prefill_tokens_per_s\":0}}")).toBe("ttft.prefill_tokens_per_s: must be between 1 and 1000000000");
  });

  it("reads every section and ignores unknown keys", () => {
    const c = parseConfig("{\"pool\":\"default/vllm-qwen-pool\",\"unknown_model\":\"reject\",\"stale_after_ms\":2000,\"saturation\":{\"queue_threshold\":8,\"kv_threshold\":0.9},\"prefix\":{\"block_size\":32,\"index_sets\":100},\"weights\":{\"prefix\":5},\"future\":true}").config as Config;
    expect(c.pool).toBe("default/vllm-qwen-pool");
    expect(c.unknownModel).toBe(UNKNOWN_MODEL_REJECT);
    expect(c.staleAfterMs).toBe(2000);
    expect(c.queueThreshold).toBe(8);
    expect(c.kvThreshold).toBe(0.9);
    expect(c.prefixBlockSize).toBe(32);
    expect(c.prefixIndexSets).toBe(100);
    expect(c.weights.prefix).toBe(5);
    expect(c.weights.queue).toBe(2);
  });

  it("names the key that is wrong", () => {
    expect(err("{")).toBe("configuration is not valid JSON: unexpected end of JSON at byte 1");
    expect(err("[]")).toBe("configuration must be a JSON object");
    expect(err("{\"pool\":\"no-slash\"}")).toBe("pool: must be \"namespace/name\"");
    expect(err("{\"max_body_bytes\":\"big\"}")).toBe("max_body_bytes: must be a number");
    expect(err("{\"max_body_bytes\":2048.5}")).toBe("max_body_bytes: must be an integer");
    expect(err("{\"max_body_bytes\":10}")).toBe("max_body_bytes: must be between 1024 and 268435456");
    expect(err("{\"unknown_model\":\"drop\"}")).toBe("unknown_model: must be \"passthrough\" or \"reject\"");
    expect(err("{\"accept_push\":\"yes\"}")).toBe("accept_push: must be true or false");
    expect(err("{\"saturation\":{\"kv_threshold\":2}}")).toBe("saturation.kv_threshold: must be between 0 and 1");
    expect(err("{\"saturation\":3}")).toBe("saturation: must be an object");
    expect(err("{\"endpoint_header\":\"bad header\"}")).toBe("endpoint_header: must be a valid lowercase header name");
  });

  it("validates pool names", () => {
    expect(isPoolName("default/vllm-qwen-pool")).toBe(true);
    expect(isPoolName("a/b/c")).toBe(false);
    expect(isPoolName("/b")).toBe(false);
    expect(isPoolName("A/b")).toBe(false);
  });
});
