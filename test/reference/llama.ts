// Float64 reference of a Hugging Face Llama-family forward pass (LlamaForCausalLM,
// plus Qwen2 q/k/v biases, Llama's attention_bias (o_proj too) and mlp_bias, Mistral /
// Qwen2 sliding-window layers, and Qwen3 per-head q/k RMSNorm before RoPE), for one
// sequence at positions 0..T-1, written from the HF modeling code's semantics and
// sharing nothing with the C++ engine.
import { attentionRef, matmulRef, rmsnormRef, ropeRef, swigluRef } from "./ops.js";

export interface RefConfig {
  C: number; // hidden
  I: number; // intermediate
  L: number;
  NH: number;
  NKV: number;
  HD: number;
  V: number;
  eps: number;
  invFreq: ArrayLike<number>; // [HD/2]
  ropeScaling: number;
  attentionBias: boolean;
  qkNorm: boolean;
  tied: boolean;
  /** bias on o_proj ("L{i}.o_bias") */
  oBias?: boolean;
  /** bias on gate/up/down ("L{i}.gate_bias" …) */
  mlpBias?: boolean;
  /** per layer: 0 = full causal attention, W = each query sees its last W keys */
  windows?: readonly number[];
}

/** Weights by engine name (native/index.ts TensorRef names), decoded to float64. */
export type RefWeights = Map<string, Float64Array>;

function get(w: RefWeights, name: string): Float64Array {
  const t = w.get(name);
  if (!t) throw new Error(`reference: missing weight ${name}`);
  return t;
}

/**
 * LoRA as PEFT applies it (no dropout): a targeted linear's output gains
 * scale · (x·Aᵀ)·Bᵀ, with A [rank,in] and B [out,rank] keyed "L{i}.{target}".
 */
export interface RefLora {
  rank: number;
  scale: number;
  A: Map<string, Float64Array>;
  B: Map<string, Float64Array>;
}

/** logits[T,V] for every position of `tokens` (with `lora` on its targeted linears, if given). */
export function llamaForwardRef(cfg: RefConfig, w: RefWeights, tokens: readonly number[], lora: RefLora | null = null): Float64Array {
  const xn = llamaHiddenRef(cfg, w, tokens, lora);
  return matmulRef(xn, get(w, cfg.tied ? "embed" : "lm_head"), null, tokens.length, cfg.V, cfg.C);
}

/** The final-normed hidden state [T,C] the LM head (and a value head) reads. */
export function llamaHiddenRef(cfg: RefConfig, w: RefWeights, tokens: readonly number[], lora: RefLora | null = null): Float64Array {
  const { C, I, NH, NKV, HD, eps } = cfg;
  const T = tokens.length;
  let x = new Float64Array(T * C);
  const embed = get(w, "embed");
  tokens.forEach((tok, t) => x.set(embed.subarray(tok * C, tok * C + C), t * C));
  const pos = Array.from({ length: T }, (_, t) => t);
  const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]!);
  const linear = (x: Float64Array, name: string, bias: Float64Array | null, out: number, inp: number) => {
    const y = matmulRef(x, get(w, name), bias, T, out, inp);
    const A = lora?.A.get(name), B = lora?.B.get(name);
    if (!lora || !A || !B) return y;
    const u = matmulRef(x, A, null, T, lora.rank, inp);
    const d = matmulRef(u, B, null, T, out, lora.rank);
    return y.map((v, i) => v + lora.scale * d[i]!);
  };

  for (let l = 0; l < cfg.L; l++) {
    const p = `L${l}.`;
    const h = rmsnormRef(x, get(w, p + "attn_norm"), T, C, eps);
    let q = linear(h, p + "q", cfg.attentionBias ? get(w, p + "q_bias") : null, NH * HD, C);
    let k = linear(h, p + "k", cfg.attentionBias ? get(w, p + "k_bias") : null, NKV * HD, C);
    const v = linear(h, p + "v", cfg.attentionBias ? get(w, p + "v_bias") : null, NKV * HD, C);
    if (cfg.qkNorm) {
      q = rmsnormRef(q, get(w, p + "q_norm"), T * NH, HD, eps);
      k = rmsnormRef(k, get(w, p + "k_norm"), T * NKV, HD, eps);
    }
    q = ropeRef(q, pos, cfg.invFreq, T, NH, HD, cfg.ropeScaling);
    k = ropeRef(k, pos, cfg.invFreq, T, NKV, HD, cfg.ropeScaling);
    const att = attentionRef(q, k, v, T, T, NH, NKV, HD, cfg.windows?.[l] ?? 0);
    x = add(x, linear(att, p + "o", cfg.oBias ? get(w, p + "o_bias") : null, C, NH * HD));
    const h2 = rmsnormRef(x, get(w, p + "mlp_norm"), T, C, eps);
    const mb = (n: string) => (cfg.mlpBias ? get(w, p + n + "_bias") : null);
    const gate = linear(h2, p + "gate", mb("gate"), I, C);
    const up = linear(h2, p + "up", mb("up"), I, C);
    x = add(x, linear(swigluRef(gate, up), p + "down", mb("down"), C, I));
  }
  return rmsnormRef(x, get(w, "final_norm"), T, C, eps);
}
