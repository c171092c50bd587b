import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalName, expectedShapes, hfName, resolveWeights } from "../engine/weights.js";
import { parseConfig, loadConfig } from "../engine/config.js";
import { readCheckpointTensors, readSafetensorsHeader, writeSafetensors, type StoredTensor, type TensorSource } from "../engine/safetensors.js";
import { ModelLoadError } from "../engine/load-errors.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { loadModel } from "../engine/model.js";
import { storiesDir } from "./test-model.js";


function isLoadError(code: string, pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof ModelLoadError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  };
}

test("stories260K maps to the canonical names, tied head dropped", () => {
  const refs = resolveWeights(loadConfig(storiesDir), readCheckpointTensors(storiesDir));
  assert.equal(refs.length, 1 + 5 * 9 + 1);
  const names = refs.map((r) => r.name);
  assert.ok(names.includes("embed") && names.includes("final_norm") && names.includes("L4.down"));
  assert.ok(!names.includes("lm_head"));
  const q = refs.find((r) => r.name === "L0.q")!;
  assert.deepEqual(q.shape, [64, 64]);
  const k = refs.find((r) => r.name === "L0.k")!;
  assert.deepEqual(k.shape, [32, 64]);
  // offsets are absolute: the header says where the data starts
  const st = readSafetensorsHeader(join(storiesDir, "model.safetensors")).tensors.find((t) => t.name === "model.layers.0.self_attn.k_proj.weight")!;
  assert.equal(k.offset, st.offset);
  assert.ok(k.offset > 8);
});

test("name mapping is a bijection over every layout", () => {
  for (const p of ["stories260K-shape", "qwen2-tiny", "qwen3-tiny", "llama3-tiny"]) {
    const c = parseConfig(preset(p));
    for (const canon of expectedShapes(c).keys()) assert.equal(canonicalName(hfName(canon)), canon, canon);
  }
  assert.equal(hfName("L3.q_bias"), "model.layers.3.self_attn.q_proj.bias");
  assert.equal(hfName("L0.k_norm"), "model.layers.0.self_attn.k_norm.weight");
  assert.equal(canonicalName("model.layers.0.mlp.experts.0.w1"), null);
});

/** Fake stored tensors with the config's own shapes (no file needed for resolveWeights). */
function stored(config: ReturnType<typeof parseConfig>): StoredTensor[] {
  return [...expectedShapes(config)].map(([canon, shape], i) => ({ name: hfName(canon), file: "m.safetensors", offset: 8 + i, byteLength: 0, dtype: "f32", shape }));
}

test("layout-specific tensors are required: Qwen2 biases, Qwen3 q/k norms, untied lm_head", () => {
  const q2 = parseConfig(preset("qwen2-tiny"));
  const s2 = stored(q2);
  assert.equal(resolveWeights(q2, s2).filter((r) => r.name.endsWith("_bias")).length, 3 * 2);
  assert.throws(() => resolveWeights(q2, s2.filter((t) => t.name !== "model.layers.1.self_attn.v_proj.bias")), isLoadError("missing_tensor", /model\.layers\.1\.self_attn\.v_proj\.bias.*\[32\]/));
  assert.throws(() => resolveWeights(q2, s2.filter((t) => t.name !== "lm_head.weight")), isLoadError("missing_tensor", /lm_head\.weight/));
  const q3 = parseConfig(preset("qwen3-tiny"));
  assert.throws(() => resolveWeights(q3, stored(q3).filter((t) => !t.name.endsWith("q_norm.weight"))), isLoadError("missing_tensor", /q_norm/));
  // a Llama checkpoint must not carry biases it would silently ignore
  const ll = parseConfig(preset("llama3-tiny"));
  const extra: StoredTensor = { name: "model.layers.0.self_attn.q_proj.bias", file: "m.safetensors", offset: 0, byteLength: 0, dtype: "f32", shape: [64] };
  assert.throws(() => resolveWeights(ll, [...stored(ll), extra]), isLoadError("unexpected_tensor", /q_proj\.bias.*no q\/k\/v bias/));
  // attention_bias + mlp_bias: every linear of a layer carries a bias, o_proj included
  const lb = parseConfig({ ...preset("llama3-tiny"), attention_bias: true, mlp_bias: true });
  const biases = resolveWeights(lb, stored(lb)).filter((r) => r.name.startsWith("L1.") && r.name.endsWith("_bias")).map((r) => r.name);
  assert.deepEqual(biases.sort(), ["L1.down_bias", "L1.gate_bias", "L1.k_bias", "L1.o_bias", "L1.q_bias", "L1.up_bias", "L1.v_bias"]);
  assert.equal(hfName("L1.o_bias"), "model.layers.1.self_attn.o_proj.bias");
  assert.equal(hfName("L1.down_bias"), "model.layers.1.mlp.down_proj.bias");
  assert.throws(() => resolveWeights(lb, stored(lb).filter((t) => t.name !== "model.layers.0.self_attn.o_proj.bias")), isLoadError("missing_tensor", /o_proj\.bias/));
});

