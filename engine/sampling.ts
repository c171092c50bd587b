// Logits processing and sampling for one row of logits at a time, into preallocated buffers.
//
// Order (as Hugging Face's generate applies them, and vLLM alike):
//   1. penalties over the tokens generated so far (OpenAI semantics):
//        logit[j] -= count[j] * frequencyPenalty + (count[j] > 0 ? presencePenalty : 0)
//   2. logit_bias added
//   2b. a grammar's token mask (structured outputs, forced tool calls): tokens it forbids
//      get -Infinity, after penalties and bias so no bias can bring one back
//   3. temperature 0 → argmax (lowest id on ties); otherwise logits / temperature,
//      then top_k, then top_p over what top_k left (renormalised), then min_p
//      (keep p >= minP * p_max), then one uniform draw from the request's own Rng.
// Logprobs are vLLM's default "raw logprobs": log_softmax of the model's logits
// before penalties, bias, temperature and truncation, so they describe the model,
// not the sampling settings.
//
// native/src/cpu/sample.cc is this file's sample() for rows without a mask (penalties and bias
// handed over as logitEdits), operation for operation (the engine lets the forward step pick those tokens): change both
// together; test/native-sampling.test.ts holds them to the same tokens.
//
// Efficiency: vocab 32000 at batch 8 means every step touches 256K logits. Nothing
// here sorts the vocabulary: top_k and top_logprobs use a partial selection
// (quickselect), top_p a quickselect that partitions by probability mass, so each is
// O(V) on average however wide the nucleus is.
import type { SamplingParams } from "./types.js";

/** Where a draw comes from: a request's Rng, or the one draw already taken for this token. */
export interface UniformSource {
  /** uniform in [0, 1) */
  nextFloat(): number;
}

/** logit_bias pre-parsed once per request (the JSON keys are strings) */
export interface LogitBias {
  ids: Int32Array;
  values: Float32Array;
}

export function parseLogitBias(bias: Record<number, number>, vocabSize: number): LogitBias {
  const entries = Object.entries(bias)
    .map(([k, v]) => [Number(k), v] as const)
    .filter(([k, v]) => Number.isInteger(k) && k >= 0 && k < vocabSize && Number.isFinite(v) && v !== 0);
  return {
    ids: Int32Array.from(entries, ([k]) => k),
    values: Float32Array.from(entries, ([, v]) => v),
  };
}

/**
 * process()'s changes to a row as [id, penalty, bias] triples, one per token id it touches
 * (the penalty subtracted, then the bias added; 0 = none): what the native step applies to a
 * row before sampling it (native/index.ts ForwardSampling.edits).
 */
export function logitEdits(params: SamplingParams, bias: LogitBias, state: PenaltyState): number[] {
  const edits = new Map<number, [number, number]>();
  if (params.presencePenalty !== 0 || params.frequencyPenalty !== 0) {
    for (const [id, count] of state.counts) {
      if (count > 0) edits.set(id, [count * params.frequencyPenalty + params.presencePenalty, 0]);
    }
  }
  for (let i = 0; i < bias.ids.length; i++) {
    const e = edits.get(bias.ids[i]!);
    if (e) e[1] = bias.values[i]!;
    else edits.set(bias.ids[i]!, [0, bias.values[i]!]);
  }
  return [...edits].flatMap(([id, [pen, b]]) => [id, pen, b]);
}

/** What sampling needs to remember about one sequence. */
export interface PenaltyState {
  /** token id -> how many times the sequence has generated it */
  readonly counts: ReadonlyMap<number, number>;
}

export interface TokenLogprobs {
  /** log-prob of the chosen token under the raw model distribution */
  logprob: number;
  /** the `n` most likely tokens, most likely first (lowest id first on ties) */
  top: { tokenId: number; logprob: number }[];
}

export class Sampler {
  readonly vocabSize: number;
  /** processed logits (penalties, bias) when the row must change; the model's row stays intact */
  private readonly work: Float32Array;
  /** unnormalised probabilities exp((l - max) / T) */
  private readonly weights: Float64Array;
  /** candidate token ids, partially ordered by selection */
  private readonly idx: Int32Array;

  constructor(vocabSize: number) {
    this.vocabSize = vocabSize;
    this.work = new Float32Array(vocabSize);
    this.weights = new Float64Array(vocabSize);
    this.idx = new Int32Array(vocabSize);
  }

