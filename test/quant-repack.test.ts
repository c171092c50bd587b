// Block-format weights repacked at load (native/src/cpu/quant_repack.h: groups of 16 rows
// interleaved block by block) and the int8 GEMM over them (quant_gemm_repacked_x86.h): the layout
// loses nothing (repacked and unpacked again, byte for byte), and every product a model runs —
// M = 1..17 decode batches (one or two rows in the decode tile, from three the tiles that share
// each set of groups), past them the chunked tiles of prefill; N over several groups of 16 (and
// the column chunks the ranks take); one matmul or matmulGroup's fused region — matches the
// float64 product of the dequantized weights within fp32 accumulation plus x's int8 rounding
// (int8ActivationBound), on every CPU kernel variant
// (avx2 maddubs, avx2 with AVX-VNNI where the CPU has it, avx512vnni; the others read the
// original layout and are held to the same bound).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { quantizeCheckpoint } from "../engine/quantize-checkpoint.js";
import { native } from "../native/index.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { describeEachKernelVariant } from "./kernel-variants.js";
import { int8ActivationBound, quantize } from "./reference/quant.js";
import { blockWeights, describeAvx2WithoutVnni, type BlockType } from "./block-weights.js";
import { matmulRef } from "./reference/ops.js";
import type { GreedyRun } from "./repack-greedy.js";
import { storiesDir } from "./test-model.js";

// [M, N, K]: every row count of a decode batch (1..17: one or two rows in the decode tile, from
// three the tiles that share each set of groups and prefetch the next), then prefill's chunks of 64 rows with tile
// remainders; N from one group of 16 to groups that split unevenly over the ranks
const SHAPES: Record<BlockType, [number, number, number][]> = {
  q8_0: [[1, 16, 32], [2, 48, 64], [3, 80, 96], [4, 64, 320], [5, 16, 224], [6, 32, 64], [7, 112, 128], [8, 96, 768], [9, 48, 64], [10, 64, 96], [11, 80, 64], [12, 48, 128], [13, 96, 64], [14, 144, 96], [15, 64, 160], [16, 208, 256], [17, 48, 96], [70, 80, 128], [200, 32, 64]],
  q4_0: [[1, 16, 32], [2, 48, 64], [3, 80, 96], [4, 64, 320], [5, 16, 224], [6, 32, 64], [7, 112, 128], [8, 96, 768], [9, 48, 64], [10, 64, 96], [11, 80, 64], [12, 48, 128], [13, 96, 64], [14, 144, 96], [15, 64, 160], [16, 208, 256], [17, 48, 96], [70, 80, 128], [200, 32, 64]],
  q4_k: [[1, 16, 256], [2, 48, 256], [3, 32, 512], [4, 64, 256], [5, 16, 256], [6, 48, 256], [7, 64, 256], [8, 96, 768], [9, 32, 256], [10, 64, 256], [11, 48, 256], [12, 80, 256], [13, 32, 512], [14, 64, 256], [15, 48, 256], [16, 80, 512], [17, 96, 256], [33, 16, 256], [70, 48, 256]],
};

describe("block-format weights repacked at load", () => {
  for (const type of ["q8_0", "q4_0", "q4_k"] as const) {
    it(`${type}: repacking loses nothing (repacked, unpacked, byte for byte)`, () => {
      const rng = new Rng(freshSeed());
      for (const [N, K] of [[16, type === "q4_k" ? 256 : 32], [48, type === "q4_k" ? 768 : 96]] as const) {
        const { w } = blockWeights(rng, type, N, K);
        assert.deepEqual(native().repackRoundTrip(w, type, N, K), w, `${type} ${N}×${K}`);
      }
    });

    for (const group of [false, true])
      it(`${type}: ${group ? "matmulGroup" : "matmul"} over the repacked weights at M = 1..200 within x's int8 rounding`, () => {
        const seed = freshSeed();
        const rng = new Rng(seed);
        for (const threads of [1, 2])
          for (const [M, N, K] of SHAPES[type]) {
            // two products of one x: matmulGroup's region over both; a bias on the second
            const ps = [0, 1].map((i) => {
              const { w, wd } = blockWeights(rng, type, N + 16 * i, K);
              return { w, wd, N: N + 16 * i, bias: i ? rng.f32(N + 16 * i) : null, out: new Float32Array(M * (N + 16 * i)).fill(NaN) };
            });
            const x = rng.f32(M * K, -2, 2);
            const bytes = native().matmulRepacked(threads, x, M, K, ps.map((p) => ({ out: p.out, w: p.w, dtype: type, N: p.N, bias: p.bias })), group);
            assert.equal(bytes, ps.reduce((s, p) => s + p.N * K / 256 * (type === "q4_k" ? 148 : type === "q8_0" ? 272 : 144), 0));
            for (const p of ps)
              assertClose(p.out, matmulRef(x, p.wd, p.bias, M, p.N, K), 1e-6 * Math.sqrt(K) * 4, 1e-5,
                `repacked ${type} M=${M} N=${p.N} K=${K} threads=${threads} group=${group} seed=${seed} (${native().cpuFeatures()})`,
                int8ActivationBound(x, p.wd, M, p.N, K));
          }
      });
  }

  it("quantizes a rewritten x (the same buffer) afresh: a rank's int8 x lives one region only", () => {
    // each rank quantizes x once per region and reuses it for its further chunks (GemmArgs::x_id);
    // the engine rewrites its activations in place, so a copy kept past the region, keyed by
    // the buffer, would be stale here. N splits into several chunks on 2 ranks.
    const seed = freshSeed();
    const rng = new Rng(seed);
    const [M, N, K] = [1, 1024, 512];
    for (const type of ["q8_0", "q4_0", "q4_k"] as const) {
      const { w, wd } = blockWeights(rng, type, N, K);
      const x = new Float32Array(M * K);
      for (let round = 0; round < 3; round++)
        for (const group of [false, true]) {
          x.set(rng.f32(M * K, -2, 2));
          const out = new Float32Array(M * N).fill(NaN);
          native().matmulRepacked(2, x, M, K, [{ out, w, dtype: type, N, bias: null }], group);
          assertClose(out, matmulRef(x, wd, null, M, N, K), 1e-6 * Math.sqrt(K) * 4, 1e-5,
            `${type} round ${round} group=${group} seed=${seed}`, int8ActivationBound(x, wd, M, N, K));
        }
    }
  });

  it("refuses what is not repacked, by name", () => {
    const w = quantize(new Rng(1).f32(8 * 32), "q4_0");
    assert.throws(() => native().repackRoundTrip(w, "q4_0", 8, 32), /q4_0 weight of 8 × 32 is not repacked/);
  });
});

