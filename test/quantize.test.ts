// `hybridchat quantize` on the real stories260K: the written file is llama.cpp's blocks under
// U8 tensors, it loads, its next-token distributions stay close to the f32 model's (mean KL on
// a fixed text), decode (one token a step: the streaming kernels) agrees with prefill (the
// packed kernels), and what must be refused is.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { agreement } from "../engine/quant-agreement.js";
import { quantizeCheckpoint } from "../engine/quantize-checkpoint.js";
import { QUANT_KEY, readSafetensorsHeader, writeSafetensors } from "../engine/safetensors.js";
import { assertClose } from "./reference/check.js";
import { storiesDir } from "./test-model.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";

const TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she saw a big red ball.";
const cli = fileURLToPath(new URL("../cli/main.js", import.meta.url));

let tmp: string;
let source: LoadedModel;
before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "hc-quantize-"));
  source = await loadModel(storiesDir, { threads: 2 });
});
after(() => {
  source?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

// the mean-KL bounds measured on this text are 1.5e-4 (q8_0; 8e-5 when the prefill kept x in fp32,
// before the int8 GEMM) and 0.026 (q4_0): a wrong block layout or scale gives KL of order 1 and
// breaks the top-1 agreement
for (const [type, maxKL, minTop1, stepKL] of [["q8_0", 1e-3, 0.97, 1e-3], ["q4_0", 0.1, 0.9, 5e-3]] as const) {
  test(`${type}: the checkpoint loads and agrees with the f32 model, decode and prefill alike`, async () => {
    const out = join(tmp, type);
    const r = spawnSync(process.execPath, [cli, "quantize", "--model", storiesDir, "--out", out, "--type", type], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    // hidden 64 rows quantize; down_proj's rows are 172 long and stay f32 (and are named)
    assert.match(r.stdout, new RegExp(`30 linear weights as ${type}`));
    assert.match(r.stdout, /left unquantized .*model\.layers\.0\.mlp\.down_proj\.weight/);
    const header = readSafetensorsHeader(join(out, "model.safetensors"));
    assert.equal(header.metadata[QUANT_KEY], type);
    const q = header.tensors.find((t) => t.name === "model.layers.0.self_attn.q_proj.weight")!;
    assert.equal(q.dtype, type);
    assert.deepEqual(q.shape, [64, 64]);
    assert.equal(q.byteLength, 64 * 2 * (type === "q8_0" ? 34 : 18));
    assert.equal(header.tensors.find((t) => t.name === "model.embed_tokens.weight")!.dtype, "f32");

    await checkAgreement(source, out, type, maxKL, minTop1, stepKL);
  });
}

/** KL(softmax(p) ‖ softmax(q)) of two logit rows. */
function klRows(p: ArrayLike<number>, q: ArrayLike<number>): number {
  const lse = (v: ArrayLike<number>): number => {
    let max = -Infinity, s = 0;
    for (let i = 0; i < v.length; i++) max = Math.max(max, v[i]!);
    for (let i = 0; i < v.length; i++) s += Math.exp(v[i]! - max);
    return max + Math.log(s);
  };
  const lp = lse(p), lq = lse(q);
  let kl = 0;
  for (let i = 0; i < p.length; i++) kl += Math.exp(p[i]! - lp) * ((p[i]! - lp) - (q[i]! - lq));
  return kl;
}

/** Loads `out`, holds its next-token distributions on TEXT to the source's, and decode (M = 1,
 * the streaming kernels) to the prefill's rows (the packed kernels). */
async function checkAgreement(src: LoadedModel, out: string, type: string, maxKL: number, minTop1: number, stepKL: number): Promise<number> {
  // an f32 KV cache: a 16-bit one moves attention outputs by its rounding, enough to flip an int8
  // rounding of x between decode and prefill (f16 on the q4_0 model here: 0.05 at step 8)
  const model = await loadModel(out, { threads: 2, kvDtype: "f32" });
  try {
    const tokens = Int32Array.from(src.tokenizer.encode(TEXT, true));
    const a = await agreement(src, model, tokens);
    console.log(`${type} vs f32 on ${a.positions} positions: mean KL ${a.meanKL.toExponential(2)}, max ${a.maxKL.toExponential(2)}, top-1 ${(100 * a.top1).toFixed(1)} %`);
    assert.ok(a.meanKL < maxKL, `mean KL ${a.meanKL}`);
    assert.ok(a.top1 >= minTop1, `top-1 agreement ${a.top1}`);
    const V = model.config.vocabSize;
    // decode and prefill round x to int8 per block on the CPUs with int8 dot products
    // (native/src/cpu/quant_dot.h below 8–24 rows a product, the int8 GEMM of quant_gemm.h above:
    // the whole text's prefill here, so the agreement above is an M >= 2 path's). Both round each row
    // alike, so the decode steps equal a 12-token prefill (row for row, up to summation order) and
    // are within KL `stepKL` of the whole text's prefill (measured against an fp32 prefill, before
    // the int8 GEMM: q8_0 1.4e-4, about its weights' own KL; q4_0 / q4_k ≤ 1.1e-3, a hundredth of
    // theirs); a wrong kernel gives KL of order 0.1–1.
    const all = await model.native.forward({ seqIds: Int32Array.of(1), tokens, counts: Int32Array.of(tokens.length), logits: "all" });
    model.native.freeSeq(1);
    const head = await model.native.forward({ seqIds: Int32Array.of(3), tokens: tokens.subarray(0, 12), counts: Int32Array.of(12), logits: "all" });
    model.native.freeSeq(3);
    for (let t = 0; t < 12; t++) {
      const row = await model.native.forward({ seqIds: Int32Array.of(2), tokens: tokens.subarray(t, t + 1), counts: Int32Array.of(1), logits: "last" });
      assertClose(row, Float64Array.from(head.subarray(t * V, (t + 1) * V)), 1e-4, 1e-4, `${type} decode step ${t} vs a 12-token prefill`);
      const kl = klRows(all.subarray(t * V, (t + 1) * V), row);
      assert.ok(kl < stepKL, `${type} decode step ${t}: KL ${kl} from the ${tokens.length}-token prefill`);
    }
    model.native.freeSeq(2);
    return a.meanKL;
  } finally {
    model.dispose();
  }
}

// stories260K's rows (64, 172) are no whole super-blocks of 256, so q4_k is checked on a
// random-init model of hidden 256, intermediate 512 (its own f32 as the source). Its next-token
// distributions are flat (top-1 is noise), so the bar is Q4_0's KL on the same model: the
// k-quant's fitted scale and min per 32 weights must beat Q4_0's one absmax scale (measured:
// q4_k 8.4e-2 vs q4_0 1.16e-1); a wrong sub-block order or scale gives KL of order 1.
test("q4_k: rows of whole super-blocks quantize, load, agree with f32 better than q4_0, decode = prefill", async () => {
  const src = join(tmp, "wide");
  await initCheckpoint({ config: { ...preset("tiny"), hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2 }, out: src, seed: 3, std: 0.08 });
  const out = join(tmp, "wide-q4_k");
  const r = spawnSync(process.execPath, [cli, "quantize", "--model", src, "--out", out, "--type", "q4_k"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /14 linear weights as q4_k/);
  const q = readSafetensorsHeader(join(out, "model.safetensors")).tensors.find((t) => t.name === "model.layers.0.mlp.down_proj.weight")!;
  assert.equal(q.dtype, "q4_k");
  assert.deepEqual(q.shape, [256, 512]);
  assert.equal(q.byteLength, 256 * 2 * 144);
  const out0 = join(tmp, "wide-q4_0");
  await quantizeCheckpoint({ model: src, out: out0, type: "q4_0" });
  const f32 = await loadModel(src, { threads: 2 });
  try {
    const k = await checkAgreement(f32, out, "q4_k", 0.2, 0, 5e-3);
    const q4 = await checkAgreement(f32, out0, "q4_0", 1, 0, 5e-3);
    assert.ok(k < 0.8 * q4, `q4_k mean KL ${k} vs q4_0 ${q4}`);
  } finally {
    f32.dispose();
  }
});

test("refused: U8 tensors without the quantization key, a quantized embedding, quantizing twice, a bad --type", async () => {
  const data = new Uint8Array(34 * 2);
  const u8 = { name: "w", dtype: "q8_0" as const, shape: [1, 64], write: (sink: (c: Uint8Array) => Promise<void>) => sink(data) };
  await assert.rejects(writeSafetensors(join(tmp, "x.safetensors"), [u8], {}), /metadata must say quantization=q8_0/);
  // a U8 tensor in a file that does not say it is quantized
  const file = join(tmp, "plain.safetensors");
  const header = Buffer.from(JSON.stringify({ w: { dtype: "U8", shape: [1, 68], data_offsets: [0, 68] } }).padEnd(64, " "));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(file, Buffer.concat([len, header, Buffer.alloc(68)]));
  assert.throws(() => readSafetensorsHeader(file), (e: Error & { code?: string }) => e.code === "bad_safetensors" && /U8/.test(e.message));
  // the embedding stored as blocks
  const emb = join(tmp, "emb");
  const q8 = join(tmp, "q8_0");
  await quantizeCheckpoint({ model: storiesDir, out: emb, type: "q8_0" });
  const h = readSafetensorsHeader(join(emb, "model.safetensors"));
  const tensors = h.tensors.map((t) => ({ ...t, dtype: t.name === "model.embed_tokens.weight" ? ("q8_0" as const) : t.dtype }));
  const { openSync, readSync, closeSync } = await import("node:fs");
  const fd = openSync(join(emb, "model.safetensors"), "r");
  const sources = tensors.map((t) => {
    const raw = new Uint8Array(t.byteLength);
    readSync(fd, raw, 0, t.byteLength, t.offset);
    if (t.name !== "model.embed_tokens.weight") return { name: t.name, dtype: t.dtype, shape: t.shape, write: (s: (c: Uint8Array) => Promise<void>) => s(raw) };
    const blocks = new Uint8Array((t.shape[0]! * t.shape[1]! / 32) * 34);
    return { name: t.name, dtype: "q8_0" as const, shape: t.shape, write: (s: (c: Uint8Array) => Promise<void>) => s(blocks) };
  });
  closeSync(fd);
  await writeSafetensors(join(emb, "model.safetensors"), sources, { format: "pt", [QUANT_KEY]: "q8_0" });
  await assert.rejects(loadModel(emb), (e: Error & { code?: string }) => e.code === "bad_safetensors" && /only the layers' linear weights/.test(e.message));
  await assert.rejects(quantizeCheckpoint({ model: q8, out: join(tmp, "twice"), type: "q4_0" }), /already q8_0/);
  const bad = spawnSync(process.execPath, [cli, "quantize", "--model", storiesDir, "--out", join(tmp, "bad"), "--type", "q5_0"], { encoding: "utf8" });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--type must be q8_0, q4_0 or q4_k, got "q5_0"/);
});