  /**
   * Penalties and bias applied to `logits` [V]. Returns `logits` itself when nothing
   * changes it, else a view of the sampler's work buffer (valid until the next call).
   */
  process(logits: Float32Array, params: SamplingParams, bias: LogitBias, state: PenaltyState, mask: TokenMask | null = null): Float32Array {
    const V = this.vocabSize;
    const penalise = (params.presencePenalty !== 0 || params.frequencyPenalty !== 0) && state.counts.size > 0;
    if (!penalise && bias.ids.length === 0 && mask === null) return logits;
    const out = this.work;
    out.set(logits.subarray(0, V));
    if (penalise) {
      for (const [id, count] of state.counts) {
        if (id < 0 || id >= V || count <= 0) continue;
        out[id] -= count * params.frequencyPenalty + params.presencePenalty;
      }
    }
    for (let i = 0; i < bias.ids.length; i++) if (bias.ids[i] < V) out[bias.ids[i]] += bias.values[i];
    if (mask !== null) applyMask(out, V, mask);
    return out;
  }

  /** Chooses the next token from one row of logits [V]; with a mask, only among the tokens it allows. */
  sample(logits: Float32Array, params: SamplingParams, bias: LogitBias, state: PenaltyState, rng: UniformSource, mask: TokenMask | null = null): number {
    const src = this.process(logits, params, bias, state, mask);
    if (params.temperature <= 0) return argmax(src, this.vocabSize);
    return this.sampleFrom(src, params, rng);
  }

  private sampleFrom(src: Float32Array, params: SamplingParams, rng: UniformSource): number {
    const V = this.vocabSize;
    const w = this.weights;
    const m = src[argmax(src, V)];
    const invT = 1 / params.temperature;
    let Z = 0;
    for (let i = 0; i < V; i++) {
      const e = Math.exp((src[i] - m) * invT);
      w[i] = e;
      Z += e;
    }
    const topK = params.topK > 0 && params.topK < V ? params.topK : 0;
    const topP = params.topP > 0 && params.topP < 1 ? params.topP : 1;
    const minP = params.minP > 0 ? params.minP : 0; // p_max has weight exactly 1

    if (topK === 0 && topP === 1) {
      // no sort needed: one scan over everything with weight at or above min_p's bar
      if (minP === 0) return drawLinear(w, V, 0, Z, rng.nextFloat());
      let Zm = 0;
      for (let i = 0; i < V; i++) if (w[i] >= minP) Zm += w[i];
      return drawLinear(w, V, minP, Zm, rng.nextFloat());
    }

    // candidates are idx[0..len), in no particular order; each rule narrows them
    const idx = this.idx;
    for (let i = 0; i < V; i++) idx[i] = i;
    let len = V;
    let mass = Z;
    if (topK > 0) {
      selectTop(idx, w, V, topK);
      len = topK;
      mass = massOf(idx, w, len);
    }
    if (topP < 1) {
      len = selectMass(idx, w, len, topP * mass);
      mass = massOf(idx, w, len);
    }
    if (minP > 0) {
      let j = 0;
      for (let i = 0; i < len; i++) if (w[idx[i]] >= minP) idx[j++] = idx[i];
      len = j; // p_max itself always passes, so len >= 1
      mass = massOf(idx, w, len);
    }
    let u = rng.nextFloat() * mass;
    let last = idx[0];
    for (let i = 0; i < len; i++) {
      if (w[idx[i]] === 0) continue; // masked out (or underflowed): never drawn
      last = idx[i];
      u -= w[idx[i]];
      if (u < 0) return idx[i];
    }
    return last; // rounding left a sliver: the last candidate with any weight takes it
  }

  /** Raw log-softmax of the model's row [V]: the chosen token's log-prob and the `n` best. */
  logprobs(logits: Float32Array, tokenId: number, n: number): TokenLogprobs {
    const V = this.vocabSize;
    const m = logits[argmax(logits, V)];
    let Z = 0;
    for (let i = 0; i < V; i++) Z += Math.exp(logits[i] - m);
    const lse = m + Math.log(Z);
    const top: { tokenId: number; logprob: number }[] = [];
    const k = Math.min(Math.max(0, Math.floor(n)), V);
    if (k > 0) {
      const idx = this.idx;
      for (let i = 0; i < V; i++) idx[i] = i;
      selectTop(idx, logits, V, k);
      sortPrefix(idx, logits, k);
      for (let i = 0; i < k; i++) top.push({ tokenId: idx[i], logprob: logits[idx[i]] - lse });
    }
    return { logprob: logits[tokenId] - lse, top };
  }
}

/** bit i of word i >> 5 set = token i allowed (xgrammar's bitmask layout); ids past its end are forbidden */
export type TokenMask = Int32Array;

