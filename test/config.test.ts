import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, parseConfig, SUPPORTED_ARCHITECTURES } from "../engine/config.js";
import { ModelLoadError } from "../engine/load-errors.js";
import { PRESETS } from "../engine/presets.js";
import { withArchDefaults } from "../engine/config-defaults.js";
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
      oBias: false,
      mlpBias: false,
      qkNorm: false,
      layerWindows: [0, 0, 0, 0, 0],
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

test("Qwen2 always has q/k/v bias; Qwen3 has q/k norm and no bias by default; Llama/Qwen3 attention_bias biases o_proj too", () => {
  const q2 = parseConfig({ ...base, architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", num_key_value_heads: 8 });
  assert.equal(q2.attentionBias, true);
  assert.equal(q2.qkNorm, false);
  const q3 = parseConfig({ ...q3Raw(), head_dim: 128 });
  assert.equal(q3.attentionBias, false);
  assert.equal(q3.qkNorm, true);
  assert.equal(q3.headDim, 128);
  const q3b = parseConfig({ ...q3Raw(), attention_bias: true });
  assert.deepEqual([q3b.attentionBias, q3b.oBias, q3b.mlpBias], [true, true, false]);
  const llb = parseConfig({ ...base, attention_bias: true, mlp_bias: true });
  assert.deepEqual([llb.attentionBias, llb.oBias, llb.mlpBias], [true, true, true]);
  // Qwen2's bias is on q/k/v only, whatever the file says
  assert.deepEqual([q2.attentionBias, q2.oBias, q2.mlpBias], [true, false, false]);
});

test("defaults follow transformers per architecture: Qwen3 head_dim 128, Mistral 8 kv heads, Qwen2/3 32768 positions", () => {
  const { head_dim: _h, ...noHeadDim } = q3Raw() as Record<string, unknown>;
  assert.equal(parseConfig(noHeadDim).headDim, 128);
  const m = parseConfig({ ...base, architectures: ["MistralForCausalLM"], model_type: "mistral", max_position_embeddings: undefined });
  assert.deepEqual([m.numKvHeads, m.maxPositions, m.rmsNormEps], [8, 131072, 1e-5]);
  const q2 = parseConfig({ ...base, architectures: ["Qwen2ForCausalLM"], max_position_embeddings: undefined, num_attention_heads: 32 });
  assert.deepEqual([q2.maxPositions, q2.numKvHeads], [32768, 32]); // Qwen2Config: num_key_value_heads=32
  loadError(() => parseConfig({ ...base, architectures: ["Qwen2ForCausalLM"] }), "bad_json", /num_key_value_heads 32/);
  assert.equal(parseConfig({ ...base, max_position_embeddings: undefined, rms_norm_eps: undefined }).rmsNormEps, 1e-6);
  const { hidden_size: _c, vocab_size: _v, ...bare } = base;
  const l = parseConfig(bare);
  assert.deepEqual([l.hiddenSize, l.vocabSize, l.headDim], [4096, 32000, 4096 / 8]);
  // what `hybridchat init` writes: the table's values made explicit, None-valued ones left to the rule
  const filled = withArchDefaults(noHeadDim);
  assert.equal(filled.head_dim, 128);
  assert.equal(filled.rope_theta, 10000);
  assert.equal("num_key_value_heads" in withArchDefaults({ architectures: ["LlamaForCausalLM"] }), false);
  assert.equal(parseConfig(filled).headDim, parseConfig(noHeadDim).headDim);
});

function q3Raw() {
  return { ...base, architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", num_key_value_heads: 8 };
}

test("sliding window: per-layer windows, never a cap on the context", () => {
  const m = { ...base, architectures: ["MistralForCausalLM"], model_type: "mistral", max_position_embeddings: 32768 };
  assert.deepEqual(parseConfig({ ...m, sliding_window: null }).layerWindows, [0, 0]);
  const mw = parseConfig({ ...m, sliding_window: 4096 });
  assert.deepEqual([mw.maxPositions, mw.layerWindows], [32768, [4096, 4096]]);
  // Mistral's default window is on (MistralConfig: sliding_window=4096)
  assert.deepEqual(parseConfig(m).layerWindows, [4096, 4096]);
  // Qwen2 only slides with use_sliding_window, and from layer max_window_layers on
  const q = { ...m, architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", num_hidden_layers: 4, num_key_value_heads: 8, sliding_window: 4096 };
  assert.deepEqual(parseConfig(q).layerWindows, [0, 0, 0, 0]);
  assert.deepEqual(parseConfig({ ...q, use_sliding_window: true, max_window_layers: 2 }).layerWindows, [0, 0, 4096, 4096]);
  assert.deepEqual(parseConfig({ ...q, use_sliding_window: true }).layerWindows, [0, 0, 0, 0]); // default max_window_layers 28
  // an explicit layer_types list (transformers >= 4.54 writes it) decides
  const lt = { ...q, use_sliding_window: true, layer_types: ["sliding_attention", "full_attention", "sliding_attention", "full_attention"] };
  assert.deepEqual(parseConfig(lt).layerWindows, [4096, 0, 4096, 0]);
  loadError(() => parseConfig({ ...lt, layer_types: ["full_attention"] }), "bad_json", /layer_types/);
  loadError(() => parseConfig({ ...m, sliding_window: -3 }), "bad_json", /sliding_window/);
});

test("rope_parameters (transformers 5) replaces rope_theta/rope_scaling; unknown types are refused by name", () => {
  const t5 = { ...base, rope_parameters: { rope_type: "default", rope_theta: 500000 } };
  assert.deepEqual([parseConfig(t5).ropeTheta, parseConfig(t5).ropeScaling], [500000, null]);
  const l3 = parseConfig({
    ...base,
    rope_theta: 1, // a stale top-level value loses to rope_parameters
    rope_parameters: { rope_type: "llama3", rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  });
  assert.equal(l3.ropeTheta, 500000);
  assert.deepEqual(l3.ropeScaling, { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
  assert.deepEqual(parseConfig({ ...base, rope_parameters: { rope_type: "linear", rope_theta: 20000, factor: 2 } }).ropeScaling, { type: "linear", factor: 2 });
  // theta only at the top level still counts; per-layer-type parameters that agree are read
  assert.equal(parseConfig({ ...base, rope_theta: 7, rope_parameters: { rope_type: "default" } }).ropeTheta, 7);
  const same = { rope_type: "default", rope_theta: 1e6 };
  assert.equal(parseConfig({ ...base, rope_parameters: { full_attention: same, sliding_attention: same } }).ropeTheta, 1e6);
  loadError(() => parseConfig({ ...base, rope_parameters: { full_attention: same, sliding_attention: { ...same, rope_theta: 1e4 } } }), "unsupported_architecture", /per-layer/);
  for (const type of ["yarn", "dynamic", "longrope"]) {
    loadError(() => parseConfig({ ...base, rope_parameters: { rope_type: type, rope_theta: 1e4, factor: 4 } }), "unsupported_architecture", new RegExp(`"${type}"`));
  }
  loadError(() => parseConfig({ ...base, rope_parameters: { rope_type: "default", rope_theta: 1e4, partial_rotary_factor: 0.5 } }), "unsupported_architecture", /partial_rotary_factor/);
  loadError(() => parseConfig({ ...base, rope_parameters: { rope_type: "default", rope_theta: "big" } }), "bad_json", /rope_theta/);
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

test("malformed fields are bad_json naming the key", () => {
  loadError(() => parseConfig({ ...base, hidden_size: 0 }, "x/config.json"), "bad_json", /x\/config\.json.*hidden_size/);
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
