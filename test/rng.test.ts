import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../engine/rng.js";

test("same seed gives the same stream; different seeds differ", () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const sa = Array.from({ length: 100 }, () => a.nextU32());
  const sb = Array.from({ length: 100 }, () => b.nextU32());
  const sc = Array.from({ length: 100 }, () => c.nextU32());
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  // nearby seeds must not give shifted copies of one stream
  assert.equal(sc.filter((x) => sa.includes(x)).length, 0);
});

test("64-bit and negative seeds are distinct streams", () => {
  const first = (s: number): number => new Rng(s).nextU32();
  const seeds = [0, 1, -1, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
  const firsts = new Set(seeds.map(first));
  assert.equal(firsts.size, seeds.length);
  assert.throws(() => new Rng(1.5), RangeError);
});

test("unseeded generators differ", () => {
  assert.notEqual(new Rng().nextU32(), new Rng().nextU32());
});

test("nextFloat is uniform on [0,1): range, mean, and a chi-square over 16 bins", () => {
  const r = new Rng(7);
  const N = 160_000;
  const bins = new Array<number>(16).fill(0);
  let sum = 0;
  for (let i = 0; i < N; i++) {
    const x = r.nextFloat();
    assert.ok(x >= 0 && x < 1);
    sum += x;
    bins[Math.floor(x * 16)]++;
  }
  assert.ok(Math.abs(sum / N - 0.5) < 0.005, `mean ${sum / N}`);
  const e = N / 16;
  const chi2 = bins.reduce((s, o) => s + ((o - e) * (o - e)) / e, 0);
  // 15 degrees of freedom: P(chi2 > 37.7) ≈ 0.001; the seed is fixed so this cannot flake
  assert.ok(chi2 < 37.7, `chi2 ${chi2}`);
});

test("nextU32 bits are balanced", () => {
  const r = new Rng(123);
  const ones = new Array<number>(32).fill(0);
  const N = 20_000;
  for (let i = 0; i < N; i++) {
    const x = r.nextU32();
    assert.ok(Number.isInteger(x) && x >= 0 && x < 2 ** 32);
    for (let b = 0; b < 32; b++) if ((x >>> b) & 1) ones[b]++;
  }
  for (const o of ones) assert.ok(Math.abs(o / N - 0.5) < 0.02, `bit frequency ${o / N}`);
});
