// method.type "dpo": Direct Preference Optimization (engine/train/preference/dpo.ts) of a new LoRA
// adapter against the served base (the reference is the same weights with no adapter),
// on preference pairs: an uploaded DPO file or training_file "feedback". OpenAI's
// hyperparameters: beta, n_epochs, batch_size, learning_rate_multiplier.
import { DEFAULT_BETA, trainDpo } from "../../../engine/train/preference/dpo.js";
import { DEFAULT_DPO_LR } from "../../../engine/train/loop/hyperparams.js";
import { checkCommonValue, checkKnownHyperparameters, COMMON_KEYS, resolved, withAutos } from "./hyperparameters.js";
import { preparePairJob } from "./pairs.js";
import { jobAdapterSpec } from "./supervised.js";
import type { MethodRun, MethodResult, TrainingMethod } from "./method.js";

const KEYS = [...COMMON_KEYS, "beta"] as const;

function checkValue(key: string, v: unknown): string | null {
  if (key !== "beta") return checkCommonValue(key, v);
  return v === "auto" || (typeof v === "number" && v > 0 && v <= 2) ? null : `beta must be "auto" or a number in (0, 2]`;
}

export const dpo: TrainingMethod = {
  type: "dpo",
  format: "dpo",
  publishes: true,
  checkHyperparameters: (h) => checkKnownHyperparameters(h, KEYS, checkValue),
  withDefaults: (h) => withAutos(KEYS, h),
  adapterSpec: jobAdapterSpec(false),

  async run(r: MethodRun): Promise<MethodResult> {
    const job = await preparePairJob(r, DEFAULT_DPO_LR);
    const beta = resolved(r.hyperparameters, "beta", DEFAULT_BETA);
    const { n_epochs, batch_size } = job.resolved;
    r.report.message(`Training on ${job.train.length} preference pairs${job.validation ? ` (validation: ${job.validation.length})` : ""}: beta ${beta}, ${n_epochs} epochs, batch size ${batch_size}, ${job.total} steps`);
    let tokens = 0;
    await trainDpo(
      r.training,
      job.train,
      job.validation,
      { ...job.loop, adapter: r.adapter, reference: null, beta },
      {
        signal: r.signal,
        onStep: (e) => {
          tokens += e.tokens;
          r.report.step({
            step: e.step,
            total_steps: job.total,
            train_loss: e.loss,
            learning_rate: e.lr,
            grad_norm: e.grad_norm,
            reward: e.reward_margin,
            reward_accuracy: e.reward_accuracy,
            kl: e.logratio_per_token,
            tokens_per_s: e.tokens_per_s,
          });
        },
        onEpoch: (e) => r.report.epoch({ step: e.step, epoch: e.epoch, train_loss: e.train_loss, valid_loss: e.val_loss }),
      },
    );
    return { hyperparameters: { ...job.resolved, beta }, trainedTokens: tokens };
  },
};
