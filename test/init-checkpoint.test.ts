import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset, presetNames } from "../engine/presets.js";
import { inspectCheckpoint } from "../engine/model.js";
import { parseConfig } from "../engine/config.js";
import { expectedShapes } from "../engine/weights.js";
import { readSafetensorsHeader } from "../engine/safetensors.js";
import { ensureBuiltinModel } from "../engine/builtin.js";
import { toBf16, toF16 } from "../engine/half.js";
import { Rng } from "../engine/rng.js";

const made: string[] = [];
const tmp = (tag: string) => {
  const d = mkdtempSync(join(tmpdir(), `hc-init-${tag}-`));
  made.push(d);
  return d;
};
after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

/** All values of one tensor as float64, whatever its dtype. */
function tensorValues(dir: string, name: string): Float64Array {
  const file = join(dir, "model.safetensors");
  const t = readSafetensorsHeader(file).tensors.find((x) => x.name === name)!;
  const buf = readFileSync(file).subarray(t.offset, t.offset + t.byteLength);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < n; i++) {
    if (t.dtype === "f32") out[i] = buf.readFloatLE(i * 4);
    else if (t.dtype === "bf16") {
      u32[0] = buf.readUInt16LE(i * 2) << 16;
      out[i] = f32[0];
    } else out[i] = halfToFloat(buf.readUInt16LE(i * 2));
  }
  return out;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