test("tied checkpoints may still store lm_head; rotary inv_freq buffers are ignored", () => {
  const c = parseConfig(preset("stories260K-shape"));
  const s = stored(c);
  const withHead: StoredTensor[] = [
    ...s,
    { name: "lm_head.weight", file: "m.safetensors", offset: 0, byteLength: 0, dtype: "f32", shape: [512, 64] },
    { name: "model.layers.0.self_attn.rotary_emb.inv_freq", file: "m.safetensors", offset: 0, byteLength: 0, dtype: "f32", shape: [4] },
  ];
  assert.equal(resolveWeights(c, withHead).length, s.length);
});

// ---- whole-directory errors through loadModel (they are all raised before the native side)

let good: string;
before(async () => {
  good = mkdtempSync(join(tmpdir(), "hc-weights-good-"));
  await initCheckpoint({ config: preset("tiny"), out: good, seed: 3 });
});

const made: string[] = [];
after(() => [good, ...made].forEach((d) => rmSync(d, { recursive: true, force: true })));

function copyOfGood(): string {
  const d = mkdtempSync(join(tmpdir(), "hc-weights-bad-"));
  made.push(d);
  cpSync(good, d, { recursive: true });
  return d;
}

/** Rewrites model.safetensors of `dir` after `edit` changes the tensor list (data zeroed). */
async function rewriteWeights(dir: string, edit: (ts: { name: string; shape: number[] }[]) => { name: string; shape: number[] }[]): Promise<void> {
  const file = join(dir, "model.safetensors");
  const list = edit(readSafetensorsHeader(file).tensors.map((t) => ({ name: t.name, shape: t.shape })));
  const sources: TensorSource[] = list.map((t) => ({
    name: t.name,
    dtype: "f32",
    shape: t.shape,
    write: (sink) => sink(new Uint8Array(t.shape.reduce((a, b) => a * b, 1) * 4)),
  }));
  await writeSafetensors(file, sources);
}

test("loadModel: unsupported architecture", async () => {
  const d = copyOfGood();
  const cfg = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
  writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, architectures: ["MixtralForCausalLM"] }));
  await assert.rejects(loadModel(d), isLoadError("unsupported_architecture", /MixtralForCausalLM.*supported: LlamaForCausalLM/));
});

test("loadModel: missing config, tokenizer, weights", async () => {
  for (const f of ["config.json", "tokenizer.json", "model.safetensors"]) {
    const d = copyOfGood();
    rmSync(join(d, f));
    await assert.rejects(loadModel(d), isLoadError("missing_file", new RegExp(f.replace(".", "\\."))), f);
  }
});

test("loadModel: bad JSON in config, tokenizer and tokenizer_config", async () => {
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) {
    const d = copyOfGood();
    writeFileSync(join(d, f), '{"truncated": ');
    await assert.rejects(loadModel(d), isLoadError("bad_json", new RegExp(f.replace(".", "\\."))), f);
  }
});

test("loadModel: missing tensor", async () => {
  const d = copyOfGood();
  await rewriteWeights(d, (ts) => ts.filter((t) => t.name !== "model.layers.2.mlp.up_proj.weight"));
  await assert.rejects(loadModel(d), isLoadError("missing_tensor", /model\.layers\.2\.mlp\.up_proj\.weight.*\[176, 64\]/));
});

test("loadModel: unexpected tensor", async () => {
  const d = copyOfGood();
  await rewriteWeights(d, (ts) => [...ts, { name: "model.layers.9.mlp.up_proj.weight", shape: [176, 64] }]);
  await assert.rejects(loadModel(d), isLoadError("unexpected_tensor", /model\.layers\.9\.mlp\.up_proj\.weight.*model\.safetensors.*4 layers/));
});

test("loadModel: shape mismatch names expected and found", async () => {
  const d = copyOfGood();
  await rewriteWeights(d, (ts) => ts.map((t) => (t.name === "model.layers.1.self_attn.k_proj.weight" ? { ...t, shape: [64, 64] } : t)));
  await assert.rejects(loadModel(d), isLoadError("shape_mismatch", /model\.layers\.1\.self_attn\.k_proj\.weight.*expected \[32, 64\], found \[64, 64\]/));
});

test("loadModel: corrupt safetensors", async () => {
  const d = copyOfGood();
  writeFileSync(join(d, "model.safetensors"), readFileSync(join(good, "model.safetensors")).subarray(0, 5000));
  await assert.rejects(loadModel(d), isLoadError("bad_safetensors", /past the end/));
});