describeEachKernelVariant(import.meta.url, "the repacked int8 GEMM");

describeAvx2WithoutVnni(import.meta.url, "the repacked int8 GEMM");

// A model repacks its block-format linears at load (one rank on the CPU): a quantized stories260K
// (q/k/v/o: rows of 64 and 32; gate/up's 172 rows are no whole groups of 16 and keep the original
// layout, down stays f32) and a q4_k model of hidden 256 decode token for token as with
// HYBRIDCHAT_REPACK=0, their logits equal up to summation order — and not to the bit: the
// repacked GEMM sums in its own order, so identical logits would mean the forward never read the
// copies the model holds (Linear::packed on its way to the kernels).
describe("a model's linears repacked at load", { skip: process.env.HYBRIDCHAT_KERNELS ? "a child run" : false }, () => {
  let tmp: string;
  before(() => { tmp = mkdtempSync(join(tmpdir(), "hc-repack-")); });
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const child = fileURLToPath(new URL("./repack-greedy.js", import.meta.url));
  const run = (dir: string, repack: boolean, kernels?: string): GreedyRun => {
    const env = { ...process.env, HYBRIDCHAT_REPACK: repack ? "1" : "0", ...(kernels ? { HYBRIDCHAT_KERNELS: kernels } : {}) };
    const r = spawnSync(process.execPath, [child, dir, "24"], { env, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as GreedyRun;
  };
  for (const type of ["q8_0", "q4_0"] as const)
    it(`stories260K ${type}: the same greedy tokens, repacked or not`, async () => {
      const out = join(tmp, type);
      await quantizeCheckpoint({ model: storiesDir, out, type });
      const [on, off] = [run(out, true), run(out, false)];
      // q, o: 64 × 64; k, v: 32 × 64; five layers
      const perLayer = (2 * 64 * 64 + 2 * 32 * 64) / 32 * (type === "q8_0" ? 34 : 18);
      assert.equal(on.repackedBytes, 5 * perLayer);
      assert.equal(off.repackedBytes, 0);
      assert.deepEqual(on.tokens, off.tokens);
      assertClose(Float32Array.from(on.logits), Float64Array.from(off.logits), 1e-4, 1e-4, `${type} first decode step`);
      assert.ok(on.logits.some((l, i) => l !== off.logits[i]), `${type}: the repacked run's logits are the original layout's to the bit`);
      // kernels that read only the file's layout (portable, plain AVX-512) get no copies
      if (type === "q4_0") assert.equal(run(out, true, "portable").repackedBytes, 0, "repacked for the portable kernels");
    });
  it("q4_k (hidden 256): the same greedy tokens, repacked or not", async () => {
    const src = join(tmp, "wide");
    await initCheckpoint({ config: { ...preset("tiny"), hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2 }, out: src, seed: 3, std: 0.08 });
    const out = join(tmp, "wide-q4_k");
    await quantizeCheckpoint({ model: src, out, type: "q4_k" });
    const [on, off] = [run(out, true), run(out, false)];
    assert.ok(on.repackedBytes > 0 && off.repackedBytes === 0, `${on.repackedBytes} / ${off.repackedBytes}`);
    assert.deepEqual(on.tokens, off.tokens);
    assertClose(Float32Array.from(on.logits), Float64Array.from(off.logits), 1e-4, 1e-4, "q4_k first decode step");
    assert.ok(on.logits.some((l, i) => l !== off.logits[i]), "q4_k: the repacked run's logits are the original layout's to the bit");
  });
});
