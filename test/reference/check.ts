// Shared helpers of the native tests: a seeded RNG (the seed is fresh per run and
// printed on failure) and an elementwise tolerance check |a - r| <= atol + rtol·|r|.
import assert from "node:assert/strict";

export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  /** uniform in [0, 1) (mulberry32) */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  f32(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.uniform(lo, hi);
    return a;
  }
}

export function freshSeed(): number {
  return (Math.random() * 2 ** 32) >>> 0;
}

/** |actual − ref| <= atol + rtol·|ref| (+ slack[i], a per-element error bound the caller derived) for every element. */
export function assertClose(actual: ArrayLike<number>, ref: ArrayLike<number>, atol: number, rtol: number, what: string,
  slack?: ArrayLike<number>): void {
  assert.equal(actual.length, ref.length, `${what}: length`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = actual[i]!, r = ref[i]!;
    const excess = Math.abs(a - r) - (atol + rtol * Math.abs(r) + (slack ? slack[i]! : 0));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0)
    assert.fail(
      `${what}: element ${worst} is ${actual[worst]}, reference ${ref[worst]} ` +
        `(|diff| ${Math.abs(actual[worst]! - ref[worst]!)} > ${atol} + ${rtol}·|ref|${slack ? ` + ${slack[worst]}` : ""})`,
    );
}

/** Central difference of `f` in element i of `t` (restored afterwards). */
export function centralDiff(t: Float64Array, i: number, f: () => number, h = 1e-5): number {
  const x = t[i]!;
  t[i] = x + h;
  const up = f();
  t[i] = x - h;
  const down = f();
  t[i] = x;
  return (up - down) / (2 * h);
}
