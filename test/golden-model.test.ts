// Whole-model logits of small random checkpoints (written by our own init) against golden
// logits from the independent float64 reference in test/fixtures/golden/generate.py.
// Tolerance: |got - ref| <= ATOL + RTOL * |ref| per logit (fp32 compute against float64;
// bf16/f16 cases compare against the reference run on the same rounded weights).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import type { DType } from "../native/index.js";
import { readSafetensorsHeader, writeSafetensors } from "../engine/safetensors.js";

const ATOL = 5e-5;
const RTOL = 5e-5;

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const fixtures = join(root, "test", "fixtures", "golden");

interface Case {
  name: string;
  preset: string;
  dtype: DType;
  seed: number;
  std: number;
  perturbStd: number;
}
const spec = JSON.parse(readFileSync(join(fixtures, "cases.json"), "utf8")) as { prompts: number[][]; cases: Case[] };

function compare(what: string, got: Float32Array, ref: Float32Array): number {
  assert.equal(got.length, ref.length, `${what}: ${got.length} logits, expected ${ref.length}`);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(got[i] - ref[i]);
    const excess = err - (ATOL + RTOL * Math.abs(ref[i]));
    if (!(excess <= 0)) assert.fail(`${what}: logit ${i} = ${got[i]}, reference ${ref[i]} (|diff| ${err})`);
    worst = Math.max(worst, err);
  }
  return worst;
}

