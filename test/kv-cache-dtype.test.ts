// The CPU's 16-bit KV pool (serve --kv-dtype bf16|f16, and "auto" for bf16, f16 and
// block-format models): kv_write rounds K and V to the pool's type (nearest even), the
// attention kernels widen them exactly and accumulate in fp32 (test/paged-attention.test.ts
// holds each kernel to float64 on the same rounded K/V). Here the whole forward: random
// f32-weight models (the pool the only rounding) within a tolerance in units of the type's
// rounding of the f32 pool's logits, prefill and decode over block boundaries, GQA with
// biases and MHA with sliding windows, on one rank and on two tensor-parallel ranks (each its
// KV heads' slice of the pool); stories260K greedy token for token as the f32 pool but for
// near-ties; what "auto" resolves to; admission counting 2 bytes an element; bad types
// refused by name.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native, type KvDtype, type NativeModel, type TensorRef } from "../native/index.js";
import { loadModel, resolveKvDtype } from "../engine/model.js";
import { freshSeed, Rng } from "./reference/check.js";
import { buildTiny, type Tiny } from "./tiny-model.js";
import { repoRoot, storiesDir } from "./test-model.js";
import { excessRms, greedyBoth } from "./cuda-compare.js";

// Unit roundoff of each 16-bit type (bf16: 8-bit significand, f16: 11). K and V each
// rounded once moves a logit of these 2-layer models by a few U times its row's RMS (as
// the device's bf16 pool: test/cuda-kv.test.ts); a pool read at the wrong offset, width or
// type moves it by about one RMS. Allowed: 12·U·RMS.
const U: Record<"bf16" | "f16", number> = { bf16: 2 ** -9, f16: 2 ** -12 };
const ULPS = 12;
const HALF = ["bf16", "f16"] as const;

const dir = mkdtempSync(join(tmpdir(), "hc-kv-dtype-"));

type Batch = { seqIds: Int32Array; tokens: Int32Array; counts: Int32Array; logits: "all" };

// a prompt of 11 and one of 3 (11 crosses two block boundaries at block size 4), then 5 decode steps
function steps(rng: Rng, V: number): Batch[] {
  const prompts = [Array.from({ length: 11 }, () => rng.int(V)), Array.from({ length: 3 }, () => rng.int(V))];
  const out = [{ tokens: prompts.flat(), counts: [11, 3] }];
  for (let s = 0; s < 5; s++) out.push({ tokens: [rng.int(V), rng.int(V)], counts: [1, 1] });
  return out.map((x) => ({ seqIds: Int32Array.from([1, 2]), tokens: Int32Array.from(x.tokens), counts: Int32Array.from(x.counts), logits: "all" as const }));
}

