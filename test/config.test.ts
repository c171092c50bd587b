import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, parseConfig, SUPPORTED_ARCHITECTURES } from "../engine/config.js";
import { ModelLoadError } from "../engine/load-errors.js";
import { PRESETS } from "../engine/presets.js";
import { storiesDir } from "./test-model.js";


const base = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  vocab_size: 1000,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
};

function loadError(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ModelLoadError, `expected ModelLoadError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  });
}

test("stories260K config resolves to the README's numbers", () => {
  const c = loadConfig(storiesDir);
  assert.deepEqual(
    { ...c },
    {
      architecture: "LlamaForCausalLM",
      modelType: "llama",
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
      vocabSize: 512,
      maxPositions: 512,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeScaling: null,
      attentionBias: false,
      qkNorm: false,
      tieWordEmbeddings: true,
      torchDtype: "float32",
    },
  );
});

test("defaults: head_dim = hidden/heads, kv heads = heads, untied, theta 10000", () => {
  const c = parseConfig(base);
  assert.equal(c.headDim, 32);
  assert.equal(c.numKvHeads, 8);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.attentionBias, false);
  assert.equal(c.qkNorm, false);
});

test("explicit head_dim and GQA are respected; heads not a multiple of kv heads is rejected", () => {
  const c = parseConfig({ ...base, head_dim: 64, num_key_value_heads: 2 });
  assert.equal(c.headDim, 64);
  assert.equal(c.numKvHeads, 2);
  loadError(() => parseConfig({ ...base, num_key_value_heads: 3 }), "bad_json", /multiple of num_key_value_heads 3/);
});

test("Qwen2 always has q/k/v bias; Qwen3 has q/k norm and no bias by default", () => {
  const q2 = parseConfig({ ...base, architectures: ["Qwen2ForCausalLM"], model_type: "qwen2" });
  assert.equal(q2.attentionBias, true);
  assert.equal(q2.qkNorm, false);
  const q3 = parseConfig({ ...base, architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", head_dim: 128 });
  assert.equal(q3.attentionBias, false);
  assert.equal(q3.qkNorm, true);
  assert.equal(q3.headDim, 128);
  // attention_bias on Llama/Qwen3 also biases o_proj, which the engine has no slot for
  loadError(() => parseConfig({ ...q3Raw(), attention_bias: true }), "unsupported_architecture", /attention_bias/);
});

function q3Raw() {
  return { ...base, architectures: ["Qwen3ForCausalLM"], model_type: "qwen3" };
}

test("Mistral sliding window: null keeps max positions, a smaller window caps them", () => {
  const m = { ...base, architectures: ["MistralForCausalLM"], model_type: "mistral", max_position_embeddings: 32768 };
  assert.equal(parseConfig({ ...m, sliding_window: null }).maxPositions, 32768);
  assert.equal(parseConfig({ ...m, sliding_window: 4096 }).maxPositions, 4096);
  // Qwen2 only slides when use_sliding_window is set
  const q = { ...m, architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", sliding_window: 4096 };
  assert.equal(parseConfig(q).maxPositions, 32768);
  assert.equal(parseConfig({ ...q, use_sliding_window: true }).maxPositions, 4096);
});

test("tie_word_embeddings comes from the file", () => {
  assert.equal(parseConfig({ ...base, tie_word_embeddings: true }).tieWordEmbeddings, true);
  assert.equal(parseConfig({ ...base, tie_word_embeddings: false }).tieWordEmbeddings, false);
});

test("rope_scaling: linear, llama3 (both key spellings), default; others rejected", () => {
  assert.deepEqual(parseConfig({ ...base, rope_scaling: { type: "linear", factor: 4 } }).ropeScaling, { type: "linear", factor: 4 });
  assert.deepEqual(
    parseConfig({
      ...base,
      rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    }).ropeScaling,
    { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
  );
  assert.equal(parseConfig({ ...base, rope_scaling: { rope_type: "default" } }).ropeScaling, null);
  loadError(() => parseConfig({ ...base, rope_scaling: { type: "yarn", factor: 4 } }), "unsupported_architecture", /yarn/);
  loadError(() => parseConfig({ ...base, rope_scaling: { type: "linear" } }), "bad_json", /factor/);
});

test("unsupported architecture names itself and lists the supported ones", () => {
  loadError(() => parseConfig({ ...base, architectures: ["GPT2LMHeadModel"] }), "unsupported_architecture", /GPT2LMHeadModel.*LlamaForCausalLM.*MistralForCausalLM.*Qwen2ForCausalLM.*Qwen3ForCausalLM/);
  loadError(() => parseConfig({ ...base, architectures: undefined }), "unsupported_architecture", /architectures/);
  loadError(() => parseConfig({ ...base, hidden_act: "gelu" }), "unsupported_architecture", /gelu/);
  assert.equal(SUPPORTED_ARCHITECTURES.length, 4);
});

test("missing or malformed fields are bad_json naming the key", () => {
  const { hidden_size: _drop, ...noHidden } = base;
  loadError(() => parseConfig(noHidden, "x/config.json"), "bad_json", /x\/config\.json.*hidden_size/);
  loadError(() => parseConfig({ ...base, vocab_size: "many" }), "bad_json", /vocab_size/);
});

test("loadConfig: a missing file and bad JSON are distinct errors naming the file", () => {
  const dir = mkdtempSync(join(tmpdir(), "hc-config-"));
  loadError(() => loadConfig(dir), "missing_file", /config\.json/);
  writeFileSync(join(dir, "config.json"), "{ not json");
  loadError(() => loadConfig(dir), "bad_json", /config\.json/);
  writeFileSync(join(dir, "config.json"), "[1, 2]");
  loadError(() => loadConfig(dir), "bad_json", /object/);
  rmSync(dir, { recursive: true, force: true });
});

test("every preset is a valid config; 110M has the benchmark shape", () => {
  for (const [name, raw] of Object.entries(PRESETS)) assert.doesNotThrow(() => parseConfig(raw, name), name);
  const c = parseConfig(PRESETS["110M"]);
  assert.deepEqual([c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.intermediateSize, c.vocabSize, c.maxPositions, c.tieWordEmbeddings], [768, 12, 12, 12, 2048, 32000, 1024, true]);
});
