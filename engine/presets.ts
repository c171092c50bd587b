// Named model shapes for `hybridchat init --preset NAME`: HF config.json bodies (without the
// dtype fields, which the writer fills in).
import type { JsonObject } from "./json-file.js";

const llama = (o: JsonObject): JsonObject => ({
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_act: "silu",
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  attention_bias: false,
  mlp_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
  ...o,
});

export const PRESETS: Record<string, JsonObject> = {
  /** the built-in demo model `hybridchat serve` uses without --model */
  tiny: llama({
    hidden_size: 64,
    intermediate_size: 176,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 512,
    max_position_embeddings: 512,
    tie_word_embeddings: true,
  }),
  /** the exact shape of ../shared/models/stories260K */
  "stories260K-shape": llama({
    hidden_size: 64,
    intermediate_size: 172,
    num_hidden_layers: 5,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 8,
    vocab_size: 512,
    max_position_embeddings: 512,
    tie_word_embeddings: true,
  }),
  /** the benchmark model of BENCH_ANCHORS.md (llama2.c's stories110M shape) */
  "110M": llama({
    hidden_size: 768,
    intermediate_size: 2048,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    num_key_value_heads: 12,
    vocab_size: 32000,
    max_position_embeddings: 1024,
    tie_word_embeddings: true,
  }),
  /** Qwen2 layout: q/k/v bias, untied head */
  "qwen2-tiny": {
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    hidden_act: "silu",
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 512,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    tie_word_embeddings: false,
    use_sliding_window: false,
    sliding_window: null,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  /** Qwen3 layout: q/k RMSNorm, head_dim not hidden/heads */
  "qwen3-tiny": {
    architectures: ["Qwen3ForCausalLM"],
    model_type: "qwen3",
    hidden_act: "silu",
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 32,
    vocab_size: 512,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    attention_bias: false,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  /** Llama 3 layout: llama3 rope scaling (all three frequency bands hit), GQA 4:1, untied head */
  "llama3-tiny": llama({
    hidden_size: 64,
    intermediate_size: 160,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    head_dim: 16,
    vocab_size: 512,
    max_position_embeddings: 256,
    rope_theta: 500000.0,
    rope_scaling: { rope_type: "llama3", factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 64 },
    tie_word_embeddings: false,
  }),
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

export function preset(name: string): JsonObject {
  const p = PRESETS[name];
  if (!p) throw new Error(`unknown preset "${name}"; known: ${presetNames().join(", ")}`);
  return structuredClone(p);
}
