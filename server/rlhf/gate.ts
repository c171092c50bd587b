// The continuous-RLHF policy's not-worse gate: a candidate adapter against the version the
// base id serves now, on held-out preference pairs. Each model's preference for a pair is
// its margin Σ log p(chosen) − Σ log p(rejected) over the answer tokens (no-grad forwards,
// each an exclusive call between serving's steps); the candidate passes when its mean
// margin is at least the served version's. Pairwise accuracy (margin > 0) is reported too.
import type { LoadedModel } from "../../engine/model.js";
import { pairLogp } from "../../engine/train/preference/dpo.js";
import type { EncodedPair } from "../../engine/train/data/pref-data.js";
import type { TrainingCalls } from "../../engine/train/sft/sft.js";
import { encodeJobPairs } from "../fine-tuning/methods/pairs.js";
import { JOB_MICRO_BATCH_TOKENS } from "../fine-tuning/methods/supervised.js";

export interface PreferenceScore {
  /** mean over pairs of Σ log p(chosen) − Σ log p(rejected) */
  margin: number;
  /** fraction of pairs with a positive margin */
  accuracy: number;
}

/** How much `adapter` (null: the base) prefers the chosen answers of `pairs`. */
export async function preferenceScore(training: TrainingCalls, adapter: string | null, pairs: readonly EncodedPair[]): Promise<PreferenceScore> {
  const lp = await pairLogp(training, adapter, pairs, JOB_MICRO_BATCH_TOKENS);
  let margin = 0;
  let right = 0;
  for (let i = 0; i < pairs.length; i++) {
    const m = lp.chosen[i] - lp.rejected[i];
    margin += m;
    if (m > 0) right++;
  }
  return { margin: margin / pairs.length, accuracy: right / pairs.length };
}

const show = (s: PreferenceScore): string => `margin ${s.margin.toFixed(4)}, accuracy ${s.accuracy.toFixed(3)}`;

/** The verdict on `candidate` vs `served` (null: the base) over the held-out pairs' JSONL. */
export async function notWorse(
  model: LoadedModel,
  training: TrainingCalls,
  candidate: string,
  served: { id: string; adapter: string | null },
  heldOutText: string,
): Promise<{ pass: boolean; message: string }> {
  const pairs = encodeJobPairs(model, heldOutText, "validation_file");
  const cand = await preferenceScore(training, candidate, pairs);
  const now = await preferenceScore(training, served.adapter, pairs);
  const pass = cand.margin >= now.margin;
  return {
    pass,
    message:
      `Held-out evaluation on ${pairs.length} preference pairs: candidate ${show(cand)}; served ${served.id} ${show(now)}; ` +
      (pass ? "not worse, publishing" : "worse, not published"),
  };
}
