// What the preference methods (dpo, reward_model) share: a job's preference lines
// (training_file "feedback" exports OpenAI's DPO lines) validated and encoded, the shared
// hyperparameters resolved, and the loop settings of a job.
import type { LoadedModel } from "../../../engine/model.js";
import { stepsPerEpoch } from "../../../engine/train/loop/batches.js";
import { autoWarmupSteps } from "../../../engine/train/loop/hyperparams.js";
import type { LoopSettings } from "../../../engine/train/loop/loop.js";
import { encodePairs, preferenceLineParser, PreferenceDataError, type EncodedPair } from "../../../engine/train/data/pref-data.js";
import { prepareJobData } from "./job-data.js";
import { commonSettings } from "./hyperparameters.js";
import type { MethodRun } from "./method.js";
import { JOB_MICRO_BATCH_TOKENS } from "./supervised.js";

/** A job's preference file parsed and encoded in slices: serving goes on meanwhile. */
export function encodeJobPairs(model: LoadedModel, text: string, what: string): Promise<EncodedPair[]> {
  const ctx = { tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, maxLength: Math.min(model.maxContext, model.config.maxPositions) };
  return prepareJobData(text, {
    parse: preferenceLineParser(),
    encode: (p) => encodePairs(ctx, [p]),
    fail: (errors) => new PreferenceDataError(what, errors),
    noneParsed: "the file holds no preference pairs",
    noneEncoded: "no pair has a learned token left within the model's context",
  });
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
export async function preparePairJob(r: MethodRun, baseLr: number): Promise<PairJob> {
  const train = await encodeJobPairs(r.model, r.trainText, "training_file");
  const validation = r.validationText === null ? null : await encodeJobPairs(r.model, r.validationText, "validation_file");
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
