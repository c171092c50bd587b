// The continuous-RLHF policy's gate: a candidate adapter against the version the base id
// serves now, on held-out preference pairs. For each pair, each model's preference is its
// length-normalised margin: the mean log-prob per answer token of the chosen answer minus
// that of the rejected one (raw sums favour whichever answer is shorter). The comparison
// is paired — d_i = candidate's margin − served margin on the same pair — and the candidate
// is promoted only when the one-sided 95 % lower confidence bound of mean(d) (Student's t)
// is above 0: a tie, or a gain the held-out pairs cannot tell from noise, is not promoted.
// The numbers go into the job's events. Scoring uses no-grad forwards, each an exclusive
// call between serving's steps.
import type { LoadedModel } from "../../engine/model.js";
import { pairLogp } from "../../engine/train/preference/dpo.js";
import type { EncodedPair } from "../../engine/train/data/pref-data.js";
import type { EncodedExample } from "../../engine/train/data/sft-encode.js";
import type { TrainingCalls } from "../../engine/train/sft/sft.js";
import { encodeJobPairs } from "../fine-tuning/methods/pairs.js";
import { JOB_MICRO_BATCH_TOKENS } from "../fine-tuning/methods/supervised.js";

/** the confidence level of the gate's lower bound (one-sided) */
export const GATE_LEVEL = 0.95;

export interface PreferenceScore {
  /** per pair: mean log p per chosen answer token − mean log p per rejected answer token */
  margins: Float64Array;
  /** mean of `margins` */
  margin: number;
  /** fraction of pairs with a positive margin */
  accuracy: number;
}

function answerTokens(ex: EncodedExample): number {
  let n = 0;
  for (let t = 1; t < ex.mask.length; t++) n += ex.mask[t]!;
  return Math.max(1, n);
}

/** How much `adapter` (null: the base) prefers the chosen answers of `pairs`, per answer token. */
export async function preferenceScore(training: TrainingCalls, adapter: string | null, pairs: readonly EncodedPair[]): Promise<PreferenceScore> {
  const lp = await pairLogp(training, adapter, pairs, JOB_MICRO_BATCH_TOKENS);
  const margins = new Float64Array(pairs.length);
  let right = 0;
  for (let i = 0; i < pairs.length; i++) {
    margins[i] = lp.chosen[i]! / answerTokens(pairs[i]!.chosen) - lp.rejected[i]! / answerTokens(pairs[i]!.rejected);
    if (margins[i]! > 0) right++;
  }
  return { margins, margin: mean(margins), accuracy: pairs.length ? right / pairs.length : 0 };
}

const mean = (x: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]!;
  return x.length ? s / x.length : 0;
};

// one-sided 95 % quantiles of Student's t, df = 1..30
const T95 = [6.314, 2.92, 2.353, 2.132, 2.015, 1.943, 1.895, 1.86, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.74, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697];

/** Student's t 95 % one-sided quantile (table to 30 degrees of freedom, Cornish-Fisher beyond: error < 1e-4). */
export function t95(df: number): number {
  if (df < 1) return Infinity;
  if (df <= 30) return T95[df - 1]!;
  const z = 1.6448536269514722;
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df);
}

export interface PairedComparison {
  n: number;
  /** mean of candidate − served margins */
  meanDiff: number;
  /** standard deviation of the differences */
  sd: number;
  /** one-sided GATE_LEVEL lower confidence bound of meanDiff (−Infinity with fewer than 2 pairs) */
  lower: number;
  /** promote: lower > 0 */
  better: boolean;
}

/** The paired comparison of per-pair margins (same pairs, same order). */
export function pairedImprovement(candidate: ArrayLike<number>, served: ArrayLike<number>): PairedComparison {
  if (candidate.length !== served.length) throw new Error("pairedImprovement: the two models were scored on different pairs");
  const n = candidate.length;
  const d = Float64Array.from({ length: n }, (_, i) => candidate[i]! - served[i]!);
  const m = mean(d);
  let ss = 0;
  for (const x of d) ss += (x - m) ** 2;
  const sd = n > 1 ? Math.sqrt(ss / (n - 1)) : NaN;
  const lower = n > 1 ? m - (t95(n - 1) * sd) / Math.sqrt(n) : -Infinity;
  return { n, meanDiff: m, sd, lower, better: lower > 0 };
}

const show = (s: PreferenceScore): string => `margin/token ${s.margin.toFixed(4)}, accuracy ${s.accuracy.toFixed(3)}`;

/** The verdict on `candidate` vs `served` (null: the base) over the held-out pairs' JSONL. */
export async function betterThanServed(
  model: LoadedModel,
  training: TrainingCalls,
  candidate: string,
  served: { id: string; adapter: string | null },
  heldOutText: string,
): Promise<{ pass: boolean; message: string; comparison: PairedComparison }> {
  const pairs = await encodeJobPairs(model, heldOutText, "validation_file");
  const cand = await preferenceScore(training, candidate, pairs);
  const now = await preferenceScore(training, served.adapter, pairs);
  const c = pairedImprovement(cand.margins, now.margins);
  return {
    pass: c.better,
    comparison: c,
    message:
      `Held-out evaluation on ${c.n} preference pairs: candidate ${show(cand)}; served ${served.id} ${show(now)}; ` +
      `paired improvement ${c.meanDiff.toFixed(4)} (sd ${c.sd.toFixed(4)}), ${GATE_LEVEL * 100} % lower bound ${c.lower.toFixed(4)}: ` +
      (c.better ? "better, publishing" : "not shown better, not published"),
  };
}
