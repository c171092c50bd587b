// HF config.json -> ModelConfig: every per-architecture quirk of the Llama family is resolved here,
// so nothing downstream needs to know which architecture a checkpoint came from. A field the
// file leaves out takes transformers' default for its architecture (engine/config-defaults.ts).
import { join } from "node:path";
import type { ModelConfig } from "./types.js";
import { ModelLoadError } from "./load-errors.js";
import { readJsonFile, type JsonObject } from "./json-file.js";
import { ARCH_DEFAULTS, isSupportedArchitecture, SUPPORTED_ARCHITECTURES } from "./config-defaults.js";
import { parseRope } from "./config-rope.js";

export { SUPPORTED_ARCHITECTURES } from "./config-defaults.js";

/** Reads and resolves `<dir>/config.json`. */
export function loadConfig(dir: string): ModelConfig {
  const file = join(dir, "config.json");
  return parseConfig(readJsonFile(file), file);
}

/** Resolves a parsed config.json. `source` only names the file in error messages. */
export function parseConfig(raw: JsonObject, source = "config.json"): ModelConfig {
  const bad = (msg: string): never => {
    throw new ModelLoadError(`${source}: ${msg}`, "bad_json");
  };
  const unsupported = (msg: string): never => {
    throw new ModelLoadError(`${source}: ${msg}`, "unsupported_architecture");
  };

  const archs = raw.architectures;
  const architecture = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : null;
  if (architecture === null) {
    return unsupported(`no "architectures" entry; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  if (!isSupportedArchitecture(architecture)) {
    return unsupported(`unsupported architecture "${architecture}"; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  const d = ARCH_DEFAULTS[architecture];
  const has = (key: string) => raw[key] !== undefined && raw[key] !== null;
  const int = (key: string, fallback: number): number => {
    if (!has(key)) return fallback;
    const v = raw[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) return bad(`"${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (key: string, fallback: number): number => {
    if (!has(key)) return fallback;
    const v = raw[key];
    if (typeof v !== "number" || !Number.isFinite(v)) return bad(`"${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    if (!has(key)) return fallback;
    const v = raw[key];
    if (typeof v !== "boolean") return bad(`"${key}" must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const modelType = typeof raw.model_type === "string" ? raw.model_type : d.model_type;

  const act = raw.hidden_act ?? raw.hidden_activation ?? d.hidden_act;
  if (act !== "silu") return unsupported(`hidden_act "${String(act)}" is not supported (only "silu")`);

  const hiddenSize = int("hidden_size", d.hidden_size);
  const numHeads = int("num_attention_heads", d.num_attention_heads);
  const numKvHeads = int("num_key_value_heads", d.num_key_value_heads ?? numHeads);
  if (numHeads % numKvHeads !== 0) return bad(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  let headDim: number;
  if (has("head_dim")) headDim = int("head_dim", 0);
  else if (d.head_dim !== null) headDim = d.head_dim;
  else {
    if (hiddenSize % numHeads !== 0) return bad(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}; set head_dim`);
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) return bad(`head_dim ${headDim} must be even for RoPE`);
  const numLayers = int("num_hidden_layers", d.num_hidden_layers);

  // Biases. Qwen2 always has q/k/v bias and no flag; Llama's and Qwen3's attention_bias puts
  // a bias on q/k/v and o_proj; Llama's mlp_bias on gate/up/down. Mistral has none.
  const attnFlag = d.attention_bias === null ? false : bool("attention_bias", d.attention_bias);
  const attentionBias = architecture === "Qwen2ForCausalLM" || attnFlag;
  const oBias = attnFlag;
  const mlpBias = d.mlp_bias === null ? false : bool("mlp_bias", d.mlp_bias);

  const maxPositions = int("max_position_embeddings", d.max_position_embeddings);
  const layerWindows = slidingWindows(raw, architecture === "MistralForCausalLM", d.sliding_window, d.use_sliding_window, d.max_window_layers, numLayers, bad);
  const rope = parseRope(raw, d.rope_theta, maxPositions, source);

  const dtypeRaw = raw.torch_dtype ?? raw.dtype;
  return {
    architecture,
    modelType,
    hiddenSize,
    intermediateSize: int("intermediate_size", d.intermediate_size),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int("vocab_size", d.vocab_size),
    maxPositions,
    rmsNormEps: num("rms_norm_eps", d.rms_norm_eps),
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    attentionBias,
    oBias,
    mlpBias,
    qkNorm: architecture === "Qwen3ForCausalLM",
    layerWindows,
    tieWordEmbeddings: bool("tie_word_embeddings", d.tie_word_embeddings),
    torchDtype: typeof dtypeRaw === "string" ? dtypeRaw : null,
  };
}

/**
 * Each layer's sliding window (0 = full causal attention), as transformers decides it:
 * Mistral slides every layer when `sliding_window` is set; Qwen2/Qwen3 only with
 * `use_sliding_window`, and then the layers from `max_window_layers` on (or those an
 * explicit `layer_types` marks "sliding_attention").
 */
function slidingWindows(
  raw: JsonObject,
  everyLayer: boolean,
  defWindow: number | null,
  defUse: boolean | null,
  defMaxWindowLayers: number | null,
  L: number,
  bad: (msg: string) => never,
): number[] {
  const w = raw.sliding_window === undefined ? defWindow : raw.sliding_window;
  if (w !== null && (typeof w !== "number" || !Number.isInteger(w) || w <= 0)) return bad(`"sliding_window" must be a positive integer or null`);
  const use = everyLayer ? true : raw.use_sliding_window === undefined || raw.use_sliding_window === null ? defUse === true : raw.use_sliding_window === true;
  const window = use ? w : null;
  const types = raw.layer_types;
  if (Array.isArray(types)) {
    if (types.length !== L || types.some((t) => t !== "full_attention" && t !== "sliding_attention")) {
      return bad(`"layer_types" must list ${L} entries, each "full_attention" or "sliding_attention"`);
    }
    return types.map((t) => (t === "sliding_attention" && window !== null ? window : 0));
  }
  if (window === null) return new Array<number>(L).fill(0);
  if (everyLayer) return new Array<number>(L).fill(window);
  const from = raw.max_window_layers === undefined || raw.max_window_layers === null ? (defMaxWindowLayers ?? 0) : raw.max_window_layers;
  if (typeof from !== "number" || !Number.isInteger(from) || from < 0) return bad(`"max_window_layers" must be a non-negative integer`);
  return Array.from({ length: L }, (_, i) => (i >= from ? window : 0));
}
