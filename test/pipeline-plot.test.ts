// The training-curves SVG: parsed back as XML, each panel's polylines must map through the
// axes' ranges and the plot area onto exactly the data they were drawn from.
import { test } from "node:test";
import assert from "node:assert/strict";
import { niceTicks, plotSvg, type Panel } from "../engine/train/pipeline/plot-svg.js";

interface Node {
  tag: string;
  attrs: Record<string, string>;
  children: Node[];
  text: string;
}

const unescape = (s: string): string => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&amp;/g, "&");

/** A strict little XML reader: every tag closed in order, attributes quoted. */
function parseXml(src: string): Node {
  const root: Node = { tag: "#root", attrs: {}, children: [], text: "" };
  const stack = [root];
  const re = /<(\/?)([\w:-]+)((?:\s+[\w:-]+="[^"]*")*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  while ((m = re.exec(src)) !== null) {
    at = re.lastIndex;
    const top = stack[stack.length - 1];
    if (m[5] !== undefined) {
      top.text += unescape(m[5]);
      continue;
    }
    if (m[1]) {
      assert.equal(m[2], top.tag, `</${m[2]}> closes <${top.tag}>`);
      stack.pop();
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of m[3].matchAll(/([\w:-]+)="([^"]*)"/g)) attrs[a[1]] = unescape(a[2]);
    const node: Node = { tag: m[2], attrs, children: [], text: "" };
    top.children.push(node);
    if (!m[4]) stack.push(node);
  }
  assert.equal(at, src.length, `unparsed from ${at}: ${src.slice(at, at + 40)}`);
  assert.equal(stack.length, 1, "unclosed tags");
  return root;
}

const all = (n: Node, pred: (n: Node) => boolean): Node[] => [...(pred(n) ? [n] : []), ...n.children.flatMap((c) => all(c, pred))];
const byClass = (n: Node, cls: string): Node[] => all(n, (x) => x.attrs.class === cls);

const reward: [number, number][] = [
  [1, -0.5],
  [2, 0.25],
  [3, 1.75],
  [4, 2.5],
];
const panels: Panel[] = [
  { title: "reward <&> score", xLabel: "PPO step", series: [{ name: "reward", points: reward }] },
  {
    title: "RM accuracy",
    xLabel: "RM step",
    series: [
      { name: "train", points: [[1, 0.5], [2, 0.625], [3, 0.75], [4, NaN], [5, 0.9]] },
      { name: "held out", points: [[2, 0.55], [5, 0.85]] },
    ],
  },
  { title: "SFT loss", xLabel: "SFT step", series: [{ name: "loss", points: [] }] },
];

test("the SVG parses as XML, one panel per input with its title (escaped), axis labels and legend", () => {
  const svg = parseXml(plotSvg(panels, { title: "curves" }));
  const [root] = svg.children;
  assert.equal(root.tag, "svg");
  assert.equal(root.attrs.xmlns, "http://www.w3.org/2000/svg");
  const ps = byClass(root, "panel");
  assert.deepEqual(ps.map((p) => p.attrs["data-title"]), ["reward <&> score", "RM accuracy", "SFT loss"]);
  assert.equal(byClass(ps[0], "title")[0].text, "reward <&> score");
  assert.deepEqual(ps.map((p) => byClass(p, "label")[0]?.text), ["PPO step", "RM step", undefined]);
  assert.deepEqual(byClass(ps[1], "legend").map((l) => l.text), ["train", "held out"]);
  assert.equal(byClass(ps[0], "legend").length, 0, "one series needs no legend");
  assert.equal(byClass(ps[2], "empty")[0].text, "no data");
});

test("every polyline maps back through its axes onto the data; non-finite points are left out", () => {
  const root = parseXml(plotSvg(panels)).children[0];
  for (const [i, p] of byClass(root, "panel").slice(0, 2).entries()) {
    const area = byClass(p, "plot-area")[0].attrs;
    const [x, y, w, h] = [area.x, area.y, area.width, area.height].map(Number);
    const xa = byClass(p, "x-axis")[0].attrs;
    const ya = byClass(p, "y-axis")[0].attrs;
    const [x0, x1, y0, y1] = [xa["data-min"], xa["data-max"], ya["data-min"], ya["data-max"]].map(Number);
    const lines = byClass(p, "series");
    assert.deepEqual(lines.map((l) => l.attrs["data-series"]), panels[i].series.map((s) => s.name));
    lines.forEach((l, k) => {
      const want = panels[i].series[k].points.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
      const got = l.attrs.points.split(" ").map((q) => q.split(",").map(Number));
      assert.equal(got.length, want.length);
      got.forEach(([gx, gy], j) => {
        assert.ok(Math.abs(x0 + ((gx - x) / w) * (x1 - x0) - want[j][0]) < 0.01 * (x1 - x0), `x of point ${j}`);
        assert.ok(Math.abs(y0 + ((y + h - gy) / h) * (y1 - y0) - want[j][1]) < 0.01 * (y1 - y0), `y of point ${j}`);
      });
    });
    // the axes cover the data and label their ends
    const ys = panels[i].series.flatMap((s) => s.points.map((q) => q[1])).filter(Number.isFinite);
    assert.ok(y0 <= Math.min(...ys) && y1 >= Math.max(...ys));
    const yTicks = byClass(byClass(p, "y-axis")[0], "tick").map((t) => Number(t.text));
    assert.equal(yTicks[0], y0);
    assert.equal(yTicks[yTicks.length - 1], y1);
  }
});

test("ticks step by 1, 2 or 5 × 10^k without float noise; a flat series still gets a range", () => {
  assert.deepEqual(niceTicks(0, 9.3).ticks, [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(0.1, 0.35).ticks, [0.1, 0.15, 0.2, 0.25, 0.3, 0.35]);
  assert.deepEqual(niceTicks(-0.5, 2.5).ticks, [-1, 0, 1, 2, 3]);
  const flat = niceTicks(3, 3);
  assert.ok(flat.min < 3 && flat.max > 3);
});
