// Every training kernel (native/index.ts NativeOps, "Training kernels") against central
// finite differences of L = Σ dout·f(inputs) through the float64 reference forwards, on
// fresh random inputs (seed in each failure message) with odd sizes, and against the
// float64 analytic backwards of test/reference/backward.ts on larger shapes.
// Tolerance: |native − ref| <= atol + rtol·|ref| per element, stated per check; the
// native side is fp32, so the tolerances are fp32 rounding of the sums involved.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { native, type DType, type NativeOps } from "../native/index.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { describeEachKernelVariant } from "./kernel-variants.js";
import { fromNumbers, toFloat64 } from "./reference/dtype.js";
import { attentionRef, matmulRef, rmsnormRef, ropeRef, swigluRef } from "./reference/ops.js";
import {
  attentionBackwardRef, attentionLseRef, dot, embeddingRef, finiteDiff, logprobBackwardRef, logprobRef,
  matmulBackwardRef, rmsnormBackwardRef, swigluBackwardRef,
} from "./reference/backward.js";

const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);
const plus = (a: ArrayLike<number>, b: ArrayLike<number>): Float64Array => Float64Array.from(a, (v, i) => v + b[i]!);

function invFreq(HD: number, theta: number): Float32Array {
  return Float32Array.from({ length: HD / 2 }, (_, i) => 1 / theta ** ((2 * i) / HD));
}

