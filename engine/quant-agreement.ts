// How far a quantized model's next-token distributions are from its source's, on a fixed
// text (llama.cpp's `perplexity --kl-divergence` measure): the mean over positions of
// KL(P_source ‖ P_quantized), and how often both put the same token first.
import type { LoadedModel } from "./model.js";

export interface Agreement {
  meanKL: number;
  maxKL: number;
  top1: number;
  positions: number;
}

function logSoftmax(row: Float32Array, off: number, V: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, row[off + i]!);
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(row[off + i]! - max);
  const lse = max + Math.log(sum);
  return Float64Array.from({ length: V }, (_, i) => row[off + i]! - lse);
}

function argmax(v: Float64Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

let nextSeq = 1 << 20;

async function allLogits(m: LoadedModel, tokens: Int32Array): Promise<Float32Array> {
  const seq = nextSeq++;
  try {
    return await m.native.forward({ seqIds: Int32Array.of(seq), tokens, counts: Int32Array.of(tokens.length), logits: "all" });
  } finally {
    m.native.freeSeq(seq);
  }
}

/** `tokens` (one sequence) through both models; they must share the vocabulary. */
export async function agreement(source: LoadedModel, quantized: LoadedModel, tokens: Int32Array): Promise<Agreement> {
  const V = source.config.vocabSize;
  if (quantized.config.vocabSize !== V) throw new Error(`vocabularies differ: ${V} vs ${quantized.config.vocabSize}`);
  const [a, b] = [await allLogits(source, tokens), await allLogits(quantized, tokens)];
  let sum = 0, max = 0, same = 0;
  for (let t = 0; t < tokens.length; t++) {
    const p = logSoftmax(a, t * V, V), q = logSoftmax(b, t * V, V);
    let kl = 0;
    for (let i = 0; i < V; i++) kl += Math.exp(p[i]!) * (p[i]! - q[i]!);
    sum += kl;
    max = Math.max(max, kl);
    if (argmax(p) === argmax(q)) same++;
  }
  return { meanKL: sum / tokens.length, maxKL: max, top1: same / tokens.length, positions: tokens.length };
}