for (const c of spec.cases) {
  test(`golden logits: ${c.name} (${c.preset}, ${c.dtype})`, async (t) => {
    const meta = JSON.parse(readFileSync(join(fixtures, `${c.name}.json`), "utf8")) as { sha256: string; vocab: number; promptLengths: number[] };
    const raw = readFileSync(join(fixtures, `${c.name}.logits.f32`));
    const all = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const V = meta.vocab;
    const refRows: Float32Array[] = [];
    let row = 0;
    for (const len of meta.promptLengths) {
      refRows.push(all.subarray(row * V, (row + len) * V));
      row += len;
    }

    const dir = mkdtempSync(join(tmpdir(), `hc-golden-${c.name}-`));
    let model: LoadedModel | undefined;
    try {
      await initCheckpoint({ config: preset(c.preset), out: dir, dtype: c.dtype, seed: c.seed, std: c.std, perturbStd: c.perturbStd });
      const sha = createHash("sha256").update(readFileSync(join(dir, "model.safetensors"))).digest("hex");
      assert.equal(sha, meta.sha256, "init no longer reproduces the fixture's checkpoint: rerun test/fixtures/golden/generate.py");
      // the goldens upcast the weights, multiply in fp32 and keep K/V in fp32: so do highest and an
      // f32 KV cache ("auto" rounds a bf16 model's x and a 16-bit model's cache)
      model = await loadModel(dir, { threads: 2, kvDtype: "f32", matmulPrecision: "highest" });
      const m = model;
      assert.equal(m.config.vocabSize, V);
      let worst = 0;

      // 1. each prompt alone, logits at every position
      for (let p = 0; p < spec.prompts.length; p++) {
        const ids = spec.prompts[p];
        const got = await m.native.forward({ seqIds: Int32Array.of(10 + p), tokens: Int32Array.from(ids), counts: Int32Array.of(ids.length), logits: "all" });
        worst = Math.max(worst, compare(`prefill prompt ${p}`, got, refRows[p]));
        m.native.freeSeq(10 + p);
      }

      // 2. both prompts in one batch
      {
        const [a, b] = spec.prompts;
        const got = await m.native.forward({ seqIds: Int32Array.of(20, 21), tokens: Int32Array.from([...a, ...b]), counts: Int32Array.of(a.length, b.length), logits: "all" });
        worst = Math.max(worst, compare("batched prefill", got, all.subarray(0, (a.length + b.length) * V)));
        m.native.freeSeq(20);
        m.native.freeSeq(21);
      }

      // 3. token by token through the KV cache, both sequences interleaved in each step
      {
        const [a, b] = spec.prompts;
        for (let i = 0; i < a.length; i++) {
          const seqs = i < b.length ? [30, 31] : [30];
          const toks = i < b.length ? [a[i], b[i]] : [a[i]];
          const got = await m.native.forward({ seqIds: Int32Array.from(seqs), tokens: Int32Array.from(toks), counts: Int32Array.from(seqs.map(() => 1)), logits: "last" });
          worst = Math.max(worst, compare(`decode step ${i} (prompt 0)`, got.subarray(0, V), refRows[0].subarray(i * V, (i + 1) * V)));
          if (i < b.length) worst = Math.max(worst, compare(`decode step ${i} (prompt 1)`, got.subarray(V, 2 * V), refRows[1].subarray(i * V, (i + 1) * V)));
        }
        assert.equal(m.native.seqLength(30), a.length);
        m.native.freeSeq(30);
        m.native.freeSeq(31);
      }

      // 4. chunked prefill: a cached prefix, then the rest in one call
      {
        const a = spec.prompts[0];
        const cut = 7;
        await m.native.forward({ seqIds: Int32Array.of(40), tokens: Int32Array.from(a.slice(0, cut)), counts: Int32Array.of(cut), logits: "last" });
        const got = await m.native.forward({ seqIds: Int32Array.of(40), tokens: Int32Array.from(a.slice(cut)), counts: Int32Array.of(a.length - cut), logits: "all" });
        worst = Math.max(worst, compare("chunked prefill", got, refRows[0].subarray(cut * V)));
        m.native.freeSeq(40);
      }
      t.diagnostic(`max |logit - reference| = ${worst.toExponential(2)}`);
    } finally {
      model?.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("a sharded copy (model.safetensors.index.json) loads and gives the same logits", async () => {
  const c = spec.cases.find((x) => x.name === "qwen2-bias-untied")!;
  const single = mkdtempSync(join(tmpdir(), "hc-golden-single-"));
  const sharded = mkdtempSync(join(tmpdir(), "hc-golden-sharded-"));
  const models: LoadedModel[] = [];
  try {
    await initCheckpoint({ config: preset(c.preset), out: single, dtype: c.dtype, seed: c.seed, std: c.std, perturbStd: c.perturbStd });
    for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(single, f), join(sharded, f));
    const file = join(single, "model.safetensors");
    const bytes = readFileSync(file);
    const tensors = readSafetensorsHeader(file).tensors;
    const weightMap: Record<string, string> = {};
    const half = Math.ceil(tensors.length / 2);
    for (const [i, part] of [tensors.slice(0, half), tensors.slice(half)].entries()) {
      const name = `model-0000${i + 1}-of-00002.safetensors`;
      const sources = part.map((t) => {
        weightMap[t.name] = name;
        const data = bytes.subarray(t.offset, t.offset + t.byteLength);
        return { name: t.name, dtype: t.dtype, shape: t.shape, write: (sink: (b: Uint8Array) => Promise<void>) => sink(data) };
      });
      // reversed order inside the shard: offsets must come from the header, not from the order
      await writeSafetensors(join(sharded, name), sources.reverse());
    }
    writeFileSync(join(sharded, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const a = await loadModel(single, { threads: 2 });
    models.push(a);
    const b = await loadModel(sharded, { threads: 2 });
    models.push(b);
    const ids = spec.prompts[0];
    const batch = { seqIds: Int32Array.of(1), tokens: Int32Array.from(ids), counts: Int32Array.of(ids.length), logits: "all" as const };
    assert.deepEqual(await b.native.forward(batch), await a.native.forward(batch));
  } finally {
    for (const m of models) m.dispose();
    rmSync(single, { recursive: true, force: true });
    rmSync(sharded, { recursive: true, force: true });
  }
});
