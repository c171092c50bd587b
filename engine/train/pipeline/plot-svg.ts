// Line charts as a hand-written SVG: a grid of panels, each with its axes, 1-2-5 ticks and
// one polyline per series. No dependency; the numbers a panel was drawn from can be read
// back from the file (each axis carries its range, the plot area its rectangle), which is
// how the test checks it.

export interface Series {
  name: string;
  /** [x, y]; points with a non-finite coordinate are left out */
  points: readonly (readonly [number, number])[];
}

export interface Panel {
  title: string;
  xLabel: string;
  series: readonly Series[];
}

export interface PlotOptions {
  title?: string;
  columns?: number;
  /** one panel's size in pixels */
  width?: number;
  height?: number;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
// room for tick labels (left, bottom), the title (top)
const MARGIN = { left: 58, right: 14, top: 28, bottom: 40 };

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const fmt = (v: number): string => (v === 0 ? "0" : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(4))));
const px = (v: number): string => String(Math.round(v * 100) / 100);

/** Tick values covering [lo, hi] with a step of 1, 2 or 5 × 10^k, about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): { min: number; max: number; ticks: number[] } {
  if (!(hi > lo)) {
    // one value (or none): a unit range around it
    const c = Number.isFinite(lo) ? lo : 0;
    const half = c === 0 ? 1 : Math.abs(c) / 2;
    return niceTicks(c - half, c + half, count);
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const min = Math.floor(lo / step) * step;
  const max = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  // rounding each tick to the step's precision avoids 0.30000000000000004
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  for (let v = min; v <= max + step / 2; v += step) ticks.push(Number(v.toFixed(digits)));
  return { min, max, ticks };
}

function panelSvg(p: Panel, x0: number, y0: number, w: number, h: number, index: number): string {
  const pts = p.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const out: string[] = [`<g class="panel" data-title="${esc(p.title)}" transform="translate(${x0},${y0})">`];
  out.push(`<text class="title" x="${w / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(p.title)}</text>`);
  const ax = MARGIN.left;
  const ay = MARGIN.top;
  const aw = w - MARGIN.left - MARGIN.right;
  const ah = h - MARGIN.top - MARGIN.bottom;
  out.push(`<rect class="plot-area" x="${ax}" y="${ay}" width="${aw}" height="${ah}" fill="#fff" stroke="#999"/>`);
  if (pts.length === 0) {
    out.push(`<text class="empty" x="${ax + aw / 2}" y="${ay + ah / 2}" text-anchor="middle" font-size="12" fill="#777">no data</text>`, "</g>");
    return out.join("\n");
  }
  const xs = niceTicks(Math.min(...pts.map((q) => q[0])), Math.max(...pts.map((q) => q[0])));
  const ys = niceTicks(Math.min(...pts.map((q) => q[1])), Math.max(...pts.map((q) => q[1])));
  const sx = (v: number): number => ax + ((v - xs.min) / (xs.max - xs.min)) * aw;
  const sy = (v: number): number => ay + ah - ((v - ys.min) / (ys.max - ys.min)) * ah;

  out.push(`<g class="x-axis" data-min="${xs.min}" data-max="${xs.max}" font-size="10" text-anchor="middle">`);
  for (const t of xs.ticks) out.push(`<line x1="${px(sx(t))}" y1="${ay + ah}" x2="${px(sx(t))}" y2="${ay + ah + 4}" stroke="#333"/><text class="tick" x="${px(sx(t))}" y="${ay + ah + 15}">${fmt(t)}</text>`);
  out.push(`<text class="label" x="${ax + aw / 2}" y="${h - 6}" font-size="11">${esc(p.xLabel)}</text>`, "</g>");
  out.push(`<g class="y-axis" data-min="${ys.min}" data-max="${ys.max}" font-size="10" text-anchor="end">`);
  for (const t of ys.ticks)
    out.push(`<line x1="${ax}" y1="${px(sy(t))}" x2="${ax + aw}" y2="${px(sy(t))}" stroke="#eee"/><text class="tick" x="${ax - 4}" y="${px(sy(t) + 3)}">${fmt(t)}</text>`);
  out.push("</g>");

  p.series.forEach((s, k) => {
    const color = COLORS[(index + k) % COLORS.length];
    const d = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => `${px(sx(x))},${px(sy(y))}`);
    out.push(`<polyline class="series" data-series="${esc(s.name)}" fill="none" stroke="${color}" stroke-width="1.5" points="${d.join(" ")}"/>`);
    // a lone point draws no line: mark every point when there are few
    if (d.length <= 20) for (const q of d) out.push(`<circle cx="${q.split(",")[0]}" cy="${q.split(",")[1]}" r="2" fill="${color}"/>`);
    if (p.series.length > 1) out.push(`<text class="legend" x="${ax + aw - 4}" y="${ay + 12 + 12 * k}" text-anchor="end" font-size="10" fill="${color}">${esc(s.name)}</text>`);
  });
  out.push("</g>");
  return out.join("\n");
}

/** The whole figure: panels in rows of `columns`, an optional title above. */
export function plotSvg(panels: readonly Panel[], o: PlotOptions = {}): string {
  const cols = Math.max(1, Math.min(o.columns ?? 2, panels.length));
  const w = o.width ?? 380;
  const h = o.height ?? 240;
  const top = o.title ? 30 : 0;
  const rows = Math.ceil(panels.length / cols);
  const W = cols * w;
  const H = top + rows * h;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fafafa"/>`,
  ];
  if (o.title) parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15">${esc(o.title)}</text>`);
  panels.forEach((p, i) => parts.push(panelSvg(p, (i % cols) * w, top + Math.floor(i / cols) * h, w, h, i)));
  parts.push("</svg>\n");
  return parts.join("\n");
}
