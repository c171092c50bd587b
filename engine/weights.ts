// HF tensor names -> the canonical engine names of native/index.ts (TensorRef), with every
// tensor's presence and shape checked against the config before the native side sees it.
import { isBlockDType, type TensorRef } from "../native/index.js";
import type { ModelConfig } from "./types.js";
import { ModelLoadError } from "./load-errors.js";
import type { StoredTensor } from "./safetensors.js";

const LAYER_PARTS: Record<string, string> = {
  "input_layernorm.weight": "attn_norm",
  "self_attn.q_proj.weight": "q",
  "self_attn.k_proj.weight": "k",
  "self_attn.v_proj.weight": "v",
  "self_attn.o_proj.weight": "o",
  "self_attn.q_proj.bias": "q_bias",
  "self_attn.k_proj.bias": "k_bias",
  "self_attn.v_proj.bias": "v_bias",
  "self_attn.o_proj.bias": "o_bias",
  "mlp.gate_proj.bias": "gate_bias",
  "mlp.up_proj.bias": "up_bias",
  "mlp.down_proj.bias": "down_bias",
  "self_attn.q_norm.weight": "q_norm",
  "self_attn.k_norm.weight": "k_norm",
  "post_attention_layernorm.weight": "mlp_norm",
  "mlp.gate_proj.weight": "gate",
  "mlp.up_proj.weight": "up",
  "mlp.down_proj.weight": "down",
};
const TOP: Record<string, string> = {
  "model.embed_tokens.weight": "embed",
  "model.norm.weight": "final_norm",
  "lm_head.weight": "lm_head",
};
// The tensors a quantized checkpoint may store as blocks (quantize.ts picks from these).
export const LINEAR = /^L\d+\.(q|k|v|o|gate|up|down)$/;
const CANON_TO_HF_PART = Object.fromEntries(Object.entries(LAYER_PARTS).map(([hf, c]) => [c, hf]));
const CANON_TO_HF_TOP = Object.fromEntries(Object.entries(TOP).map(([hf, c]) => [c, hf]));

/** The HF name of a canonical tensor name (for messages and for the checkpoint writer). */
export function hfName(canonical: string): string {
  const m = /^L(\d+)\.(.+)$/.exec(canonical);
  if (m) return `model.layers.${m[1]}.${CANON_TO_HF_PART[m[2]]}`;
  return CANON_TO_HF_TOP[canonical];
}

/** Canonical name of an HF tensor name, or null when it is not a weight the engine knows. */
export function canonicalName(hf: string): string | null {
  if (hf in TOP) return TOP[hf];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  if (m && m[2] in LAYER_PARTS) return `L${Number(m[1])}.${LAYER_PARTS[m[2]]}`;
  return null;
}

/** Every tensor the config calls for, canonical name -> shape, in a stable order. */
export function expectedShapes(c: ModelConfig): Map<string, number[]> {
  const C = c.hiddenSize, I = c.intermediateSize, HD = c.headDim;
  const Q = c.numHeads * HD, KV = c.numKvHeads * HD;
  const m = new Map<string, number[]>();
  m.set("embed", [c.vocabSize, C]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `L${i}.`;
    m.set(p + "attn_norm", [C]);
    m.set(p + "q", [Q, C]);
    m.set(p + "k", [KV, C]);
    m.set(p + "v", [KV, C]);
    m.set(p + "o", [C, Q]);
    if (c.attentionBias) {
      m.set(p + "q_bias", [Q]);
      m.set(p + "k_bias", [KV]);
      m.set(p + "v_bias", [KV]);
    }
    if (c.oBias) m.set(p + "o_bias", [C]);
    if (c.qkNorm) {
      m.set(p + "q_norm", [HD]);
      m.set(p + "k_norm", [HD]);
    }
    m.set(p + "mlp_norm", [C]);
    m.set(p + "gate", [I, C]);
    m.set(p + "up", [I, C]);
    m.set(p + "down", [C, I]);
    if (c.mlpBias) {
      m.set(p + "gate_bias", [I]);
      m.set(p + "up_bias", [I]);
      m.set(p + "down_bias", [C]);
    }
  }
  m.set("final_norm", [C]);
  if (!c.tieWordEmbeddings) m.set("lm_head", [c.vocabSize, C]);
  return m;
}

// Buffers some exporters save beside the weights; HF recomputes them, so do we.
const IGNORED = /(^|\.)rotary_emb\.inv_freq$|\.masked_bias$|\.attn\.bias$/;

/**
 * Maps and validates a checkpoint's tensors. Errors name the HF tensor, its file, and the
 * expected vs actual shape. With tied embeddings a stored lm_head.weight is a copy of the
 * embedding (HF ties them on load) and is dropped.
 */
export function resolveWeights(config: ModelConfig, stored: readonly StoredTensor[], opts: { quantizedEmbedding?: boolean } = {}): TensorRef[] {
  const expected = expectedShapes(config);
  const found = new Map<string, TensorRef>();
  for (const t of stored) {
    if (IGNORED.test(t.name)) continue;
    const canon = canonicalName(t.name);
    if (canon === "lm_head" && config.tieWordEmbeddings) continue;
    const want = canon === null ? undefined : expected.get(canon);
    if (canon === null || want === undefined) {
      throw new ModelLoadError(
        `unexpected tensor "${t.name}" in ${t.file}: not part of a ${config.architecture} with ${config.numLayers} layers` +
          `${config.attentionBias ? "" : ", no q/k/v bias"}${config.oBias ? "" : ", no o_proj bias"}${config.mlpBias ? "" : ", no MLP bias"}${config.qkNorm ? "" : ", no q/k norm"}${config.tieWordEmbeddings ? ", tied embeddings" : ""}`,
        "unexpected_tensor",
      );
    }
    if (found.has(canon)) throw new ModelLoadError(`tensor "${t.name}" appears twice (again in ${t.file})`, "unexpected_tensor");
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new ModelLoadError(
        `shape mismatch for tensor "${t.name}" in ${t.file}: expected [${want.join(", ")}], found [${t.shape.join(", ")}]`,
        "shape_mismatch",
      );
    }
    // a GGUF's embedding (and the head) may be blocks too: the embedding gather dequantizes rows
    const quantizable = LINEAR.test(canon) || (opts.quantizedEmbedding === true && (canon === "embed" || canon === "lm_head"));
    if (isBlockDType(t.dtype) && !quantizable)
      throw new ModelLoadError(`tensor "${t.name}" in ${t.file} is ${t.dtype}: only the layers' linear weights may be quantized`, "bad_safetensors");
    const ref: TensorRef = { name: canon, file: t.file, offset: t.offset, dtype: t.dtype, shape: [...t.shape] };
    if (t.ropeHeads !== undefined) ref.ropeHeads = t.ropeHeads;
    found.set(canon, ref);
  }
  const out: TensorRef[] = [];
  for (const [canon, shape] of expected) {
    const ref = found.get(canon);
    if (!ref) {
      throw new ModelLoadError(`missing tensor "${hfName(canon)}" (shape [${shape.join(", ")}]) for ${config.architecture}`, "missing_tensor");
    }
    out.push(ref);
  }
  return out;
}
