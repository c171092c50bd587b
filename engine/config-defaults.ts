// What transformers assumes for each config.json field a checkpoint leaves out, per
// architecture: the keyword defaults of LlamaConfig, MistralConfig, Qwen2Config and
// Qwen3Config (transformers/models/<arch>/configuration_<arch>.py). The loader
// (engine/config.ts) and `hybridchat init` read this one table, so a checkpoint means the
// same thing to us as to transformers, and what init writes says so explicitly.
import type { JsonObject } from "./json-file.js";

export const SUPPORTED_ARCHITECTURES = [
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
  "Qwen3ForCausalLM",
] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

/**
 * A field's default: a value, or a rule over the config as read (`null` = transformers'
 * None, which the loader resolves: num_key_value_heads → num_attention_heads, head_dim →
 * hidden_size / num_attention_heads).
 */
export interface ArchDefaults {
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number | null;
  head_dim: number | null;
  hidden_act: string;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  /** Llama, Qwen3: bias on q/k/v AND o_proj. Qwen2 has q/k/v bias always (no flag), Mistral none. */
  attention_bias: boolean | null;
  /** Llama: bias on gate/up/down */
  mlp_bias: boolean | null;
  /** Mistral: every layer slides when set; Qwen2/3: only with use_sliding_window, from layer max_window_layers on */
  sliding_window: number | null;
  use_sliding_window: boolean | null;
  max_window_layers: number | null;
}

const QWEN2: ArchDefaults = {
  model_type: "qwen2",
  vocab_size: 151936,
  hidden_size: 4096,
  intermediate_size: 22016,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  head_dim: null,
  hidden_act: "silu",
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
  attention_bias: null,
  mlp_bias: null,
  sliding_window: 4096,
  use_sliding_window: false,
  max_window_layers: 28,
};

export const ARCH_DEFAULTS: Record<Architecture, ArchDefaults> = {
  LlamaForCausalLM: {
    model_type: "llama",
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: null,
    head_dim: null,
    hidden_act: "silu",
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    sliding_window: null,
    use_sliding_window: null,
    max_window_layers: null,
  },
  MistralForCausalLM: {
    model_type: "mistral",
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: null,
    hidden_act: "silu",
    max_position_embeddings: 4096 * 32,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    attention_bias: null,
    mlp_bias: null,
    sliding_window: 4096,
    use_sliding_window: null,
    max_window_layers: null,
  },
  Qwen2ForCausalLM: QWEN2,
  // Qwen3Config is Qwen2Config's with a fixed head_dim and the Llama attention_bias flag
  Qwen3ForCausalLM: { ...QWEN2, model_type: "qwen3", head_dim: 128, attention_bias: false },
};

export function isSupportedArchitecture(a: string): a is Architecture {
  return (SUPPORTED_ARCHITECTURES as readonly string[]).includes(a);
}

/**
 * The config with every field of the architecture's table that it leaves out written in
 * (None-valued defaults stay out: the loader's rule for them is transformers' own).
 * `hybridchat init` writes this, so the checkpoint states what the code that made it assumed.
 */
export function withArchDefaults(raw: JsonObject): JsonObject {
  const archs = raw.architectures;
  const arch = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : null;
  if (arch === null || !isSupportedArchitecture(arch)) return { ...raw };
  const out: JsonObject = { ...raw };
  for (const [key, value] of Object.entries(ARCH_DEFAULTS[arch])) {
    if (value === null || key in out) continue;
    // rope_parameters (transformers 5) already carries the theta
    if (key === "rope_theta" && out.rope_parameters !== undefined) continue;
    out[key] = value;
  }
  return out;
}