/** -Infinity for every token of x[0..V) the mask forbids; a whole zero word (32 tokens) at a time. */
export function applyMask(x: Float32Array, V: number, mask: TokenMask): void {
  const words = Math.ceil(V / 32);
  for (let w = 0; w < words; w++) {
    const bits = w < mask.length ? mask[w] : 0;
    if (bits === -1) continue; // all 32 allowed
    const base = w * 32;
    const end = Math.min(32, V - base);
    for (let b = 0; b < end; b++) if (((bits >>> b) & 1) === 0) x[base + b] = -Infinity;
  }
}

/** index of the largest of x[0..n), lowest index on ties */
export function argmax(x: ArrayLike<number>, n: number): number {
  let best = 0;
  let bv = x[0];
  for (let i = 1; i < n; i++) {
    if (x[i] > bv) {
      bv = x[i];
      best = i;
    }
  }
  return best;
}

/** inverse-CDF draw over the entries with w >= floor; `mass` is their sum, u in [0,1) */
function drawLinear(w: Float64Array, n: number, floor: number, mass: number, u: number): number {
  let r = u * mass;
  let last = 0;
  for (let i = 0; i < n; i++) {
    const wi = w[i];
    if (wi < floor || wi === 0) continue;
    last = i;
    r -= wi;
    if (r < 0) return i;
  }
  return last;
}

/** does token a rank before token b: larger key first, lower id on ties */
function before(key: ArrayLike<number>, a: number, b: number): boolean {
  const ka = key[a];
  const kb = key[b];
  return ka > kb || (ka === kb && a < b);
}

/**
 * Quickselect: rearranges idx[0..len) so its first k entries are the k best by `key`
 * (in no particular order). O(len) on average; median-of-three pivots.
 */
export function selectTop(idx: Int32Array, key: ArrayLike<number>, len: number, k: number): void {
  let lo = 0;
  let hi = len - 1;
  const target = k - 1;
  if (k <= 0 || k >= len) return;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // median of three into idx[hi] as pivot
    if (before(key, idx[mid], idx[lo])) swap(idx, mid, lo);
    if (before(key, idx[hi], idx[lo])) swap(idx, hi, lo);
    if (before(key, idx[mid], idx[hi])) swap(idx, mid, hi);
    const pivot = idx[hi];
    let store = lo;
    for (let i = lo; i < hi; i++) {
      if (before(key, idx[i], pivot)) {
        swap(idx, i, store);
        store++;
      }
    }
    swap(idx, store, hi);
    if (store === target) return;
    if (store < target) lo = store + 1;
    else hi = store - 1;
  }
}

/**
 * Mass quickselect (the nucleus of top_p): rearranges idx[0..len) so that its first k
 * entries are the k best by w, for the smallest k whose weights sum to at least
 * `target`; returns k (len if rounding never lets the sum reach it).
 */
export function selectMass(idx: Int32Array, w: Float64Array, len: number, target: number): number {
  let lo = 0;
  let hi = len - 1;
  let acc = 0; // mass of idx[0..lo), all of which rank above everything in [lo..hi]
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (before(w, idx[mid], idx[lo])) swap(idx, mid, lo);
    if (before(w, idx[hi], idx[lo])) swap(idx, hi, lo);
    if (before(w, idx[mid], idx[hi])) swap(idx, mid, hi);
    const pivot = idx[hi];
    let store = lo;
    let upper = 0;
    for (let i = lo; i < hi; i++) {
      if (before(w, idx[i], pivot)) {
        upper += w[idx[i]];
        swap(idx, i, store);
        store++;
      }
    }
    swap(idx, store, hi);
    if (acc + upper >= target) {
      hi = store - 1; // the nucleus ends among the ones above the pivot
    } else if (acc + upper + w[pivot] >= target) {
      return store + 1;
    } else {
      acc += upper + w[pivot];
      lo = store + 1;
    }
  }
  return Math.min(lo, len);
}

function massOf(idx: Int32Array, w: Float64Array, len: number): number {
  let m = 0;
  for (let i = 0; i < len; i++) m += w[idx[i]];
  return m;
}

/** sorts idx[0..k) best first (insertion sort for the common small k, else the built-in sort) */
export function sortPrefix(idx: Int32Array, key: ArrayLike<number>, k: number): void {
  if (k > 32) {
    idx.subarray(0, k).sort((a, b) => (before(key, a, b) ? -1 : before(key, b, a) ? 1 : 0));
    return;
  }
  for (let i = 1; i < k; i++) {
    const v = idx[i];
    let j = i - 1;
    while (j >= 0 && before(key, v, idx[j])) {
      idx[j + 1] = idx[j];
      j--;
    }
    idx[j + 1] = v;
  }
}

function swap(a: Int32Array, i: number, j: number): void {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
}
