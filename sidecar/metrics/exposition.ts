// Prometheus text exposition format (version 0.0.4), as model servers serve it on /metrics:
//
//   # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
//   # TYPE vllm:num_requests_waiting gauge
//   vllm:num_requests_waiting{engine="0",model_name="qwen"} 2.0
//   vllm:lora_requests_info{max_lora="2",running_lora_adapters="a,b",waiting_lora_adapters=""} 1.7636e+09
//   some_metric{path="C:\\dir",msg="say \"hi\"\n"} +Inf 1700000000000
//
// The sidecar needs a handful of gauges out of pages of tens of kilobytes that are mostly
// histogram buckets, a thousand pages a second. So there are two entry points:
//   - parseSampleLine / scanExposition: the whole grammar, line by line (tests, tools, fallback);
//   - MetricSelector: walks the raw bytes line by line (a native newline search per line),
//     compares the start of each line with the wanted names and decodes and parses only the
//     lines that match ("<name>" followed by "{", " " or "\t"). Everything else (HELP/TYPE
//     comments, histogram buckets, other metrics) is skipped without being decoded.
// Neither throws: malformed lines are skipped and counted, and any byte sequence is accepted as
// input (binary garbage simply contains no samples).

export type Labels = Record<string, string>;

export interface Sample {
  name: string;
  labels: Labels;
  value: number;
  timestampMs?: number;
}

const SPACE = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const EQUALS = 0x3d;
const COMMA = 0x2c;

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB || c === CR;
}

function isNameStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x3a;
}

function isNameChar(c: number): boolean {
  return isNameStart(c) || (c >= 0x30 && c <= 0x39);
}

function isLabelStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
}

function isLabelChar(c: number): boolean {
  return isLabelStart(c) || (c >= 0x30 && c <= 0x39);
}

