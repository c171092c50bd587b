// Every op of every backend built into the addon against the float64 references in
// test/reference, on fresh random inputs (seed in each failure message), odd sizes
// included. Tolerance: |native - ref| <= atol + rtol·|ref| per element, stated per op.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { native, type DType, type NativeOps } from "../native/index.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { describeEachKernelVariant } from "./kernel-variants.js";
import { bf16ToNumber, f16ToNumber, fromNumbers, numberToBf16, numberToF16, toFloat64 } from "./reference/dtype.js";
import { BLOCK_BYTES, Q4K_BYTES, dequantize, dequantizeQ4K, int8ActivationBound, minMaxQ4Error, quantize } from "./reference/quant.js";
import { attentionRef, matmulRef, rmsnormRef, ropeRef, swigluRef } from "./reference/ops.js";

const ALL_BACKENDS = ["cpu", "cuda"] as const;
const built = native().backends();

function invFreq(HD: number, theta: number): Float32Array {
  return Float32Array.from({ length: HD / 2 }, (_, i) => 1 / theta ** ((2 * i) / HD));
}

for (const backend of ALL_BACKENDS) {
  const skip = built.includes(backend) ? false : `backend ${backend} is not built into this addon`;
  describe(`native ops on ${backend}`, { skip }, () => {
    const ops = (): NativeOps => native().ops(backend);

    it("matmul matches the reference for f32/bf16/f16 weights, with and without bias", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      // K not a multiple of 8 (nor of 16/32: the AVX-512 tails), M = 1..16 (the streaming
      // decode path, one to four register tiles of rows) and M = 37 / 70 / 130 (GEMM path: 70 × 300
      // in column chunks over the ranks, K over three KC slices)
      const shapes: [number, number, number][] = [
        [1, 1, 1], [1, 13, 7], [1, 96, 67], [3, 17, 261], [2, 40, 64], [4, 37, 100], [5, 33, 47], [8, 70, 300],
        [16, 36, 96], [37, 13, 7], [37, 96, 67], [37, 64, 261], [130, 70, 300], [70, 300, 520],
      ];
      for (const dtype of ["f32", "bf16", "f16"] as DType[])
        for (const [M, N, K] of shapes)
          for (const withBias of [false, true]) {
            const x = rng.f32(M * K);
            const w = fromNumbers(rng.f32(N * K), dtype);
            const bias = withBias ? rng.f32(N) : null;
            const out = new Float32Array(M * N).fill(NaN);
            ops().matmul(out, x, w, dtype, bias, M, N, K);
            const ref = matmulRef(x, toFloat64(w, dtype), bias, M, N, K);
            // fp32 accumulation of K products of magnitude <= 1
            assertClose(out, ref, 1e-6 * Math.sqrt(K) * 4, 1e-5, `matmul ${dtype} M=${M} N=${N} K=${K} bias=${withBias} seed=${seed}`);
          }
    });

    it("matmul precision highest/high/medium: each within its stated bound of float64 on bf16 weights, unknown refused", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      // docs/serving.md's bounds: |out − exact| <= eps · Σ_k |w_k · x_k| per element
      const EPS = { highest: 1e-5, high: 1e-4, medium: 4e-3 } as const;
      const bf16 = (v: number): number => bf16ToNumber(numberToBf16(v));
      // the vdpbf16ps path runs where the CPU has AVX512-BF16 and the kernels are AVX-512 (matmul.cc)
      const dp = backend === "cpu" && native().kernelVariants().includes("avx512bf16") && native().cpuFeatures().startsWith("avx512");
      // M = 1..64 stream (the GEMV), 65 / 130 pack (medium: the bf16 GEMM); odd K and K < 32 for the tails;
      // K = 2100 two slices of the bf16 GEMM's K (KC = 2048), the second's pairs not a multiple of 8
      const shapes: [number, number, number][] = [[1, 37, 768], [5, 70, 301], [64, 37, 33], [65, 70, 768], [130, 37, 301], [3, 5, 7], [70, 33, 2100]];
      for (const precision of ["highest", "high", "medium"] as const)
        for (const [M, N, K] of shapes) {
          const what = `matmul bf16 precision=${precision} M=${M} N=${N} K=${K} seed=${seed}`;
          const x = rng.f32(M * K, -2, 2);
          const w = fromNumbers(rng.f32(N * K), "bf16");
          const wd = toFloat64(w, "bf16");
          const out = new Float32Array(M * N).fill(NaN);
          if (backend === "cuda" && precision !== "highest") {
            assert.throws(() => ops().matmul(out, x, w, "bf16", null, M, N, K, precision), (e: Error & { code?: string }) => e.code === "unsupported", what);
            continue;
          }
          ops().matmul(out, x, w, "bf16", null, M, N, K, precision);
          const absRef = matmulRef(x.map(Math.abs), wd.map(Math.abs), null, M, N, K);
          const within = (ref: Float64Array, eps: number): number => {
            let worst = 0;
            for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(out[i]! - ref[i]!) / (absRef[i]! + 1e-30));
            assert.ok(worst <= eps, `${what}: error ${worst.toExponential(2)} · Σ|wx| above ${eps}`);
            return worst;
          };
          const err = within(matmulRef(x, wd, null, M, N, K), EPS[precision]);
          if (!dp || precision === "highest") continue;
          // what it says it computes: x as hi + lo bf16 (high) or rounded to one bf16 (medium), exact products
          const xs = x.map((v) => precision === "medium" ? bf16(v) : bf16(v) + bf16(v - bf16(v)));
          within(matmulRef(xs, wd, null, M, N, K), EPS.highest);
          if (precision === "medium" && K >= 32) assert.ok(err > EPS.highest, `${what}: no rounding of x seen (error ${err})`);
        }
      assert.throws(() => ops().matmul(new Float32Array(1), new Float32Array(1), new Uint16Array(1), "bf16", null, 1, 1, 1, "low" as "high"),
        (e: Error & { code?: string }) => e.code === "invalid_argument" && /matmulPrecision/.test(e.message) && /"low"/.test(e.message));
    });

    it("q8_0/q4_0: llama.cpp's blocks byte for byte, and matmul on them for decode and prefill", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const dtype of ["q8_0", "q4_0"] as const) {
        // quantize (CPU only: CUDA takes the blocks as matmul weights, never converts to them)
        if (backend === "cuda")
          assert.throws(() => ops().fromF32(new Uint8Array(BLOCK_BYTES[dtype]), new Float32Array(32), dtype), (e: Error & { code?: string }) => e.code === "unsupported_dtype");
        else {
        // quantize: equal to the reference bytes, zeros and a tie-heavy block included
        const values = rng.f32(32 * 40, -3, 3);
        values.fill(0, 0, 32);
        for (let j = 0; j < 32; j++) values[32 + j] = (j - 16) / 4;
        const blocks = new Uint8Array(values.length / 32 * BLOCK_BYTES[dtype]);
        ops().fromF32(blocks, values, dtype);
        assert.deepEqual(blocks, quantize(values, dtype), `fromF32 ${dtype} seed=${seed}`);
        const back = new Float32Array(values.length);
        ops().toF32(back, blocks, dtype);
        assert.deepEqual(Array.from(back), Array.from(dequantize(blocks, dtype)), `toF32 ${dtype}`);
        }
        // M = 1..16 stream a block at a time (register tiles of 1..4 rows; int8 dot products below
        // M = 16–24 on avx512vnni, 8–12 on avx2), 37 / 65 / 130 the int8 GEMM (quant_gemm.h; its own
        // test: quant-gemm.test.ts)
        for (const [M, N, K] of [[1, 1, 32], [1, 13, 64], [3, 17, 96], [5, 36, 320], [7, 9, 224], [8, 70, 256], [16, 33, 64], [37, 20, 96], [65, 11, 160], [130, 70, 320]] as [number, number, number][])
          for (const withBias of [false, true]) {
            const x = rng.f32(M * K);
            const w = quantize(rng.f32(N * K), dtype);
            const bias = withBias ? rng.f32(N) : null;
            const out = new Float32Array(M * N).fill(NaN);
            ops().matmul(out, x, w, dtype, bias, M, N, K);
            // fp32 accumulation, plus (CPU decode) x's int8 rounding: int8ActivationBound
            const wd = dequantize(w, dtype);
            assertClose(out, matmulRef(x, wd, bias, M, N, K), 1e-6 * Math.sqrt(K) * 4, 1e-5,
              `matmul ${dtype} M=${M} N=${N} K=${K} bias=${withBias} seed=${seed}`, int8ActivationBound(x, wd, M, N, K));
          }
        assert.throws(() => ops().matmul(new Float32Array(48), new Float32Array(48), new Uint8Array(3 * BLOCK_BYTES[dtype]), dtype, null, 1, 1, 48),
          (e: Error & { code?: string }) => e.code === "invalid_argument", "K not a multiple of 32");
      }
    });

    it("q4_k: llama.cpp's super-blocks, a least-squares fit better than min/max, matmul (and its dx) for decode and prefill", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      const cpu = native().ops("cpu"); // the quantizer: CUDA takes q4_k blocks as matmul weights only
      // gaussian-ish weights (sum of uniforms), a zero super-block, one all-positive sub-block
      const values = Float32Array.from({ length: 256 * 24 }, () => rng.f32(1, -1, 1)[0]! + rng.f32(1, -1, 1)[0]! + rng.f32(1, -1, 1)[0]!);
      values.fill(0, 0, 256);
      for (let l = 0; l < 32; l++) values[256 + l] = 0.5 + l / 64;
      const blocks = new Uint8Array(values.length / 256 * Q4K_BYTES);
      cpu.fromF32(blocks, values, "q4_k");
      const ref = dequantizeQ4K(blocks);
      const back = new Float32Array(values.length);
      cpu.toF32(back, blocks, "q4_k");
      // d·sc and dmin·m are exact in fp32 (11 + 6 bits), so one rounding: fround of the exact value
      assert.deepEqual(Array.from(back), Array.from(ref, Math.fround), `toF32 q4_k seed=${seed}`);
      assert.ok(ref.subarray(0, 256).every((v) => v === 0), "a zero super-block stays zero");
      // the fit: squared error below plain min/max rounding's (the search, not just the range)
      let err = 0;
      for (let i = 0; i < values.length; i++) err += (ref[i]! - values[i]!) ** 2;
      const baseline = minMaxQ4Error(values);
      assert.ok(err < 0.9 * baseline, `q4_k error ${err} vs min/max ${baseline} seed=${seed}`);
      for (const [M, N, K] of [[1, 1, 256], [1, 13, 512], [3, 17, 256], [5, 36, 768], [8, 70, 256], [16, 9, 512], [37, 20, 256], [63, 5, 256], [130, 70, 512]] as [number, number, number][])
        for (const withBias of [false, true]) {
          const x = rng.f32(M * K);
          const w = new Uint8Array(N * K / 256 * Q4K_BYTES);
          cpu.fromF32(w, rng.f32(N * K), "q4_k");
          const bias = withBias ? rng.f32(N) : null;
          const out = new Float32Array(M * N).fill(NaN);
          ops().matmul(out, x, w, "q4_k", bias, M, N, K);
          const wd = dequantizeQ4K(w);
          assertClose(out, matmulRef(x, wd, bias, M, N, K), 1e-6 * Math.sqrt(K) * 4, 1e-5,
            `matmul q4_k M=${M} N=${N} K=${K} bias=${withBias} seed=${seed}`, int8ActivationBound(x, wd, M, N, K));
          // dx = dout · w: the weight read untransposed (the frozen base's backward)
          const dout = rng.f32(M * N), dx = new Float32Array(M * K).fill(NaN);
          ops().matmulBackward(dx, null, null, dout, x, w, "q4_k", M, N, K);
          const wt = new Float64Array(K * N);
          for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wt[k * N + n] = wd[n * K + k]!;
          assertClose(dx, matmulRef(dout, wt, null, M, K, N), 1e-6 * Math.sqrt(N) * 4, 1e-5, `matmul dx q4_k M=${M} N=${N} K=${K} seed=${seed}`);
        }
      assert.throws(() => ops().matmul(new Float32Array(128), new Float32Array(128), new Uint8Array(Q4K_BYTES), "q4_k", null, 1, 1, 128),
        (e: Error & { code?: string }) => e.code === "invalid_argument" && /multiple of 256/.test(e.message), "K not a multiple of 256");
    });

    it("rmsnorm matches the reference (also in place)", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [M, C] of [[1, 1], [1, 7], [37, 64], [5, 771], [2, 8]] as [number, number][])
        for (const eps of [1e-5, 1e-6]) {
          const x = rng.f32(M * C, -3, 3);
          const w = rng.f32(C, 0.5, 1.5);
          const out = new Float32Array(M * C);
          ops().rmsnorm(out, x, w, M, C, eps);
          const ref = rmsnormRef(x, w, M, C, eps);
          assertClose(out, ref, 1e-6, 2e-6, `rmsnorm M=${M} C=${C} seed=${seed}`);
          ops().rmsnorm(x, x, w, M, C, eps);
          assertClose(x, ref, 1e-6, 2e-6, `rmsnorm in place M=${M} C=${C} seed=${seed}`);
        }
    });

    it("rope matches HF rotate_half semantics, with attention scaling", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [T, H, HD] of [[1, 1, 2], [5, 3, 8], [4, 2, 18], [3, 4, 64], [37, 2, 16]] as [number, number, number][])
        for (const scaling of [1, 0.75]) {
          const x = rng.f32(T * H * HD, -2, 2);
          const pos = Int32Array.from({ length: T }, () => rng.int(5000));
          const inv = invFreq(HD, 10000);
          const ref = ropeRef(x, pos, inv, T, H, HD, scaling);
          ops().rope(x, pos, inv, T, H, HD, scaling);
          assertClose(x, ref, 2e-6, 2e-6, `rope T=${T} H=${H} HD=${HD} scaling=${scaling} seed=${seed}`);
        }
    });

    it("ropeQk turns q and k in one pass as rope turns each", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [T, NH, NKV, HD] of [[1, 1, 1, 2], [5, 6, 2, 8], [4, 4, 4, 18], [37, 8, 1, 64]] as [number, number, number, number][]) {
        const q = rng.f32(T * NH * HD, -2, 2), k = rng.f32(T * NKV * HD, -2, 2);
        const pos = Int32Array.from({ length: T }, () => rng.int(5000));
        const inv = invFreq(HD, 500000);
        const qRef = ropeRef(q, pos, inv, T, NH, HD, 0.75), kRef = ropeRef(k, pos, inv, T, NKV, HD, 0.75);
        ops().ropeQk(q, k, pos, inv, T, NH, NKV, HD, 0.75);
        const what = `ropeQk T=${T} NH=${NH} NKV=${NKV} HD=${HD} seed=${seed}`;
        assertClose(q, qRef, 2e-6, 2e-6, `${what}: q`);
        assertClose(k, kRef, 2e-6, 2e-6, `${what}: k`);
      }
    });

    it("residualRmsnorm adds the residual in place and norms the sum, as residual then rmsnorm", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [M, C] of [[1, 1], [1, 7], [37, 64], [5, 771], [3, 300]] as [number, number][]) {
        const x = rng.f32(M * C, -3, 3), add = rng.f32(M * C, -3, 3), w = rng.f32(C, 0.5, 1.5);
        const sum = Float64Array.from(x, (v, i) => v + add[i]!);
        const out = new Float32Array(M * C).fill(NaN);
        ops().residualRmsnorm(x, out, add, w, M, C, 1e-5);
        const what = `residualRmsnorm M=${M} C=${C} seed=${seed}`;
        assertClose(x, sum, 0, 1e-7, `${what}: x + add`);
        assertClose(out, rmsnormRef(sum, w, M, C, 1e-5), 1e-6, 2e-6, `${what}: the norm`);
        // on a device it is one kernel: the same bits as the two ops it fuses
        const x2 = rng.f32(M * C, -3, 3), a2 = rng.f32(M * C, -3, 3), o2 = new Float32Array(M * C), sep = new Float32Array(M * C);
        const xs = x2.slice();
        ops().residualRmsnorm(x2, o2, a2, w, M, C, 1e-5);
        for (let i = 0; i < xs.length; i++) xs[i] = Math.fround(xs[i]! + a2[i]!);
        ops().rmsnorm(sep, xs, w, M, C, 1e-5);
        assert.deepEqual(o2, sep, `${what}: not the bits of residual + rmsnorm`);
      }
      assert.throws(() => { const a = new Float32Array(4); ops().residualRmsnorm(a, a, new Float32Array(4), new Float32Array(4), 1, 4, 1e-5); }, /must not alias/);
    });

    it("attention matches causal GQA softmax attention", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      const cases: [number, number, number, number, number][] = [
        // T, S, NH, NKV, HD
        [1, 1, 1, 1, 8], [1, 37, 8, 4, 8], [5, 5, 4, 4, 16], [7, 20, 6, 3, 6], [37, 37, 8, 2, 64], [3, 300, 4, 1, 32],
        [2, 9, 3, 3, 12],
        // prompts (runs of >= 4 tokens): the AVX-512 tile kernel, full and partial tiles of 16 rows
        [40, 70, 4, 2, 64], [16, 16, 2, 1, 32], [21, 21, 3, 3, 8], [4, 130, 2, 2, 128], [17, 17, 2, 2, 96], [33, 50, 2, 1, 12],
      ];
      for (const [T, S, NH, NKV, HD] of cases) {
        const q = rng.f32(T * NH * HD, -2, 2);
        const k = rng.f32(S * NKV * HD, -2, 2);
        const v = rng.f32(S * NKV * HD);
        const out = new Float32Array(T * NH * HD).fill(NaN);
        ops().attention(out, q, k, v, T, S, NH, NKV, HD);
        const ref = attentionRef(q, k, v, T, S, NH, NKV, HD);
        assertClose(out, ref, 2e-6, 1e-5, `attention T=${T} S=${S} NH=${NH} NKV=${NKV} HD=${HD} seed=${seed}`);
      }
    });

    it("decode steps (1-3 queries) match float64: GQA groups 1-16, head dims 8-256, contexts split over ranks", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      // On AVX-512 these run the decode kernel (one item per kv head, all its query heads,
      // 16 keys a step, partial last steps); one sequence's long context with few kv heads
      // is split into parts over the ranks and combined. HD 8 and 24 have no instance: row kernels.
      const cases: [number, number, number, number, number, number][] = [
        // T, S, NH, NKV, HD, window
        [1, 1, 1, 1, 16, 0], [1, 17, 4, 4, 64, 0], [1, 200, 12, 12, 64, 0], [2, 33, 8, 2, 64, 0], [3, 45, 32, 8, 64, 0],
        [1, 700, 2, 1, 64, 0], [1, 1500, 4, 1, 128, 0], [1, 900, 16, 1, 32, 0], [1, 300, 6, 2, 96, 0], [1, 260, 2, 2, 256, 0],
        [1, 129, 4, 2, 16, 0], [2, 50, 4, 1, 8, 0], [1, 40, 3, 1, 24, 0], [1, 800, 4, 2, 64, 100], [1, 31, 8, 8, 64, 7],
      ];
      for (const [T, S, NH, NKV, HD, W] of cases) {
        const q = rng.f32(T * NH * HD, -2, 2), k = rng.f32(S * NKV * HD, -2, 2), v = rng.f32(S * NKV * HD);
        const out = new Float32Array(T * NH * HD).fill(NaN);
        ops().attention(out, q, k, v, T, S, NH, NKV, HD, W);
        assertClose(out, attentionRef(q, k, v, T, S, NH, NKV, HD, W), 2e-6, 1e-5, `decode attention T=${T} S=${S} NH=${NH} NKV=${NKV} HD=${HD} window=${W} seed=${seed}`);
      }
    });

    it("sliding-window attention sees only each query's last W keys", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      const cases: [number, number, number, number, number, number][] = [
        // T, S, NH, NKV, HD, window: shorter than S, 1, equal to S, longer than S
        [7, 20, 6, 3, 8, 5], [1, 37, 8, 4, 8, 9], [37, 37, 8, 2, 64, 16], [3, 300, 4, 1, 32, 100], [5, 5, 4, 4, 6, 1],
        [4, 9, 2, 2, 16, 9], [4, 9, 2, 2, 16, 50],
        [40, 70, 4, 2, 64, 7], [35, 35, 2, 1, 32, 20], [18, 18, 2, 2, 8, 1],
      ];
      for (const [T, S, NH, NKV, HD, W] of cases) {
        const q = rng.f32(T * NH * HD, -2, 2), k = rng.f32(S * NKV * HD, -2, 2), v = rng.f32(S * NKV * HD);
        const out = new Float32Array(T * NH * HD).fill(NaN);
        ops().attention(out, q, k, v, T, S, NH, NKV, HD, W);
        const what = `attention T=${T} S=${S} NH=${NH} NKV=${NKV} HD=${HD} window=${W} seed=${seed}`;
        assertClose(out, attentionRef(q, k, v, T, S, NH, NKV, HD, W), 2e-6, 1e-5, what);
        // the window makes a difference wherever a query has more than W keys
        if (W < S) assert.ok(out.some((x, i) => Math.abs(x - attentionRef(q, k, v, T, S, NH, NKV, HD)[i]!) > 1e-3), `${what}: no effect`);
      }
    });

    it("swiglu matches silu(gate) * up, including saturated gates", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      for (const [M, I] of [[1, 1], [1, 13], [37, 172], [3, 2048]] as [number, number][]) {
        const gate = rng.f32(M * I, -12, 12);
        if (gate.length > 4) gate.set([-100, 100, -88.5, 90]);
        const up = rng.f32(M * I, -2, 2);
        const out = new Float32Array(M * I);
        ops().swiglu(out, gate, up, M, I);
        assertClose(out, swigluRef(gate, up), 1e-7, 2e-6, `swiglu M=${M} I=${I} seed=${seed}`);
      }
    });

    it("bf16/f16 conversions round to nearest even, with specials", () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      const specials = [0, -0, 1, -1, 65504, 65519.99, 65520, 1e6, -1e6, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14,
        6.1e-5, Infinity, -Infinity, NaN, 3.4e38, 1 + 2 ** -8, 1 + 3 * 2 ** -9, 1e-40, -1e-42];
      const src = new Float32Array(4000);
      src.set(specials);
      for (let i = specials.length; i < src.length; i++) src[i] = (rng.next() - 0.5) * 2 ** rng.uniform(-30, 20);
      for (const dtype of ["bf16", "f16"] as const) {
        const enc = dtype === "bf16" ? numberToBf16 : numberToF16;
        const dec = dtype === "bf16" ? bf16ToNumber : f16ToNumber;
        const out = new Uint16Array(src.length);
        ops().fromF32(out, src, dtype);
        for (let i = 0; i < src.length; i++) {
          const want = enc(src[i]!);
          if (Number.isNaN(src[i]!)) assert.ok(Number.isNaN(dec(out[i]!)), `${dtype} NaN stays NaN`);
          else assert.equal(out[i], want, `fromF32 ${dtype} of ${src[i]}: got 0x${out[i]!.toString(16)}, want 0x${want.toString(16)} (seed ${seed})`);
        }
        // every 16-bit pattern decodes exactly
        const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
        const f = new Float32Array(65536);
        ops().toF32(f, all, dtype);
        for (let i = 0; i < 65536; i++) {
          const want = dec(i);
          if (Number.isNaN(want)) assert.ok(Number.isNaN(f[i]!), `toF32 ${dtype} 0x${i.toString(16)} is NaN`);
          else assert.ok(Object.is(f[i], Math.fround(want)), `toF32 ${dtype} 0x${i.toString(16)}: got ${f[i]}, want ${want}`);
        }
      }
    });

    it("rejects wrong array types and short arrays with a coded error", () => {
      const o = ops();
      assert.throws(() => o.rmsnorm(new Float32Array(3), new Float32Array(4), new Float32Array(2), 1, 4, 1e-5), (e: Error & { code?: string }) => e.code === "invalid_argument");
      assert.throws(
        () => o.matmul(new Float32Array(4), new Float32Array(4), new Float32Array(4) as unknown as Uint16Array, "bf16", null, 1, 2, 2),
        (e: Error & { code?: string }) => e.code === "invalid_argument",
      );
    });
  });
}

