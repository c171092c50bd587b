// A line chart drawn as SVG by hand (no library, no CDN): one series, its points scaled to
// the box, the newest value and the range written beside it.

const NS = "http://www.w3.org/2000/svg";
const W = 320, H = 120, PAD = 6;

export class LineChart {
  /** @type {[number, number][]} */
  points = [];

  constructor(/** @type {string} */ title) {
    this.el = document.createElement("figure");
    this.el.className = "chart";
    this.el.dataset.series = title;
    this.svg = document.createElementNS(NS, "svg");
    this.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute("aria-label", `${title} chart`);
    this.line = document.createElementNS(NS, "polyline");
    this.svg.append(this.line);
    this.caption = document.createElement("figcaption");
    this.caption.textContent = title;
    this.title = title;
    this.el.append(this.svg, this.caption);
  }

  add(/** @type {number} */ x, /** @type {number} */ y) {
    if (!Number.isFinite(y)) return;
    this.points.push([x, y]);
    this.draw();
  }

  draw() {
    const xs = this.points.map((p) => p[0]), ys = this.points.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const sx = (/** @type {number} */ x) => PAD + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * PAD);
    const sy = (/** @type {number} */ y) => H - PAD - ((y - y0) / (y1 - y0 || 1)) * (H - 2 * PAD);
    this.line.setAttribute("points", this.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "));
    this.el.dataset.count = String(this.points.length);
    const last = ys[ys.length - 1];
    this.caption.textContent = `${this.title}: ${last.toPrecision(4)} (step ${xs[xs.length - 1]}; range ${y0.toPrecision(3)}…${y1.toPrecision(3)})`;
  }
}
