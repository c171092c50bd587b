// Epoch order, optimizer batches and the micro-batches the native side runs.
import type { TrainBatch } from "../../../native/index.js";
import { Rng } from "../../rng.js";
import type { EncodedExample } from "../data/sft-encode.js";

/**
 * The example order of one epoch: a Fisher–Yates shuffle from a stream named after the
 * epoch, so any epoch's order follows from (seed, epoch) alone and a resumed run needs
 * no saved generator state.
 */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const rng = Rng.stream(seed, `sft-epoch-${epoch}`);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextU32() % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Optimizer steps per epoch: every example once, `batchSize` sequences per step (the last step may be smaller). */
export function stepsPerEpoch(examples: number, batchSize: number): number {
  return Math.ceil(examples / batchSize);
}

/** Splits an epoch's order into optimizer batches of `batchSize` example indices. */
export function optimizerBatches(order: readonly number[], batchSize: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) out.push(order.slice(i, i + batchSize));
  return out;
}

/**
 * Groups one optimizer batch into micro-batches of at most `maxTokens` tokens (gradient
 * accumulation runs over them); a sequence longer than the budget runs alone.
 */
export function microBatches(examples: readonly EncodedExample[], indices: readonly number[], maxTokens: number): number[][] {
  return microBatchesBy(indices, maxTokens, (i) => examples[i].tokens.length);
}

/** microBatches over items whose token count is `lengthOf(i)` (a preference pair: both answers). */
export function microBatchesBy(indices: readonly number[], maxTokens: number, lengthOf: (i: number) => number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  let tokens = 0;
  for (const i of indices) {
    const n = lengthOf(i);
    if (cur.length > 0 && tokens + n > maxTokens) {
      out.push(cur);
      cur = [];
      tokens = 0;
    }
    cur.push(i);
    tokens += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Learned tokens of some examples (the N of loss = −Σ logp / N). */
export function lossTokens(examples: readonly EncodedExample[], indices: readonly number[]): number {
  let n = 0;
  for (const i of indices) for (const m of examples[i].mask) n += m;
  return n;
}

/**
 * The packed TrainBatch of some examples: each sequence at positions 0..n−1, target at t
 * = token t+1 where that token is learned, −1 elsewhere (and at each sequence's last position).
 */
export function trainBatch(examples: readonly EncodedExample[], indices: readonly number[], adapter: string | null, grad: boolean): TrainBatch {
  let total = 0;
  for (const i of indices) total += examples[i].tokens.length;
  const tokens = new Int32Array(total);
  const targets = new Int32Array(total).fill(-1);
  const counts = new Int32Array(indices.length);
  let off = 0;
  indices.forEach((i, s) => {
    const ex = examples[i];
    const n = ex.tokens.length;
    tokens.set(ex.tokens, off);
    for (let t = 0; t + 1 < n; t++) if (ex.mask[t + 1]) targets[off + t] = ex.tokens[t + 1];
    counts[s] = n;
    off += n;
  });
  return { tokens, counts, targets, adapter, values: false, grad, checkpoint: false };
}

/**
 * Whole sequences packed for their value-head outputs (no token log-probs: every target −1).
 * `last[s]` is the packed position of sequence s's last token, where its score is read.
 */
export function valueBatch(sequences: readonly Int32Array[], adapter: string, grad: boolean): { batch: TrainBatch; last: Int32Array } {
  let total = 0;
  for (const s of sequences) total += s.length;
  const tokens = new Int32Array(total);
  const counts = new Int32Array(sequences.length);
  const last = new Int32Array(sequences.length);
  let off = 0;
  sequences.forEach((s, i) => {
    if (s.length === 0) throw new RangeError(`sequence ${i} is empty (a score needs at least one token)`);
    tokens.set(s, off);
    counts[i] = s.length;
    off += s.length;
    last[i] = off - 1;
  });
  return { batch: { tokens, counts, targets: new Int32Array(total).fill(-1), adapter, values: true, grad, checkpoint: false }, last };
}

/** Σ logp over each sequence's learned positions (targets ≥ 0) of a packed batch. */
export function sequenceLogp(batch: TrainBatch, logp: Float32Array): Float64Array {
  const out = new Float64Array(batch.counts.length);
  let off = 0;
  batch.counts.forEach((n, s) => {
    for (let t = off; t < off + n; t++) if (batch.targets[t] >= 0) out[s] += logp[t];
    off += n;
  });
  return out;
}
