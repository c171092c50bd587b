// How the CPU work is split over the pool's ranks (threadpool.h, cpu/matmul_group.cc): the
// chunked regions cover every index exactly once at the asked alignment, tiny regions between
// them reach every rank, pools shut down while their workers spin, and a group of products run
// as one region gives each product bit for bit what matmul() gives it, and a model decodes to
// the same logits on 1, 2 and 3 threads.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { loadModel } from "../engine/model.js";
import { PRESETS } from "../engine/presets.js";
import { native, type DType, type QuantizeDType } from "../native/index.js";
import { freshSeed, Rng } from "./reference/check.js";
import { describeEachKernelVariant } from "./kernel-variants.js";
import { fromNumbers } from "./reference/dtype.js";
import { quantize } from "./reference/quant.js";

describe("the CPU thread pool", () => {
  it("run_chunks covers [0, n) exactly once in aligned chunks, a thousand times, with tiny regions between", () => {
    for (const threads of [2, 3])
      for (const [n, align, minChunk, rounds] of [
        [0, 1, 1, 50], [1, 1, 1, 1000], [7, 4, 4, 1000], [33, 32, 32, 1000], [1000, 1, 1, 300], [1000, 32, 64, 300], [100003, 32, 32, 20],
      ] as const) {
        const r = native().poolStress({ threads, n, align, minChunk, rounds });
        const what = `threads=${threads} n=${n} align=${align} minChunk=${minChunk}`;
        assert.equal(r.miscovered, 0, `indices not covered exactly once: ${what}`);
        assert.equal(r.misaligned, 0, `chunks not cut at multiples of align: ${what}`);
        assert.equal(r.regionMisses, 0, `ranks that missed a tiny region: ${what}`);
        if (n > 4 * Math.max(align, minChunk)) assert.ok(r.chunks > rounds, `guided chunks, not one per call: ${what}`);
      }
  });

  it("shuts down while its workers spin, every time", () => {
    assert.equal(native().poolShutdown(2, 500), 500);
    assert.equal(native().poolShutdown(3, 100), 100);
  });
});

// weights of N rows of K, as ops().matmul takes them
function weights(rng: Rng, dtype: DType | QuantizeDType, N: number, K: number): Float32Array | Uint16Array | Uint8Array {
  const v = rng.f32(N * K);
  if (dtype === "q8_0" || dtype === "q4_0") return quantize(v, dtype);
  if (dtype === "q4_k") {
    const w = new Uint8Array((N * K / 256) * 144);
    native().ops("cpu").fromF32(w, v, "q4_k");
    return w;
  }
  return fromNumbers(v, dtype);
}

describe("matmul_group", () => {
  it("gives every product bit for bit what matmul gives it, fused (decode) or not (prefill, tiny)", () => {
    const seed = freshSeed();
    const rng = new Rng(seed);
    const ops = native().ops("cpu");
    // N not multiples of the 32-column tiles (the padded offsets), q/k/v-like and gate/up-like
    // groups; M = 1..8 fuse, M = 80 packs (each product on its own), the [3, 5] group is below
    // the parallel threshold
    const groups: [number, number, number[]][] = [
      [1, 512, [300, 70, 70]], [3, 512, [64, 33, 1]], [8, 512, [512, 512]], [1, 256, [3, 5]], [80, 256, [96, 40]], [2, 768, [768, 256, 256]],
    ];
    for (const dtype of ["f32", "bf16", "f16", "q8_0", "q4_0", "q4_k"] as (DType | QuantizeDType)[])
      for (const [M, K, Ns] of groups)
        for (const threads of [2, 3]) {
          const x = rng.f32(M * K);
          const products = Ns.map((N, i) => ({
            out: new Float32Array(M * N).fill(NaN),
            w: weights(rng, dtype, N, K),
            dtype,
            N,
            bias: i === 0 ? rng.f32(N) : null,
          }));
          native().matmulGroup(threads, x, M, K, products);
          for (const [i, p] of products.entries()) {
            const want = new Float32Array(M * p.N);
            ops.matmul(want, x, p.w, dtype, p.bias, M, p.N, K);
            assert.deepEqual(p.out, want, `${dtype} M=${M} K=${K} N=${Ns} product ${i} threads=${threads} seed=${seed}`);
          }
        }
  });

  it("gives each product of mixed formats its own x, and a rewritten x (the same buffer) afresh", () => {
    // the int8 layouts of x differ by format (q4_0 interleaves its blocks, q8_0 carries its
    // offset sums), and a chunk that spans two products must use each one's; nor may anything
    // prepared from x outlive the region (the engine rewrites its activations in place)
    const seed = freshSeed();
    const rng = new Rng(seed);
    const ops = native().ops("cpu");
    const [M, K] = [1, 512];
    const x = rng.f32(M * K);
    const dtypes: QuantizeDType[] = ["q4_k", "q4_0", "q8_0", "q4_k"];
    const ws = dtypes.map((d) => weights(rng, d, 256, K));
    for (let round = 0; round < 3; round++) {
      x.set(rng.f32(M * K));
      const products = dtypes.map((dtype, i) => ({ out: new Float32Array(M * 256).fill(NaN), w: ws[i]!, dtype, N: 256, bias: null }));
      native().matmulGroup(2, x, M, K, products);
      for (const [i, p] of products.entries()) {
        const want = new Float32Array(M * p.N);
        ops.matmul(want, x, p.w, p.dtype, null, M, p.N, K);
        assert.deepEqual(p.out, want, `${p.dtype} product ${i} round ${round} seed=${seed}`);
      }
    }
  });
});

// Greedy steps of two sequences (5-token prompts, then one token each): every logits row.
async function decodeRows(dir: string, threads: number): Promise<Float32Array[]> {
  const m = await loadModel(dir, { threads, kvBlocks: 64 });
  try {
    const V = m.config.vocabSize;
    const seqIds = Int32Array.of(1, 2);
    let tokens = Int32Array.from({ length: 10 }, (_, i) => 3 + ((i * 37) % (V - 3)));
    let logits = await m.native.forward({ seqIds, tokens, counts: Int32Array.of(5, 5), logits: "last" });
    const rows = [logits];
    for (let s = 0; s < 6; s++) {
      tokens = Int32Array.from({ length: 2 }, (_, b) => {
        let best = 0;
        for (let i = 1; i < V; i++) if (logits[b * V + i]! > logits[b * V + best]!) best = i;
        return best;
      });
      logits = await m.native.forward({ seqIds, tokens, counts: Int32Array.of(1, 1), logits: "last" });
      rows.push(logits);
    }
    return rows;
  } finally {
    m.dispose();
  }
}

describe("a model's decode on several ranks", () => {
  it("gives the same logits bit for bit on 1, 2 and 3 threads (q/k/v and gate/up grouped, GEMVs chunked)", async () => {
    // large enough that the grouped products and the LM head split (kParallelMinFlops)
    const config = { ...PRESETS.tiny, hidden_size: 384, intermediate_size: 1024, num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 2 };
    const root = await mkdtemp(join(tmpdir(), "hybridchat-sched-"));
    try {
      for (const dtype of ["f32", "bf16"] as const) {
        const dir = join(root, dtype);
        await initCheckpoint({ config, out: dir, dtype, seed: 5, perturbStd: 0.1 });
        const want = await decodeRows(dir, 1);
        for (const threads of [2, 3]) {
          const got = await decodeRows(dir, threads);
          for (const [i, row] of got.entries()) assert.deepEqual(row, want[i], `${dtype} threads=${threads} step ${i}`);
        }
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describeEachKernelVariant(import.meta.url, "the CPU scheduling tests");
