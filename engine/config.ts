// HF config.json -> ModelConfig: every per-architecture quirk of the Llama family is resolved here,
// so nothing downstream needs to know which architecture a checkpoint came from.
import { join } from "node:path";
import type { ModelConfig, RopeScaling } from "./types.js";
import { ModelLoadError } from "./load-errors.js";
import { readJsonFile, type JsonObject } from "./json-file.js";

export const SUPPORTED_ARCHITECTURES = [
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
  "Qwen3ForCausalLM",
] as const;

/** Reads and resolves `<dir>/config.json`. */
export function loadConfig(dir: string): ModelConfig {
  const file = join(dir, "config.json");
  return parseConfig(readJsonFile(file), file);
}

/**
 * Resolves a parsed config.json. `source` only names the file in error messages.
 *
 * Mistral/Qwen2 sliding-window attention is implemented by capping `maxPositions` at the
 * window: for sequences no longer than the window, sliding-window and full causal attention
 * are the same computation, so the engine stays exact by never going past it.
 */
export function parseConfig(raw: JsonObject, source = "config.json"): ModelConfig {
  const bad = (msg: string): never => {
    throw new ModelLoadError(`${source}: ${msg}`, "bad_json");
  };
  const unsupported = (msg: string): never => {
    throw new ModelLoadError(`${source}: ${msg}`, "unsupported_architecture");
  };
  const int = (key: string, fallback?: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      return bad(`missing "${key}"`);
    }
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) return bad(`"${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) return bad(`"${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") return bad(`"${key}" must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };

  const archs = raw.architectures;
  const architecture = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : null;
  if (architecture === null) {
    return unsupported(`no "architectures" entry; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(architecture)) {
    return unsupported(`unsupported architecture "${architecture}"; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  const defaultType = { LlamaForCausalLM: "llama", MistralForCausalLM: "mistral", Qwen2ForCausalLM: "qwen2", Qwen3ForCausalLM: "qwen3" }[
    architecture as (typeof SUPPORTED_ARCHITECTURES)[number]
  ];
  const modelType = typeof raw.model_type === "string" ? raw.model_type : defaultType;

  const act = raw.hidden_act ?? raw.hidden_activation ?? "silu";
  if (act !== "silu") return unsupported(`hidden_act "${String(act)}" is not supported (only "silu")`);
  if (bool("mlp_bias", false)) return unsupported(`mlp_bias true is not supported`);

  const hiddenSize = int("hidden_size");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) return bad(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  let headDim: number;
  if (raw.head_dim === undefined || raw.head_dim === null) {
    if (hiddenSize % numHeads !== 0) return bad(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}; set head_dim`);
    headDim = hiddenSize / numHeads;
  } else headDim = int("head_dim");
  if (headDim % 2 !== 0) return bad(`head_dim ${headDim} must be even for RoPE`);

  // q/k/v bias: Qwen2 always has it (its config has no flag); Llama and Qwen3 put the same
  // flag on o_proj too, which the native layer has no slot for.
  let attentionBias: boolean;
  if (architecture === "Qwen2ForCausalLM") attentionBias = true;
  else {
    const flag = bool("attention_bias", false);
    if (flag) return unsupported(`attention_bias true (bias on o_proj) is not supported for ${architecture}`);
    attentionBias = false;
  }

  let maxPositions = int("max_position_embeddings", 2048);
  const window = raw.sliding_window;
  const windowOn = architecture === "Qwen2ForCausalLM" || architecture === "Qwen3ForCausalLM" ? raw.use_sliding_window === true : true;
  if (windowOn && window !== undefined && window !== null) {
    if (typeof window !== "number" || !Number.isInteger(window) || window <= 0) return bad(`"sliding_window" must be a positive integer or null`);
    maxPositions = Math.min(maxPositions, window);
  }

  const dtypeRaw = raw.torch_dtype ?? raw.dtype;
  return {
    architecture,
    modelType,
    hiddenSize,
    intermediateSize: int("intermediate_size"),
    numLayers: int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int("vocab_size"),
    maxPositions,
    rmsNormEps: num("rms_norm_eps", 1e-6),
    ropeTheta: num("rope_theta", 10000),
    ropeScaling: parseRopeScaling(raw.rope_scaling, maxPositions, source),
    attentionBias,
    qkNorm: architecture === "Qwen3ForCausalLM",
    // HF's default for every architecture here is false: trust the file, not the family.
    tieWordEmbeddings: bool("tie_word_embeddings", false),
    torchDtype: typeof dtypeRaw === "string" ? dtypeRaw : null,
  };
}

function parseRopeScaling(v: unknown, maxPositions: number, source: string): RopeScaling | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "object" || Array.isArray(v)) throw new ModelLoadError(`${source}: "rope_scaling" must be an object or null`, "bad_json");
  const o = v as JsonObject;
  const type = o.rope_type ?? o.type;
  const factorOf = (key: string, fallback?: number): number => {
    const f = o[key] ?? fallback;
    if (typeof f !== "number" || !Number.isFinite(f) || f <= 0) {
      throw new ModelLoadError(`${source}: rope_scaling.${key} must be a positive number, got ${JSON.stringify(o[key])}`, "bad_json");
    }
    return f;
  };
  if (type === "default") return null;
  if (type === "linear") return { type: "linear", factor: factorOf("factor") };
  if (type === "llama3") {
    return {
      type: "llama3",
      factor: factorOf("factor"),
      lowFreqFactor: factorOf("low_freq_factor"),
      highFreqFactor: factorOf("high_freq_factor"),
      originalMaxPositions: factorOf("original_max_position_embeddings", maxPositions),
    };
  }
  throw new ModelLoadError(
    `${source}: rope_scaling type ${JSON.stringify(type)} is not supported (supported: "default", "linear", "llama3")`,
    "unsupported_architecture",
  );
}
