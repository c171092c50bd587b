// The device-training tests' comparison of a tensor with its reference (the CPU's): the same
// fp32 math with sums in another order (GEMM tiles, block reductions, all-reduces), so each
// element may differ by a part of the tensor's largest magnitude plus a part of its own.
import assert from "node:assert/strict";

/** worst excess of |a − b| over atol·scale + rtol·|b| + slack, scale = max |b| (≤ 0: within); b is the reference */
export function excessOfScale(a: Float32Array, b: Float32Array, atol: number, rtol: number, slack = 0): number {
  assert.equal(a.length, b.length);
  let scale = 0;
  for (const x of b) scale = Math.max(scale, Math.abs(x));
  let w = -Infinity;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]) - atol * scale - rtol * Math.abs(b[i]) - slack);
  return w;
}

export function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}
