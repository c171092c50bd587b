// --matmul-precision through the model: the option reaches the native serving forward
// (bf16 weights' logits move by the rounding, within its bound), f32 weights ignore it,
// and an unknown value or an unsupported combination is refused by name. The kernels'
// own bounds against float64 are in native-ops.test.ts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { preset } from "../engine/presets.js";
import { native, type MatmulPrecision } from "../native/index.js";

// a prompt long enough for the packed GEMM (M > 64) and the decode GEMV after it
const PROMPT = Int32Array.from({ length: 80 }, (_, i) => 1 + ((i * 37) % 500));

async function logits(m: LoadedModel): Promise<Float32Array> {
  const all = await m.native.forward({ seqIds: Int32Array.of(1), tokens: PROMPT, counts: Int32Array.of(PROMPT.length), logits: "all" });
  m.native.freeSeq(1);
  return all;
}

async function logitsAt(dir: string, matmulPrecision: MatmulPrecision): Promise<Float32Array> {
  // an f32 KV cache, so the precisions differ only in the GEMMs ("auto" would round a bf16 model's cache too)
  const m = await loadModel(dir, { threads: 2, kvBlocks: 64, matmulPrecision, kvDtype: "f32" });
  try {
    return await logits(m);
  } finally {
    m.dispose();
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe("--matmul-precision in the serving forward", () => {
  const root = mkdtempSync(join(tmpdir(), "hc-precision-"));
  const dirs = { bf16: join(root, "bf16"), f32: join(root, "f32") };
  // the vdpbf16ps path runs where the CPU has AVX512-BF16 and the kernels are AVX-512
  const dp = native().kernelVariants().includes("avx512bf16") && native().cpuFeatures().startsWith("avx512");

  it("bf16 weights: high and medium stay near highest, and medium really rounds x where the CPU has AVX512-BF16", async () => {
    await initCheckpoint({ config: preset("tiny"), out: dirs.bf16, dtype: "bf16", seed: 5, std: 0.2 });
    const highest = await logitsAt(dirs.bf16, "highest");
    const high = await logitsAt(dirs.bf16, "high");
    const medium = await logitsAt(dirs.bf16, "medium");
    const scale = highest.reduce((s, v) => Math.max(s, Math.abs(v)), 0);
    assert.ok(maxDiff(high, highest) <= 1e-3 * scale, `high moved logits by ${maxDiff(high, highest)} (scale ${scale})`);
    assert.ok(maxDiff(medium, highest) <= 5e-2 * scale, `medium moved logits by ${maxDiff(medium, highest)} (scale ${scale})`);
    if (dp) assert.ok(maxDiff(medium, highest) > 1e-5 * scale, "medium changed nothing: the option did not reach the kernels");
    else assert.deepEqual(medium, highest, "without AVX512-BF16 every setting runs as highest");
  });

  it("auto (the default) is medium for bf16 weights on one CPU rank, highest otherwise", async () => {
    const m = await loadModel(dirs.bf16, { threads: 2, kvBlocks: 64, kvDtype: "f32" });
    try {
      assert.equal(m.matmulPrecision, "medium");
      assert.deepEqual(await logits(m), await logitsAt(dirs.bf16, "medium"));
    } finally {
      m.dispose();
    }
    const tp = await loadModel(dirs.bf16, { threads: 2, kvBlocks: 64, tensorParallel: 2 });
    assert.equal(tp.matmulPrecision, "highest", "tensor-parallel ranks run highest");
    tp.dispose();
    await initCheckpoint({ config: preset("tiny"), out: dirs.f32, dtype: "f32", seed: 5, std: 0.2 });
    const f32 = await loadModel(dirs.f32, { threads: 1, kvBlocks: 64, matmulPrecision: "auto" });
    assert.equal(f32.matmulPrecision, "highest", "f32 weights have no bf16 products");
    f32.dispose();
  });

  it("f32 weights ignore it: logits bit for bit", async () => {
    await initCheckpoint({ config: preset("tiny"), out: dirs.f32, dtype: "f32", seed: 5, std: 0.2 });
    assert.deepEqual(await logitsAt(dirs.f32, "medium"), await logitsAt(dirs.f32, "highest"));
  });

  it("an unknown value is refused by name; tensor parallelism is refused", async () => {
    await assert.rejects(loadModel(dirs.f32, { threads: 1, matmulPrecision: "fast" as MatmulPrecision }),
      (e: Error & { code?: string }) => e.code === "invalid_argument" && /matmulPrecision/.test(e.message) && /"fast"/.test(e.message));
    await assert.rejects(loadModel(dirs.f32, { threads: 2, tensorParallel: 2, matmulPrecision: "medium" }),
      (e: Error & { code?: string }) => e.code === "unsupported" && /--matmul-precision/.test(e.message));
    rmSync(root, { recursive: true, force: true });
  });
});