test("every small preset writes a checkpoint the loader accepts, flagged untrained", async () => {
  for (const name of presetNames().filter((n) => n !== "110M")) {
    const dir = tmp(name);
    await initCheckpoint({ config: preset(name), out: dir, seed: 1 });
    assert.deepEqual(readdirSync(dir).sort(), ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    const c = inspectCheckpoint(dir);
    assert.equal(c.untrained, true, name);
    assert.equal(c.tensors.length, expectedShapes(c.config).size, name);
    assert.equal(c.tokenizer.vocabSize, c.config.vocabSize, name);
    const text = "Once upon a time, a happy dog 🐕 met 世界.";
    assert.equal(c.tokenizer.decode(c.tokenizer.encode(text, true), true), text, name);
  }
});

test("init and the loader agree on transformers' defaults: a Qwen3 config without head_dim means 128", async () => {
  const { head_dim: _drop, ...raw } = preset("qwen3-tiny");
  const dir = tmp("qwen3-default-head-dim");
  await initCheckpoint({ config: { ...raw, num_attention_heads: 2, num_key_value_heads: 1 }, out: dir, seed: 1 });
  const written = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  assert.equal(written.head_dim, 128, "the default is written out");
  assert.equal(written.max_window_layers, 28);
  const c = inspectCheckpoint(dir);
  assert.equal(c.config.headDim, 128);
  assert.deepEqual(c.tensors.find((t) => t.name === "L0.q")!.shape, [2 * 128, 64]);
});

test("same seed, same bytes; another seed, other bytes", async () => {
  const [a, b, c] = [tmp("a"), tmp("b"), tmp("c")];
  await initCheckpoint({ config: preset("qwen2-tiny"), out: a, seed: 7 });
  await initCheckpoint({ config: preset("qwen2-tiny"), out: b, seed: 7 });
  await initCheckpoint({ config: preset("qwen2-tiny"), out: c, seed: 8 });
  assert.equal(sha(join(a, "model.safetensors")), sha(join(b, "model.safetensors")));
  assert.notEqual(sha(join(a, "model.safetensors")), sha(join(c, "model.safetensors")));
  assert.equal(sha(join(a, "tokenizer.json")), sha(join(c, "tokenizer.json")));
});

test("HF init statistics: linear std 0.02, norms exactly 1, biases 0", async () => {
  const dir = tmp("stats");
  await initCheckpoint({ config: preset("qwen2-tiny"), out: dir, seed: 5 });
  const w = tensorValues(dir, "model.layers.0.mlp.gate_proj.weight");
  const mean = w.reduce((s, x) => s + x, 0) / w.length;
  const std = Math.sqrt(w.reduce((s, x) => s + (x - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(mean) < 0.001, `mean ${mean}`);
  assert.ok(Math.abs(std - 0.02) < 0.0005, `std ${std}`);
  assert.ok(tensorValues(dir, "model.norm.weight").every((x) => x === 1));
  assert.ok(tensorValues(dir, "model.layers.1.self_attn.q_proj.bias").every((x) => x === 0));
  // tensors are independent streams: q and k of a layer differ
  assert.notDeepEqual(tensorValues(dir, "model.layers.0.self_attn.k_proj.weight").slice(0, 8), tensorValues(dir, "model.layers.0.self_attn.q_proj.weight").slice(0, 8));
});

test("bf16 and f16 checkpoints hold the rounded f32 values; torch_dtype says so", async () => {
  const f32 = tmp("f32"), bf = tmp("bf16"), hf = tmp("f16");
  const o = { config: preset("tiny"), seed: 9, std: 0.1, perturbStd: 0.1 };
  await initCheckpoint({ ...o, out: f32, dtype: "f32" });
  await initCheckpoint({ ...o, out: bf, dtype: "bf16" });
  await initCheckpoint({ ...o, out: hf, dtype: "f16" });
  assert.equal(JSON.parse(readFileSync(join(bf, "config.json"), "utf8")).torch_dtype, "bfloat16");
  assert.equal(JSON.parse(readFileSync(join(hf, "config.json"), "utf8")).torch_dtype, "float16");
  const name = "model.layers.0.input_layernorm.weight";
  const ref = tensorValues(f32, name);
  const vb = tensorValues(bf, name), vh = tensorValues(hf, name);
  assert.ok(ref.some((x) => x !== 1), "perturbStd must move the norm weights off 1");
  for (let i = 0; i < ref.length; i++) {
    assert.ok(Math.abs(vb[i] - ref[i]) <= Math.abs(ref[i]) * 2 ** -8, `bf16 ${vb[i]} vs ${ref[i]}`);
    assert.ok(Math.abs(vh[i] - ref[i]) <= Math.abs(ref[i]) * 2 ** -11, `f16 ${vh[i]} vs ${ref[i]}`);
  }
});

test("half conversions round to nearest even", () => {
  assert.equal(toBf16(1), 0x3f80);
  assert.equal(toBf16(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(toBf16(1 + 3 * 2 ** -8), 0x3f82); // tie -> even (up)
  assert.equal(toBf16(-2), 0xc000);
  assert.equal(toF16(1), 0x3c00);
  assert.equal(toF16(65504), 0x7bff);
  assert.equal(toF16(1e6), 0x7c00);
  assert.equal(toF16(2 ** -24), 0x0001);
  assert.equal(toF16(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(halfToFloat(toF16(0.1)), 0.0999755859375);
});

test("the PRNG is seeded and normal", () => {
  const a = Rng.stream(1, "x"), b = Rng.stream(1, "x"), c = Rng.stream(1, "y");
  const xs = Array.from({ length: 20000 }, () => a.normal());
  assert.deepEqual(Array.from({ length: 5 }, () => b.normal()), xs.slice(0, 5));
  assert.notEqual(c.normal(), xs[0]);
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const varc = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(varc - 1) < 0.05, `mean ${mean} var ${varc}`);
});

test("progress reports bytes up to the total", async () => {
  const seen: [number, number][] = [];
  await initCheckpoint({ config: preset("stories260K-shape"), out: tmp("progress"), onProgress: (w, t) => seen.push([w, t]) });
  assert.ok(seen.length > 10);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i][0] > seen[i - 1][0]);
  const [w, t] = seen[seen.length - 1];
  assert.equal(w, t);
  const params = [...expectedShapes(parseConfig(preset("stories260K-shape"))).values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
  assert.equal(t, params * 4);
});

test("110M preset: the benchmark's parameter count (tied embeddings)", () => {
  const shapes = expectedShapes(parseConfig(preset("110M")));
  const params = [...shapes.values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
  assert.ok(Math.abs(params - 109.5e6) < 0.1e6, `params ${params}`);
  assert.ok(!shapes.has("lm_head"));
});

test("the built-in model is created once and reused", async () => {
  const cache = tmp("builtin");
  const dir = await ensureBuiltinModel(cache);
  const mtime = statSync(join(dir, "model.safetensors")).mtimeMs;
  assert.equal(await ensureBuiltinModel(cache), dir);
  assert.equal(statSync(join(dir, "model.safetensors")).mtimeMs, mtime);
  assert.deepEqual(readdirSync(cache), [dir.split("/").pop()]);
  const c = inspectCheckpoint(dir);
  assert.equal(c.untrained, true);
  assert.deepEqual(c.config, parseConfig({ ...preset("tiny"), torch_dtype: "float32" }));
  // deterministic: another cache gets the same bytes
  const other = await ensureBuiltinModel(tmp("builtin2"));
  assert.equal(sha(join(other, "model.safetensors")), sha(join(dir, "model.safetensors")));
});
