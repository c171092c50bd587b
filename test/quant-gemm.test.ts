// The int8 GEMM for block-format weights at M >= 2 (native/src/cpu/quant_gemm.h): every CPU
// variant (avx2 maddubs, avx2 with AVX-VNNI where the CPU has it, avx512vnni; the others run
// their fp32 paths, held to the same bound) against the float64 product of the dequantized
// weights, within fp32 accumulation plus x's int8 rounding (Σ|w|·amax/254 per block:
// int8ActivationBound). Ragged M (2..600, every remainder of the register tiles, and M > N, where
// the ranks split the rows), ragged N (partial column tiles and panels), K a few blocks to a
// few hundred; with and without bias (alpha, beta and strides: native/bench-kernels check).
import { describe, it } from "node:test";
import { native } from "../native/index.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { describeEachKernelVariant } from "./kernel-variants.js";
import { int8ActivationBound } from "./reference/quant.js";
import { blockWeights, describeAvx2WithoutVnni, type BlockType } from "./block-weights.js";
import { matmulRef } from "./reference/ops.js";

// [M, N, K]: M below the GEMM (the streamed dot products, 2..15 rows (Q4_K 23) on avx512vnni, 2..7/11 on
// avx2), then every remainder of its register tiles (avx512vnni 4 rows, AVX-VNNI 3, avx2 2) past
// a 512-row prefill; N over partial 8/16/32-column tiles; K from one block of 32 (or 256) up
const SHAPES: Record<BlockType, [number, number, number][]> = {
  q8_0: [[2, 1, 32], [3, 13, 64], [4, 40, 96], [5, 37, 320], [7, 70, 224], [17, 33, 768], [35, 45, 384], [64, 48, 160], [65, 20, 96], [130, 71, 256], [600, 37, 128], [513, 300, 64]],
  q4_0: [[2, 1, 32], [3, 13, 64], [4, 40, 96], [5, 37, 320], [7, 70, 224], [17, 33, 768], [35, 45, 384], [64, 48, 160], [65, 20, 96], [130, 71, 256], [600, 37, 128], [513, 300, 64]],
  q4_k: [[2, 1, 256], [3, 13, 256], [5, 37, 512], [9, 70, 256], [33, 17, 768], [35, 45, 512], [65, 40, 256], [130, 33, 512], [600, 19, 256]],
};

describe("int8 GEMM for block-format weights (prefill and batched decode)", () => {
  for (const type of ["q8_0", "q4_0", "q4_k"] as const)
    it(`${type}: matmul at M = 2..600 within x's int8 rounding of the float64 product`, () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      const ops = native().ops("cpu");
      for (const [M, N, K] of SHAPES[type]) {
        const { w, wd } = blockWeights(rng, type, N, K);
        for (const withBias of [false, true]) {
          const x = rng.f32(M * K, -2, 2);
          const bias = withBias ? rng.f32(N) : null;
          const out = new Float32Array(M * N).fill(NaN);
          ops.matmul(out, x, w, type, bias, M, N, K);
          assertClose(out, matmulRef(x, wd, bias, M, N, K), 1e-6 * Math.sqrt(K) * 4, 1e-5,
            `matmul ${type} M=${M} N=${N} K=${K} bias=${withBias} seed=${seed} (${native().cpuFeatures()})`, int8ActivationBound(x, wd, M, N, K));
        }
      }
    });
});

describeEachKernelVariant(import.meta.url, "the int8 GEMM");

describeAvx2WithoutVnni(import.meta.url, "the int8 GEMM");