// A sample value: a float as Go's strconv.ParseFloat reads it, including NaN and ±Inf in any
// case. Returns undefined for anything else.
export function parseValue(token: string): number | undefined {
  if (token.length === 0) return undefined;
  const c = token.charCodeAt(0);
  // Fast path: plain decimal.
  if ((c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e) {
    const n = Number(token);
    if (!Number.isNaN(n)) return n;
  }
  switch (token.toLowerCase()) {
    case "nan":
      return NaN;
    case "inf":
    case "+inf":
    case "infinity":
    case "+infinity":
      return Infinity;
    case "-inf":
    case "-infinity":
      return -Infinity;
  }
  return undefined;
}

// Parses one sample line (no trailing newline needed; surrounding blanks are fine). Returns
// undefined for comments, blank lines and anything malformed.
export function parseSampleLine(line: string, start = 0, end = line.length): Sample | undefined {
  let i = start;
  while (i < end && isBlank(line.charCodeAt(i))) i++;
  if (i >= end || !isNameStart(line.charCodeAt(i))) return undefined;
  const nameStart = i;
  while (i < end && isNameChar(line.charCodeAt(i))) i++;
  const name = line.slice(nameStart, i);
  const labels: Labels = {};
  while (i < end && isBlank(line.charCodeAt(i))) i++;
  if (i < end && line.charCodeAt(i) === LBRACE) {
    i++;
    for (;;) {
      while (i < end && isBlank(line.charCodeAt(i))) i++;
      if (i >= end) return undefined;
      if (line.charCodeAt(i) === RBRACE) {
        i++;
        break;
      }
      if (!isLabelStart(line.charCodeAt(i))) return undefined;
      const ls = i;
      while (i < end && isLabelChar(line.charCodeAt(i))) i++;
      const label = line.slice(ls, i);
      while (i < end && isBlank(line.charCodeAt(i))) i++;
      if (i >= end || line.charCodeAt(i) !== EQUALS) return undefined;
      i++;
      while (i < end && isBlank(line.charCodeAt(i))) i++;
      if (i >= end || line.charCodeAt(i) !== QUOTE) return undefined;
      i++;
      // Label value: copy runs without escapes in one slice.
      let value = "";
      let run = i;
      let closed = false;
      while (i < end) {
        const c = line.charCodeAt(i);
        if (c === QUOTE) {
          value += line.slice(run, i);
          i++;
          closed = true;
          break;
        }
        if (c === BACKSLASH) {
          if (i + 1 >= end) return undefined;
          value += line.slice(run, i);
          const e = line.charCodeAt(i + 1);
          value += e === 0x6e ? "\n" : e === BACKSLASH ? "\\" : e === QUOTE ? '"' : "\\" + line[i + 1];
          i += 2;
          run = i;
          continue;
        }
        if (c === 0x0a) return undefined;
        i++;
      }
      if (!closed) return undefined;
      labels[label] = value;
      while (i < end && isBlank(line.charCodeAt(i))) i++;
      if (i >= end) return undefined;
      const sep = line.charCodeAt(i);
      if (sep === COMMA) {
        i++;
        continue;
      }
      if (sep === RBRACE) {
        i++;
        break;
      }
      return undefined;
    }
  }
  // Value, separated by at least one blank (or directly after "}").
  while (i < end && isBlank(line.charCodeAt(i))) i++;
  const vs = i;
  while (i < end && !isBlank(line.charCodeAt(i))) i++;
  const value = parseValue(line.slice(vs, i));
  if (value === undefined) return undefined;
  while (i < end && isBlank(line.charCodeAt(i))) i++;
  let timestampMs: number | undefined;
  if (i < end) {
    const ts = i;
    while (i < end && !isBlank(line.charCodeAt(i))) i++;
    const token = line.slice(ts, i);
    if (!/^-?\d{1,19}$/.test(token)) return undefined;
    timestampMs = Number(token);
    while (i < end && isBlank(line.charCodeAt(i))) i++;
    if (i < end) return undefined;
  }
  const sample: Sample = { name, labels, value };
  if (timestampMs !== undefined) sample.timestampMs = timestampMs;
  return sample;
}

export interface ScanResult {
  samples: number;
  invalid: number;
}

// Every sample of a whole exposition, in order.
export function scanExposition(text: string, onSample: (s: Sample) => void): ScanResult {
  const result: ScanResult = { samples: 0, invalid: 0 };
  let pos = 0;
  const n = text.length;
  while (pos < n) {
    let eol = text.indexOf("\n", pos);
    if (eol < 0) eol = n;
    let i = pos;
    while (i < eol && isBlank(text.charCodeAt(i))) i++;
    if (i < eol && text.charCodeAt(i) !== 0x23 /* # */) {
      const s = parseSampleLine(text, i, eol);
      if (s) {
        result.samples++;
        onSample(s);
      } else {
        result.invalid++;
      }
    }
    pos = eol + 1;
  }
  return result;
}

export interface Selection {
  samples: Map<string, Sample[]>;
  // Lines that started with a wanted name but did not parse.
  invalid: number;
}

// Finds the samples of a fixed set of metric names in a raw exposition.
export class MetricSelector {
  // Wanted names by their first byte.
  private readonly byFirst: Array<Array<{ name: string; bytes: Buffer; last: number }> | undefined> = new Array(256).fill(undefined);

  constructor(readonly names: readonly string[]) {
    for (const name of names) {
      const bytes = Buffer.from(name, "latin1");
      if (bytes.length === 0) continue;
      const list = (this.byFirst[bytes[0]] ??= []);
      list.push({ name, bytes, last: bytes[bytes.length - 1] });
    }
  }

  select(buf: Buffer): Selection {
    const samples = new Map<string, Sample[]>();
    let invalid = 0;
    const n = buf.length;
    let pos = 0;
    while (pos < n) {
      let eol = buf.indexOf(0x0a, pos);
      if (eol < 0) eol = n;
      const candidates = this.byFirst[buf[pos]];
      if (candidates !== undefined) {
        for (const c of candidates) {
          const len = c.bytes.length;
          const after = pos + len;
          if (after >= eol) continue;
          const b = buf[after];
          if ((b !== LBRACE && b !== SPACE && b !== TAB) || buf[after - 1] !== c.last) continue;
          if (buf.compare(c.bytes, 0, len, pos, after) !== 0) continue;
          const s = parseSampleLine(buf.toString("utf8", pos, eol));
          if (s !== undefined && s.name === c.name) {
            const list = samples.get(c.name);
            if (list) list.push(s);
            else samples.set(c.name, [s]);
          } else {
            invalid++;
          }
          break;
        }
      }
      pos = eol + 1;
    }
    return { samples, invalid };
  }
}
