// RoPE inverse frequencies exactly as HF's ROPE_INIT_FUNCTIONS compute them
// (transformers/modeling_rope_utils.py: default, linear, llama3).
import type { ModelConfig } from "./types.js";

export interface RopeTable {
  /** headDim/2 inverse frequencies, scaling applied */
  invFreq: Float32Array;
  /** multiplier on cos/sin; 1 for default, linear and llama3 */
  attentionScaling: number;
}

export function ropeInvFreq(config: Pick<ModelConfig, "headDim" | "ropeTheta" | "ropeScaling">): RopeTable {
  const dim = config.headDim;
  const half = dim / 2;
  const base = new Float64Array(half);
  // HF: 1 / (theta ** (arange(0, dim, 2).float() / dim)), in float32
  for (let i = 0; i < half; i++) base[i] = Math.fround(1 / Math.fround(Math.pow(config.ropeTheta, Math.fround((2 * i) / dim))));
  const s = config.ropeScaling;
  const out = new Float32Array(half);
  if (s === null) out.set(base);
  else if (s.type === "linear") for (let i = 0; i < half; i++) out[i] = base[i] / s.factor;
  else {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = base[i];
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) out[i] = f / s.factor; // low frequencies: fully scaled
      else if (wavelen < highWavelen) out[i] = f; // high frequencies: untouched
      else {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        out[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
  return { invFreq: out, attentionScaling: 1 };
}
