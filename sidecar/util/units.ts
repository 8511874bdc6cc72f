// Parsing of durations ("250ms", "2s", "1m", a bare number is milliseconds) and byte sizes
// ("4MiB", "512KiB", "1000000", "2MB").

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * DURATION_MS[m[2] ?? "ms"];
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i;
const SIZE_BYTES: Record<string, number> = {
  b: 1, kb: 1000, kib: 1024, mb: 1e6, mib: 1024 * 1024, gb: 1e9, gib: 1024 * 1024 * 1024,
};

export function parseBytes(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * SIZE_BYTES[(m[2] ?? "b").toLowerCase()];
  return Number.isFinite(n) ? Math.floor(n) : undefined;
}

export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export function formatBytes(n: number): string {
  if (n % (1024 * 1024) === 0 && n >= 1024 * 1024) return `${n / (1024 * 1024)}MiB`;
  if (n % 1024 === 0 && n >= 1024) return `${n / 1024}KiB`;
  return `${n}`;
}
