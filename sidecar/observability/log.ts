// JSON logs, one line per event, on stderr (stdout carries only --help and --version).
//
//   {"ts":"2025-11-20T10:00:00.000Z","level":"warn","event":"scrape_failed","msg":"...","pool":"default/p","pod":"p-0","code":"scrape_refused"}
//
// `event` is a stable snake_case name (see docs/sidecar.md); `code` is an error code from
// errors.ts when the event reports an error. Repeated failures of one kind are logged when they
// start and when they end, not on every attempt; counters carry the rate.

export type Level = "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
export const LEVELS = Object.keys(RANK) as Level[];

export type Fields = Record<string, unknown>;
export type Sink = (line: string) => void;

export class Logger {
  constructor(
    private readonly minLevel: Level = "info",
    private readonly sink: Sink = (line) => process.stderr.write(line),
    private readonly base: Fields = {},
  ) {}

  child(fields: Fields): Logger {
    return new Logger(this.minLevel, this.sink, { ...this.base, ...fields });
  }

  enabled(level: Level): boolean {
    return RANK[level] >= RANK[this.minLevel];
  }

  debug(event: string, msg: string, fields?: Fields): void {
    this.write("debug", event, msg, fields);
  }

  info(event: string, msg: string, fields?: Fields): void {
    this.write("info", event, msg, fields);
  }

  warn(event: string, msg: string, fields?: Fields): void {
    this.write("warn", event, msg, fields);
  }

  error(event: string, msg: string, fields?: Fields): void {
    this.write("error", event, msg, fields);
  }

  private write(level: Level, event: string, msg: string, fields?: Fields): void {
    if (!this.enabled(level)) return;
    const record: Fields = { ts: new Date().toISOString(), level, event, msg, ...this.base, ...fields };
    let line: string;
    try {
      line = JSON.stringify(record, replacer);
    } catch {
      line = JSON.stringify({ ts: record.ts, level, event, msg });
    }
    this.sink(line + "\n");
  }
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return code !== undefined ? { message: value.message, code } : value.message;
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}

// A logger that records nothing, for unit tests.
export const silentLogger = new Logger("error", () => {});
