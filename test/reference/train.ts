// Float64 reference of the training boundary's outputs (native/index.ts trainForward):
// per-token log-probs of targets and value-head outputs over packed sequences, and the
// scalar L = Σ dlogp·logp + Σ dvalue·value whose gradient trainBackward accumulates.
import { llamaHiddenRef, type RefConfig, type RefLora, type RefWeights } from "./llama.js";
import { matmulRef } from "./ops.js";

export interface RefTrainOut {
  logp: Float64Array; // [T], 0 where the target is masked (−1)
  values: Float64Array; // [T], zeros without a value head
}

/** log softmax(logits[t])[targets[t]] per row. */
export function logprobRef(logits: Float64Array, targets: ArrayLike<number>, T: number, V: number): Float64Array {
  const out = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    if (targets[t]! < 0) continue;
    const row = logits.subarray(t * V, t * V + V);
    let mx = -Infinity;
    for (const v of row) mx = Math.max(mx, v);
    let s = 0;
    for (const v of row) s += Math.exp(v - mx);
    out[t] = row[targets[t]!]! - mx - Math.log(s);
  }
  return out;
}

/** Each sequence at positions 0..n−1, packed in order, as trainForward runs them. */
export function trainForwardRef(
  cfg: RefConfig, w: RefWeights, tokens: readonly number[], counts: readonly number[], targets: ArrayLike<number>,
  lora: RefLora | null, valueHead: Float64Array | null,
): RefTrainOut {
  const T = tokens.length;
  const logp = new Float64Array(T), values = new Float64Array(T);
  const head = w.get(cfg.tied ? "embed" : "lm_head")!;
  let t0 = 0;
  for (const n of counts) {
    const xn = llamaHiddenRef(cfg, w, tokens.slice(t0, t0 + n), lora);
    const logits = matmulRef(xn, head, null, n, cfg.V, cfg.C);
    logp.set(logprobRef(logits, Array.from(targets).slice(t0, t0 + n), n, cfg.V), t0);
    if (valueHead) values.set(matmulRef(xn, valueHead, null, n, 1, cfg.C), t0);
    t0 += n;
  }
  return { logp, values };
}

/** L = Σ dlogp[t]·logp[t] + Σ dvalue[t]·value[t]: the loss whose gradient trainBackward computes. */
export function upstreamLoss(out: RefTrainOut, dlogp: ArrayLike<number>, dvalues: ArrayLike<number> | null): number {
  let s = 0;
  for (let t = 0; t < out.logp.length; t++) s += dlogp[t]! * out.logp[t]! + (dvalues ? dvalues[t]! * out.values[t]! : 0);
  return s;
}
