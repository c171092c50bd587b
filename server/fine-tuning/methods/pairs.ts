// What the preference methods (dpo, reward_model) share: a job's preference lines
// (training_file "feedback" exports OpenAI's DPO lines) validated and encoded, the shared
// hyperparameters resolved, and the loop settings of a job.
import type { LoadedModel } from "../../../engine/model.js";
import { stepsPerEpoch } from "../../../engine/train/loop/batches.js";
import { autoWarmupSteps } from "../../../engine/train/loop/hyperparams.js";
import type { LoopSettings } from "../../../engine/train/loop/loop.js";
import { encodePairs, parsePreferenceJsonl, PreferenceDataError, type EncodedPair } from "../../../engine/train/data/pref-data.js";
import { commonSettings } from "./hyperparameters.js";
import type { MethodRun } from "./method.js";
import { JOB_MICRO_BATCH_TOKENS } from "./supervised.js";

export function encodeJobPairs(model: LoadedModel, text: string, what: string): EncodedPair[] {
  const ctx = { tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, maxLength: Math.min(model.maxContext, model.config.maxPositions) };
  const { encoded, errors } = encodePairs(ctx, parsePreferenceJsonl(text, what));
  if (errors.length > 0) throw new PreferenceDataError(what, errors);
  if (encoded.length === 0) throw new PreferenceDataError(what, [{ line: 0, reason: "no pair has a learned token left within the model's context" }]);
  return encoded;
}

export interface PairJob {
  train: EncodedPair[];
  validation: EncodedPair[] | null;
  /** the loop's settings, a pair never split across micro-batches of JOB_MICRO_BATCH_TOKENS */
  loop: LoopSettings & { maxBatchTokens: number };
  total: number;
  /** the shared hyperparameters as resolved */
  resolved: { n_epochs: number; batch_size: number; learning_rate_multiplier: number };
}

/** A preference job's data and loop at `baseLr` × learning_rate_multiplier (linear decay, AdamW). */
export function preparePairJob(r: MethodRun, baseLr: number): PairJob {
  const train = encodeJobPairs(r.model, r.trainText, "training_file");
  const validation = r.validationText === null ? null : encodeJobPairs(r.model, r.validationText, "validation_file");
  const { epochs, batchSize, mult } = commonSettings(r.hyperparameters, train.length);
  const total = epochs * stepsPerEpoch(train.length, batchSize);
  return {
    train,
    validation,
    total,
    resolved: { n_epochs: epochs, batch_size: batchSize, learning_rate_multiplier: mult },
    loop: {
      epochs,
      batchSize,
      seed: r.seed,
      schedule: { kind: "linear", lr: baseLr * mult, warmupSteps: autoWarmupSteps(total), totalSteps: total },
      optimizer: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
      maxBatchTokens: JOB_MICRO_BATCH_TOKENS,
    },
  };
}