const built = native().backends();
for (const backend of ["cpu", "cuda"] as const) {
  const skip = built.includes(backend) ? false : `backend ${backend} is not built into this addon`;
  describe(`native backward on ${backend}`, { skip }, () => {
    const ops = (): NativeOps => native().ops(backend);

    it("rmsnorm: dx and accumulated dweight match finite differences and the analytic reference", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      const shapes: [number, number, boolean][] = [[1, 1, true], [3, 7, true], [5, 13, true], [2, 33, true], [37, 771, false], [300, 64, false], [200, 771, false]];
      for (const [M, C, fd] of shapes) {
        const eps = 1e-5;
        const x = rng.f32(M * C, -3, 3), w = rng.f32(C, 0.5, 1.5), dout = rng.f32(M * C);
        const dw0 = rng.f32(C);
        const dx = new Float32Array(M * C).fill(NaN), dw = dw0.slice();
        ops().rmsnormBackward(dx, dw, dout, x, w, M, C, eps);
        const what = `rmsnorm M=${M} C=${C} seed=${seed}`;
        let ref = rmsnormBackwardRef(dout, x, w, M, C, eps);
        if (fd) {
          const X = f64(x), W = f64(w);
          const loss = () => dot(dout, rmsnormRef(X, W, M, C, eps));
          ref = { dx: finiteDiff(loss, X), dw: finiteDiff(loss, W) };
        }
        assertClose(dx, ref.dx, 1e-5, 1e-4, `${what} dx`);
        assertClose(dw, plus(dw0, ref.dw), 1e-5 * Math.sqrt(M), 1e-4, `${what} dweight`);
        // in place over dout gives the same dx
        const g = dout.slice();
        ops().rmsnormBackward(g, dw0.slice(), g, x, w, M, C, eps);
        assert.deepEqual(g, dx, `${what} in place`);
      }
    });

    it("rope: the backward is the transposed rotation (finite differences)", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [T, H, HD] of [[1, 1, 2], [5, 3, 8], [4, 2, 18], [7, 1, 6]] as [number, number, number][])
        for (const scaling of [1, 0.75]) {
          const x = rng.f32(T * H * HD, -2, 2), dout = rng.f32(T * H * HD);
          const pos = Int32Array.from({ length: T }, () => rng.int(5000));
          const inv = invFreq(HD, 10000);
          const X = f64(x);
          const ref = finiteDiff(() => dot(dout, ropeRef(X, pos, inv, T, H, HD, scaling)), X);
          const dx = dout.slice();
          ops().ropeBackward(dx, pos, inv, T, H, HD, scaling);
          assertClose(dx, ref, 2e-6, 1e-5, `rope T=${T} H=${H} HD=${HD} scaling=${scaling} seed=${seed}`);
        }
    });

    it("attention: training forward saves the logsumexp; dq, dk, dv match finite differences", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      // T, NH, NKV, HD, check by finite differences, sliding window (0 = none)
      const cases: [number, number, number, number, boolean, number][] = [
        [1, 1, 1, 4, true, 0], [5, 4, 2, 6, true, 0], [7, 6, 3, 8, true, 0], [9, 3, 1, 5, true, 0], [4, 2, 2, 3, true, 0],
        [37, 8, 2, 64, false, 0], [130, 4, 2, 16, false, 0],
        // windows shorter than the sequence, 1, and across the kernels' 64-row blocks
        [9, 3, 1, 5, true, 3], [7, 4, 2, 6, true, 1], [6, 2, 2, 4, true, 6], [130, 4, 2, 16, false, 50], [150, 2, 1, 8, false, 70],
      ];
      for (const [T, NH, NKV, HD, fd, W] of cases) {
        const what = `attention T=${T} NH=${NH} NKV=${NKV} HD=${HD} window=${W} seed=${seed}`;
        const q = rng.f32(T * NH * HD, -2, 2), k = rng.f32(T * NKV * HD, -2, 2), v = rng.f32(T * NKV * HD);
        const dout = rng.f32(T * NH * HD);
        const out = new Float32Array(T * NH * HD).fill(NaN), lse = new Float32Array(T * NH).fill(NaN);
        ops().attentionTrainForward(out, lse, q, k, v, T, NH, NKV, HD, W);
        assertClose(out, attentionRef(q, k, v, T, T, NH, NKV, HD, W), 2e-6, 1e-5, `${what} out`);
        assertClose(lse, attentionLseRef(q, k, T, NH, NKV, HD, W), 2e-6, 1e-6, `${what} lse`);
        const dq = new Float32Array(q.length).fill(NaN), dk = new Float32Array(k.length).fill(NaN), dv = new Float32Array(v.length).fill(NaN);
        ops().attentionBackward(dq, dk, dv, dout, q, k, v, lse, T, NH, NKV, HD, W);
        let ref = attentionBackwardRef(dout, q, k, v, T, NH, NKV, HD, W);
        if (fd) {
          const Q = f64(q), K = f64(k), Vv = f64(v);
          const loss = () => dot(dout, attentionRef(Q, K, Vv, T, T, NH, NKV, HD, W));
          ref = { dq: finiteDiff(loss, Q), dk: finiteDiff(loss, K), dv: finiteDiff(loss, Vv) };
        }
        const atol = 2e-6 * Math.sqrt(T * HD);
        assertClose(dq, ref.dq, atol, 1e-4, `${what} dq`);
        assertClose(dk, ref.dk, atol, 1e-4, `${what} dk`);
        assertClose(dv, ref.dv, atol, 1e-4, `${what} dv`);
      }
    });

    it("swiglu: dgate and dup match finite differences, saturated gates included", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [M, I, fd] of [[1, 1, true], [3, 13, true], [37, 172, false], [3, 2048, false]] as [number, number, boolean][]) {
        const gate = rng.f32(M * I, -8, 8), up = rng.f32(M * I, -2, 2), dout = rng.f32(M * I);
        if (gate.length > 4) gate.set([-100, 100, -30, 30]);
        const dgate = new Float32Array(M * I).fill(NaN), dup = new Float32Array(M * I).fill(NaN);
        ops().swigluBackward(dgate, dup, dout, gate, up, M, I);
        let ref = swigluBackwardRef(dout, gate, up);
        if (fd) {
          const G = f64(gate), U = f64(up);
          const loss = () => dot(dout, swigluRef(G, U));
          ref = { dgate: finiteDiff(loss, G), dup: finiteDiff(loss, U) };
        }
        assertClose(dgate, ref.dgate, 1e-6, 1e-5, `swiglu dgate M=${M} I=${I} seed=${seed}`);
        assertClose(dup, ref.dup, 1e-6, 1e-5, `swiglu dup M=${M} I=${I} seed=${seed}`);
      }
    });

    it("embedding: repeated tokens accumulate into the fp32 table gradient", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [V, C, T] of [[1, 1, 1], [11, 7, 9], [5, 33, 40]] as [number, number, number][]) {
        const tokens = Int32Array.from({ length: T }, () => rng.int(V));
        const table = f64(rng.f32(V * C)), dout = rng.f32(T * C), d0 = rng.f32(V * C);
        const ref = finiteDiff(() => dot(dout, embeddingRef(table, tokens, C)), table);
        const d = d0.slice();
        ops().embeddingBackward(d, dout, tokens, T, C);
        assertClose(d, plus(d0, ref), 1e-6, 1e-6, `embedding V=${V} C=${C} T=${T} seed=${seed}`);
      }
      assert.throws(() => ops().embeddingBackward(new Float32Array(6), new Float32Array(3), Int32Array.of(2), 1, 3),
        (e: Error & { code?: string }) => e.code === "invalid_argument");
    });

    it("matmul: dx, accumulated dw and dbias for f32/bf16/f16 weights", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      // N = 1 with bias is a value head (hidden → 1)
      const shapes: [number, number, number, boolean][] = [
        [1, 1, 1, true], [9, 1, 33, true], [3, 5, 7, true], [5, 13, 9, true], [17, 11, 19, true], [1, 96, 67, false], [130, 70, 300, false],
      ];
      for (const dtype of ["f32", "bf16", "f16"] as DType[])
        for (const [M, N, K, fd] of shapes) {
          const what = `matmul ${dtype} M=${M} N=${N} K=${K} seed=${seed}`;
          const x = rng.f32(M * K), w = fromNumbers(rng.f32(N * K), dtype), bias = rng.f32(N), dout = rng.f32(M * N);
          const dw0 = rng.f32(N * K), db0 = rng.f32(N);
          const dx = new Float32Array(M * K).fill(NaN), dw = dw0.slice(), db = db0.slice();
          ops().matmulBackward(dx, dw, db, dout, x, w, dtype, M, N, K);
          let ref = matmulBackwardRef(dout, x, toFloat64(w, dtype), M, N, K);
          if (fd) {
            const X = f64(x), W = toFloat64(w, dtype), B = f64(bias);
            const loss = () => dot(dout, matmulRef(X, W, B, M, N, K));
            ref = { dx: finiteDiff(loss, X), dw: finiteDiff(loss, W), dbias: finiteDiff(loss, B) };
          }
          assertClose(dx, ref.dx, 1e-6 * Math.sqrt(N) * 4, 1e-5, `${what} dx`);
          assertClose(dw, plus(dw0, ref.dw), 1e-6 * Math.sqrt(M) * 4, 1e-5, `${what} dw`);
          assertClose(db, plus(db0, ref.dbias), 1e-6 * Math.sqrt(M) * 4, 1e-5, `${what} dbias`);
          // null skips a gradient and leaves the others as they were computed
          const dw2 = dw0.slice();
          ops().matmulBackward(null, dw2, null, dout, x, w, dtype, M, N, K);
          assert.deepEqual(dw2, dw, `${what} dw alone`);
        }
    });

    it("logprob: log-probs of targets, and dlogits = dlogp·(onehot − softmax), masked rows and large logits included", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [T, V, fd] of [[1, 1, true], [5, 37, true], [3, 9, true], [9, 1001, false], [4, 32003, false]] as [number, number, boolean][]) {
        const what = `logprob T=${T} V=${V} seed=${seed}`;
        const logits = rng.f32(T * V, -6, 6);
        if (T > 1) for (let i = V; i < 2 * V; i++) logits[i]! += 80; // row 1 would overflow a plain exp
        const targets = Int32Array.from({ length: T }, () => rng.int(V));
        if (T > 2) targets[2] = -1;
        const dlogp = rng.f32(T);
        // fp32 logsumexp is off by up to an ulp of its magnitude, and every output inherits that
        const lseUlp = 1.2e-7 * (1 + logits.reduce((m, x) => Math.max(m, Math.abs(x)), 0));
        const logp = new Float32Array(T).fill(NaN);
        ops().logprob(logp, logits, targets, T, V);
        assertClose(logp, logprobRef(logits, targets, T, V), 2 * lseUlp, 1e-6, `${what} logp`);
        const d = new Float32Array(T * V).fill(NaN);
        ops().logprobBackward(d, dlogp, logits, targets, T, V);
        let ref = logprobBackwardRef(dlogp, logits, targets, T, V);
        if (fd) {
          const L = f64(logits);
          ref = finiteDiff(() => dot(dlogp, logprobRef(L, targets, T, V)), L);
        }
        assertClose(d, ref, 1e-7 + lseUlp, 1e-5, `${what} dlogits`);
        // in place over the logits
        const inPlace = logits.slice();
        ops().logprobBackward(inPlace, dlogp, inPlace, targets, T, V);
        assert.deepEqual(inPlace, d, `${what} in place`);
      }
      assert.throws(() => ops().logprob(new Float32Array(1), new Float32Array(4), Int32Array.of(4), 1, 4),
        (e: Error & { code?: string }) => e.code === "invalid_argument");
    });
  });
}

// The same tests under every other kernel variant this CPU runs.
describeEachKernelVariant(import.meta.url, "backward tests");