describe("native probes", () => {
  // each call builds a fresh thread pool and runs a region at once: this also checks
  // that a region started before a worker thread first runs is not lost
  it("triad and gemmPeak resolve with positive rates", { timeout: 60_000 }, async () => {
    for (let i = 0; i < 30; i++) {
      const g = await native().gemmPeak(64, 2, 1);
      assert.ok(Number.isFinite(g) && g > 0, `gemmPeak ${g}`);
    }
    const t = await native().triad(4, 2, 1);
    assert.ok(Number.isFinite(t) && t > 0, `triad ${t}`);
    await assert.rejects(native().gemmPeak(0, 1, 1), (e: Error & { code?: string }) => e.code === "invalid_argument");
  });

  it("instrPeak: positive where the CPU has the instruction, 0 where not, within what a core can issue", async () => {
    const variants = native().kernelVariants();
    for (const [what, level, flopsPerInstr] of [["fma", "avx512", 32], ["dpbf16", "avx512bf16", 64]] as const) {
      const g = await native().instrPeak(what, 1, 1);
      if (!variants.includes(level)) {
        assert.equal(g, 0, `${what} without ${level}`);
        continue;
      }
      // at most 2 zmm instructions a cycle at 6 GHz: a miscount of the flops an instruction does shows
      assert.ok(g > 0 && g <= 2 * 6 * flopsPerInstr, `instrPeak ${what} ${g} GFLOP/s`);
    }
    await assert.rejects(native().instrPeak("fmadd" as "fma", 1, 1), (e: Error & { code?: string }) => e.code === "invalid_argument" && /"fmadd"/.test(e.message));
  });
});

// The same tests under every other kernel variant this CPU runs (portable, AVX2, AVX-512, AVX-512 BF16).
describeEachKernelVariant(import.meta.url, "op tests");
