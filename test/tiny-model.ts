// Tiny random Llama-family checkpoints for the native tests: a safetensors file in a temp
// dir (f32/bf16/f16, GQA, Qwen2 biases, Qwen3 q/k norms, tied or untied head), the
// ModelSpec and TensorRefs to open it natively, and the same weights in float64 for the
// reference in test/reference/llama.ts.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DType, ModelSpec, TensorRef } from "../native/index.js";
import type { Rng } from "./reference/check.js";
import { fromNumbers, toFloat64 } from "./reference/dtype.js";
import type { RefConfig, RefWeights } from "./reference/llama.js";

export interface Tiny {
  C: number; I: number; L: number; NH: number; NKV: number; HD: number; V: number;
  dtype: DType; bias: boolean; qkNorm: boolean; tied: boolean; ropeScaling: number;
  /** Llama attention_bias's o_proj bias; mlp_bias (gate/up/down) */
  oBias?: boolean; mlpBias?: boolean;
  /** per-layer sliding windows (0 = full attention) */
  windows?: number[];
}

const DTYPE_TAG: Record<DType, string> = { f32: "F32", bf16: "BF16", f16: "F16" };

/** Writes a safetensors file; returns TensorRefs with absolute offsets. */
export function writeSafetensors(file: string, tensors: { name: string; dtype: DType; shape: number[]; data: Float32Array | Uint16Array }[]): TensorRef[] {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: DTYPE_TAG[t.dtype], shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8); // data starts 8-byte aligned
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  const parts = [head, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
  writeFileSync(file, Buffer.concat(parts));
  const base = 8 + json.length;
  let o = 0;
  return tensors.map((t) => {
    const ref: TensorRef = { name: t.name, file, offset: base + o, dtype: t.dtype, shape: t.shape };
    o += t.data.byteLength;
    return ref;
  });
}

export function invFreq(HD: number): Float32Array {
  return Float32Array.from({ length: HD / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / HD));
}

export interface Built {
  spec: ModelSpec;
  tensors: TensorRef[];
  ref: RefConfig;
  weights: RefWeights;
}

export function buildTiny(dir: string, name: string, m: Tiny, rng: Rng): Built {
  const list: { name: string; dtype: DType; shape: number[]; data: Float32Array | Uint16Array }[] = [];
  const weights: RefWeights = new Map();
  // linear weights in the model dtype; norms and biases in f32 (as many checkpoints do)
  const add = (n: string, shape: number[], lo: number, hi: number, dtype: DType) => {
    const data = fromNumbers(rng.f32(shape.reduce((a, b) => a * b, 1), lo, hi), dtype);
    list.push({ name: n, dtype, shape, data });
    weights.set(n, toFloat64(data, dtype));
  };
  const s = 1 / Math.sqrt(m.C);
  add("embed", [m.V, m.C], -1, 1, m.dtype);
  for (let l = 0; l < m.L; l++) {
    const p = `L${l}.`;
    add(p + "attn_norm", [m.C], 0.5, 1.5, "f32");
    add(p + "q", [m.NH * m.HD, m.C], -2 * s, 2 * s, m.dtype);
    add(p + "k", [m.NKV * m.HD, m.C], -2 * s, 2 * s, m.dtype);
    add(p + "v", [m.NKV * m.HD, m.C], -s, s, m.dtype);
    if (m.bias) {
      add(p + "q_bias", [m.NH * m.HD], -0.5, 0.5, "f32");
      add(p + "k_bias", [m.NKV * m.HD], -0.5, 0.5, "f32");
      add(p + "v_bias", [m.NKV * m.HD], -0.5, 0.5, "f32");
    }
    if (m.qkNorm) {
      add(p + "q_norm", [m.HD], 0.5, 1.5, "f32");
      add(p + "k_norm", [m.HD], 0.5, 1.5, "f32");
    }
    add(p + "o", [m.C, m.NH * m.HD], -s, s, m.dtype);
    if (m.oBias) add(p + "o_bias", [m.C], -0.5, 0.5, "f32");
    add(p + "mlp_norm", [m.C], 0.5, 1.5, "f32");
    add(p + "gate", [m.I, m.C], -2 * s, 2 * s, m.dtype);
    add(p + "up", [m.I, m.C], -2 * s, 2 * s, m.dtype);
    add(p + "down", [m.C, m.I], -1 / Math.sqrt(m.I), 1 / Math.sqrt(m.I), m.dtype);
    if (m.mlpBias) {
      add(p + "gate_bias", [m.I], -0.5, 0.5, "f32");
      add(p + "up_bias", [m.I], -0.5, 0.5, "f32");
      add(p + "down_bias", [m.C], -0.5, 0.5, "f32");
    }
  }
  add("final_norm", [m.C], 0.5, 1.5, "f32");
  if (!m.tied) add("lm_head", [m.V, m.C], -2 * s, 2 * s, m.dtype);
  const tensors = writeSafetensors(join(dir, `${name}.safetensors`), list);
  const inv = invFreq(m.HD);
  const spec: ModelSpec = {
    hiddenSize: m.C, intermediateSize: m.I, numLayers: m.L, numHeads: m.NH, numKvHeads: m.NKV, headDim: m.HD,
    vocabSize: m.V, maxPositions: 64, rmsNormEps: 1e-5, ropeInvFreq: inv, ropeAttentionScaling: m.ropeScaling,
    attentionBias: m.bias, qkNorm: m.qkNorm, tieWordEmbeddings: m.tied,
    oBias: m.oBias ?? false, mlpBias: m.mlpBias ?? false,
    ...(m.windows ? { layerWindows: Int32Array.from(m.windows) } : {}),
  };
  const ref: RefConfig = {
    C: m.C, I: m.I, L: m.L, NH: m.NH, NKV: m.NKV, HD: m.HD, V: m.V, eps: 1e-5, invFreq: inv,
    ropeScaling: m.ropeScaling, attentionBias: m.bias, qkNorm: m.qkNorm, tied: m.tied,
    oBias: m.oBias ?? false, mlpBias: m.mlpBias ?? false, windows: m.windows,
  };
  return { spec, tensors, ref, weights };
}
