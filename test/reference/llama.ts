// Float64 reference of a Hugging Face Llama-family forward pass (LlamaForCausalLM,
// plus Qwen2 q/k/v biases and Qwen3 per-head q/k RMSNorm before RoPE), for one
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
}

/** Weights by engine name (native/index.ts TensorRef names), decoded to float64. */
export type RefWeights = Map<string, Float64Array>;

function get(w: RefWeights, name: string): Float64Array {
  const t = w.get(name);
  if (!t) throw new Error(`reference: missing weight ${name}`);
  return t;
}

/** logits[T,V] for every position of `tokens`. */
export function llamaForwardRef(cfg: RefConfig, w: RefWeights, tokens: readonly number[]): Float64Array {
  const { C, I, NH, NKV, HD, V, eps } = cfg;
  const T = tokens.length;
  let x = new Float64Array(T * C);
  const embed = get(w, "embed");
  tokens.forEach((tok, t) => x.set(embed.subarray(tok * C, tok * C + C), t * C));
  const pos = Array.from({ length: T }, (_, t) => t);
  const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]!);

  for (let l = 0; l < cfg.L; l++) {
    const p = `L${l}.`;
    const h = rmsnormRef(x, get(w, p + "attn_norm"), T, C, eps);
    let q = matmulRef(h, get(w, p + "q"), cfg.attentionBias ? get(w, p + "q_bias") : null, T, NH * HD, C);
    let k = matmulRef(h, get(w, p + "k"), cfg.attentionBias ? get(w, p + "k_bias") : null, T, NKV * HD, C);
    const v = matmulRef(h, get(w, p + "v"), cfg.attentionBias ? get(w, p + "v_bias") : null, T, NKV * HD, C);
    if (cfg.qkNorm) {
      q = rmsnormRef(q, get(w, p + "q_norm"), T * NH, HD, eps);
      k = rmsnormRef(k, get(w, p + "k_norm"), T * NKV, HD, eps);
    }
    q = ropeRef(q, pos, cfg.invFreq, T, NH, HD, cfg.ropeScaling);
    k = ropeRef(k, pos, cfg.invFreq, T, NKV, HD, cfg.ropeScaling);
    const att = attentionRef(q, k, v, T, T, NH, NKV, HD);
    x = add(x, matmulRef(att, get(w, p + "o"), null, T, C, NH * HD));
    const h2 = rmsnormRef(x, get(w, p + "mlp_norm"), T, C, eps);
    const gate = matmulRef(h2, get(w, p + "gate"), null, T, I, C);
    const up = matmulRef(h2, get(w, p + "up"), null, T, I, C);
    x = add(x, matmulRef(swigluRef(gate, up), get(w, p + "down"), null, T, C, I));
  }
  const xn = rmsnormRef(x, get(w, "final_norm"), T, C, eps);
  return matmulRef(xn, get(w, cfg.tied ? "embed" : "lm_head"), null, T, V, C);
}