describe("a 16-bit KV pool on the CPU", () => {
  const variants: [string, Tiny][] = [
    ["gqa, q/k/v biases", { C: 48, I: 80, L: 2, NH: 6, NKV: 2, HD: 16, V: 97, dtype: "f32", bias: true, qkNorm: false, tied: true, ropeScaling: 1 }],
    ["mha, head_dim 40, sliding windows 5 and 3", { C: 40, I: 64, L: 2, NH: 2, NKV: 2, HD: 40, V: 61, dtype: "f32", bias: false, qkNorm: true, tied: false, ropeScaling: 0.9, windows: [5, 3] }],
  ];
  for (const [name, t] of variants)
    for (const dt of HALF)
      it(`random ${name}: ${dt} pool's logits within ${ULPS} ${dt} roundings (× row RMS) of the f32 pool's, on 1 and 2 ranks`, async () => {
        const seed = freshSeed();
        const rng = new Rng(seed);
        const b = buildTiny(mkdtempSync(join(dir, "tiny-")), "m", t, rng);
        const opts = { threads: 2, kvBlockSize: 4, kvBlocks: 32, device: "cpu" as const };
        const f = native().createModel(b.spec, b.tensors, { ...opts, kvDtype: "f32" });
        const h = native().createModel(b.spec, b.tensors, { ...opts, kvDtype: dt });
        const tp = native().createModel(b.spec, b.tensors, { ...opts, kvDtype: dt, tensorParallel: 2 });
        try {
          assert.equal(h.device().kvDtype, dt);
          let moved = 0;
          for (const [i, batch] of steps(rng, t.V).entries()) {
            const ref = await f.forward(batch), got = await h.forward(batch), ranks = await tp.forward(batch);
            const w = excessRms(got, ref, t.V, ULPS * U[dt]);
            assert.ok(w <= 0, `step ${i}: logits differ by ${w} beyond ${ULPS}·U·RMS (seed ${seed})`);
            // two ranks, each its KV heads' slice of the same 16-bit pool, held to the same bound
            // (not to the one rank's logits at 1e-4: the ranks' K/V differ from one rank's in the
            // last fp32 bits, which now and then round to the neighbouring 16-bit value)
            const e = excessRms(ranks, ref, t.V, ULPS * U[dt]);
            assert.ok(e <= 0, `step ${i}: tensor-parallel logits differ by ${e} beyond ${ULPS}·U·RMS (seed ${seed})`);
            for (let j = 0; j < got.length; j++) moved = Math.max(moved, Math.abs(got[j]! - ref[j]!));
          }
          // the pool really holds 16 bits: its logits are not the f32 pool's
          assert.ok(moved > 1e-6, `${dt} and f32 pools gave the same logits (seed ${seed})`);
        } finally {
          f.dispose();
          h.dispose();
          tp.dispose();
        }
      });

  for (const dt of HALF)
    it(`stories260K: greedy tokens with a ${dt} pool as with the f32 pool over a batch of 3, 13 steps, but for near-ties`, async (t) => {
      const ref = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 64 });
      const m = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 64, kvDtype: dt });
      try {
        assert.equal(ref.native.device().kvDtype, "f32", "auto keeps an f32 model's exact f32 pool");
        assert.equal(m.native.device().kvDtype, dt);
        const enc = (s: string) => ref.tokenizer.encode(s, true);
        const prompts = [enc("Once upon a time, there was a little girl named Lily who loved to play in the park with her dog"), enc("The cat"), enc("One day, Tom went to the store")];
        const V = ref.config.vocabSize;
        // Each logit within tol of the f32 pool's (worst ≤ 0), so the 16-bit pool can pick
        // another token only where the best two are within 2·tol: such near-ties are the one
        // divergence allowed; both continue from the f32 pool's token.
        const r = await greedyBoth(ref.native, m.native, prompts, 12, V, undefined, (x, y) => excessRms(x, y, V, ULPS * U[dt]));
        assert.ok(r.worst <= 0, `logits differ beyond ${ULPS}·U·RMS by ${r.worst}`);
        const slips = r.cpu.flatMap((toks, i) => toks.flatMap((tok, s) => (tok === r.cuda[i]![s] ? [] : [`prompt ${i} step ${s}: ${tok}/${r.cuda[i]![s]}`])));
        t.diagnostic(`${39 - slips.length} of 39 greedy tokens equal${slips.length ? `; near-ties: ${slips.join(", ")}` : ""}`);
        assert.ok(slips.length <= 2, `more near-ties than stories260K has: ${slips.join("; ")}`);
      } finally {
        ref.dispose();
        m.dispose();
      }
    });

  it('"auto": the weights\' 16-bit type, f16 for the block formats (as llama.cpp), f32 for f32, bf16 on cuda', () => {
    const q = (dtype: TensorRef["dtype"]): TensorRef[] => [{ name: "embed", file: "x", offset: 0, dtype: "f32", shape: [8, 8] }, { name: "L0.q", file: "x", offset: 0, dtype, shape: [8, 8] }];
    const got = Object.fromEntries((["f32", "bf16", "f16", "q8_0", "q4_0", "q4_k"] as const).map((d) => [d, resolveKvDtype("auto", "cpu", q(d))]));
    assert.deepEqual(got, { f32: "f32", bf16: "bf16", f16: "f16", q8_0: "f16", q4_0: "f16", q4_k: "f16" });
    assert.equal(resolveKvDtype("auto", "cuda", q("f32")), "bf16");
    assert.equal(resolveKvDtype("bf16", "cpu", q("q4_0")), "bf16", "a named type is kept");
  });

  it("admission counts 2 bytes an element: the same --kv-cache-memory holds twice the f32 pool's blocks", async () => {
    const blocks = async (kvDtype: KvDtype) => {
      const m = await loadModel(storiesDir, { threads: 1, kvBlockSize: 16, kvCacheMemory: { bytes: 4 << 20 }, kvDtype });
      try {
        return m.native.kvStats().totalBlocks;
      } finally {
        m.dispose();
      }
    };
    // stories260K: 5 layers × 4 KV heads × 8 dims, K and V: 320 elements a token
    const got = { f32: await blocks("f32"), bf16: await blocks("bf16"), f16: await blocks("f16") };
    const of = (bytes: number) => Math.floor((4 << 20) / (320 * bytes * 16));
    assert.deepEqual(got, { f32: of(4), bf16: of(2), f16: of(2) });
  });

  it("an unknown type is refused by name: loadModel, the addon, the command line", async () => {
    await assert.rejects(loadModel(storiesDir, { threads: 1, kvDtype: "fp8" as KvDtype }), /kvDtype must be "auto", "f32", "bf16" or "f16", not "fp8"/);
    const b = buildTiny(mkdtempSync(join(dir, "tiny-")), "m", variants[0]![1], new Rng(1));
    let m: NativeModel | undefined;
    assert.throws(() => (m = native().createModel(b.spec, b.tensors, { threads: 1, kvBlockSize: 4, kvBlocks: 8, kvDtype: "q4_0" as KvDtype })), /kvDtype must be "f32", "bf16" or "f16", not "q4_0"/);
    m?.dispose();
    const cli = join(repoRoot, "dist", "cli", "main.js");
    const r = spawnSync(process.execPath, [cli, "serve", "--model", storiesDir, "--no-store", "--port", "0", "--kv-dtype", "fp8"], { encoding: "utf8", timeout: 60_000 });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--kv-dtype must be auto, f32, bf16 or f16, got "fp8"/);
  });
});
