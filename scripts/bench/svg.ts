// Minimal SVG line charts for the benchmark report: no dependencies, readable as plain files.

export interface Series {
  label: string;
  xs: number[];
  ys: number[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  xMax?: number;
  yMax?: number;
  logX?: boolean;
}

const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = 0; v <= max + 1e-9; v += step) out.push(Math.round(v * 1e6) / 1e6);
  return out;
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1).replace(/\.0$/, '') : String(Math.round(v * 100) / 100);
}

export function lineChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 720;
  const H = o.height ?? 360;
  const m = { l: 60, r: 170, t: 36, b: 48 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const allX = series.flatMap((s) => s.xs);
  const allY = series.flatMap((s) => s.ys);
  const xMax = o.xMax ?? Math.max(1e-9, ...allX);
  const yMax = o.yMax ?? Math.max(1e-9, ...allY);
  const xMin = o.logX ? Math.max(1e-3, Math.min(...allX.filter((x) => x > 0))) : 0;
  const sx = (x: number) => {
    if (o.logX) return m.l + (pw * (Math.log10(Math.max(x, xMin)) - Math.log10(xMin))) / (Math.log10(xMax) - Math.log10(xMin) || 1);
    return m.l + (pw * Math.min(x, xMax)) / xMax;
  };
  const sy = (y: number) => m.t + ph - (ph * Math.min(y, yMax)) / yMax;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${m.l}" y="20" font-size="14" font-weight="bold">${esc(o.title)}</text>`);
  // Axes and grid.
  const yTicks = niceTicks(yMax);
  for (const t of yTicks) {
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`);
    parts.push(`<text x="${m.l - 6}" y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  const xTicks = o.logX
    ? [0.01, 0.1, 1, 10, 100, 1000].filter((t) => t >= xMin && t <= xMax)
    : niceTicks(xMax);
  for (const t of xTicks) {
    parts.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`);
    parts.push(`<text x="${sx(t)}" y="${m.t + ph + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" stroke="#333"/>`);
  parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#333"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.xs.map((x, k) => `${sx(x).toFixed(1)},${sy(s.ys[k]).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${pts}"/>`);
    const ly = m.t + 14 + i * 18;
    parts.push(`<line x1="${m.l + pw + 12}" x2="${m.l + pw + 32}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`);
    parts.push(`<text x="${m.l + pw + 38}" y="${ly}">${esc(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

// Empirical CDF of values, thinned to at most `points` points.
export function cdf(values: number[], points = 400): { xs: number[]; ys: number[] } {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  const xs: number[] = [];
  const ys: number[] = [];
  if (s.length === 0) return { xs, ys };
  const step = Math.max(1, Math.floor(s.length / points));
  for (let i = 0; i < s.length; i += step) {
    xs.push(s[i]);
    ys.push((i + 1) / s.length);
  }
  xs.push(s[s.length - 1]);
  ys.push(1);
  return { xs, ys };
}
