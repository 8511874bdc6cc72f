import { Scanner, MAX_DEPTH } from "../../assembly/json/scanner";
import { parseJson, parseJsonString, JsonValue } from "../../assembly/json/value";
import { quote } from "../../assembly/json/writer";

function skips(text: string): bool {
  const s = Scanner.of(String.UTF8.encode(text));
  return s.skipValue() && s.atEnd();
}

function error(text: string): string {
  const s = Scanner.of(String.UTF8.encode(text));
  if (s.skipValue() && s.atEnd()) return "";
  return s.error !== null ? (s.error as string) : "trailing data";
}

describe("Scanner.skipValue", () => {
  it("accepts every kind of valid JSON", () => {
    expect(skips("{}")).toBe(true);
    expect(skips("[]")).toBe(true);
    expect(skips(" { \"a\" : [1, -2.5e+3, 0.25, true, false, null, \"x\"], \"b\": {\"c\": {}} } ")).toBe(true);
    expect(skips("\"\\u00e9\\n\\\"\\\\\\/\"")).toBe(true);
    expect(skips("[[],[[]],{}]")).toBe(true);
    expect(skips("0")).toBe(true);
    expect(skips("-0.0e-0")).toBe(true);
  });

  it("rejects malformed JSON with a reason", () => {
    expect(error("{")).toBe("unexpected end of JSON");
    expect(error("{\"a\" 1}")).toBe("expected ':'");
    expect(error("{\"a\":1,}")).toBe("expected a string key");
    expect(error("[1,]")).toBe("unexpected character");
    expect(error("[1 2]")).toBe("expected ',' or ']'");
    expect(error("\"abc")).toBe("unterminated string");
    expect(error("\"a\\x\"")).toBe("invalid escape in string");
    expect(error("\"a\\u12g4\"")).toBe("invalid \\u escape");
    expect(error("\"tab\there\"")).toBe("control character in string");
    expect(error("01")).toBe("trailing data");
    expect(error("1.")).toBe("invalid number");
    expect(error("-")).toBe("invalid number");
    expect(error("1e")).toBe("invalid number");
    expect(error("tru")).toBe("invalid literal");
    expect(error("nulL")).toBe("invalid literal");
    expect(error("")).toBe("unexpected end of JSON");
    expect(error("@")).toBe("unexpected character");
  });

  it("bounds nesting without recursion", () => {
    expect(skips("[".repeat(MAX_DEPTH) + "]".repeat(MAX_DEPTH))).toBe(true);
    expect(error("[".repeat(MAX_DEPTH + 1) + "]".repeat(MAX_DEPTH + 1))).toBe("JSON nested too deeply");
    expect(error("[".repeat(100000))).toBe("JSON nested too deeply");
    expect(error("{\"a\":".repeat(MAX_DEPTH + 1))).toBe("JSON nested too deeply");
  });

  it("records where the error is", () => {
    const s = Scanner.of(String.UTF8.encode("[1, 2, x]"));
    expect(s.skipValue()).toBe(false);
    expect(s.errorAt).toBe(7);
  });
});

describe("decodeString", () => {
  it("decodes escapes, \\u escapes and surrogate pairs to UTF-8", () => {
    const s = Scanner.of(String.UTF8.encode("\"a\\/b\\n\\u00e9\\u20ac\\ud83d\\ude00\\t\\\"\""));
    expect(s.scanString()).toBe(true);
    expect(s.strEscaped).toBe(true);
    expect(s.decodeString()).toBe("a/b\né€😀\t\"");
  });

  it("replaces a lone surrogate", () => {
    const s = Scanner.of(String.UTF8.encode("\"x\\ud800y\""));
    expect(s.scanString()).toBe(true);
    expect(s.decodeString()).toBe("x\uFFFDy");
  });

  it("keeps raw UTF-8 as is", () => {
    const s = Scanner.of(String.UTF8.encode("\"日本語\""));
    expect(s.scanString()).toBe(true);
    expect(s.strEscaped).toBe(false);
    expect(s.decodeString()).toBe("日本語");
  });
});

describe("parseJson", () => {
  it("builds a document; the last duplicate key wins", () => {
    const p = parseJsonString("{\"a\": 1, \"b\": [true, null, \"s\"], \"a\": 2.5}");
    expect(p.ok).toBe(true);
    const v = p.value as JsonValue;
    expect(v.isObject()).toBe(true);
    expect((v.get("a") as JsonValue).num).toBe(2.5);
    const b = v.get("b") as JsonValue;
    expect(b.length).toBe(3);
    expect(b.at(0).isTrue()).toBe(true);
    expect(b.at(1).isNull()).toBe(true);
    expect(b.at(2).str).toBe("s");
    expect(v.get("missing")).toBeNull();
  });

  it("reports errors and trailing data", () => {
    expect(parseJsonString("{\"a\":1} x").error).toBe("unexpected data after the JSON value");
    expect(parseJsonString("[1,").ok).toBe(false);
    expect(parseJsonString("[".repeat(65) + "]".repeat(65)).error).toBe("JSON nested too deeply");
  });

  it("parses numbers exactly enough", () => {
    const p = parseJsonString("[1763600000000, 0.41, -3, 1e3]");
    const v = p.value as JsonValue;
    expect(v.at(0).num).toBe(1763600000000);
    expect(v.at(1).num).toBe(0.41);
    expect(v.at(2).num).toBe(-3);
    expect(v.at(3).num).toBe(1000);
  });
});

describe("quote", () => {
  it("escapes what JSON requires", () => {
    expect(quote("plain")).toBe("\"plain\"");
    expect(quote("a\"b\\c\nd\u0001")).toBe("\"a\\\"b\\\\c\\nd\\u0001\"");
    expect(quote("/model/qwen")).toBe("\"/model/qwen\"");
  });

  it("round-trips through the parser", () => {
    const text = "tab\t quote\" slash\\ nl\n é 😀";
    const p = parseJsonString(quote(text));
    expect((p.value as JsonValue).str).toBe(text);
  });
});

describe("UTF-8", () => {
  it("rejects invalid UTF-8 in decoded strings instead of mangling them", () => {
    const bad: Array<Array<u8>> = [[0xee], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80]];
    for (let i = 0; i < bad.length; i++) {
      const bytes = bad[i];
      const buf = new ArrayBuffer(bytes.length + 4);
      const p = changetype<usize>(buf);
      store<u8>(p, 0x22);
      store<u8>(p + 1, 0x78);
      for (let k = 0; k < bytes.length; k++) store<u8>(p + 2 + <usize>k, bytes[k]);
      store<u8>(p + 2 + <usize>bytes.length, 0x79);
      store<u8>(p + 3 + <usize>bytes.length, 0x22);
      const s = Scanner.of(buf);
      expect(s.scanString()).toBe(true);
      s.decodeString();
      expect(s.error).toBe("invalid UTF-8 in string");
      expect(parseJson(buf).ok).toBe(false);
    }
  });

  it("accepts every well-formed sequence length", () => {
    const s = Scanner.of(String.UTF8.encode("\"a\u00e9\u20ac\u{10348}\""));
    expect(s.scanString()).toBe(true);
    expect(s.decodeString()).toBe("a\u00e9\u20ac\u{10348}");
    expect(s.error).toBeNull();
  });
});
