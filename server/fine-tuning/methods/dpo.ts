// method.type "dpo": Direct Preference Optimization (engine/train/dpo.ts) of a new LoRA
// adapter against the served base (the reference is the same weights with no adapter),
// on preference pairs: an uploaded DPO file or training_file "feedback". OpenAI's
// hyperparameters: beta, n_epochs, batch_size, learning_rate_multiplier.
import { DEFAULT_BETA, trainDpo } from "../../../engine/train/dpo.js";
import { autoWarmupSteps, DEFAULT_DPO_LR } from "../../../engine/train/hyperparams.js";
import { stepsPerEpoch } from "../../../engine/train/batches.js";
import { LINEAR_NAMES } from "../../../engine/peft.js";
import { checkCommonValue, checkKnownHyperparameters, COMMON_KEYS, commonSettings, resolved, withAutos } from "./hyperparameters.js";
import { encodeJobPairs } from "./pairs.js";
import { JOB_MICRO_BATCH_TOKENS, LORA_RANK } from "./supervised.js";
import type { MethodRun, MethodResult, TrainingMethod } from "./method.js";

const KEYS = [...COMMON_KEYS, "beta"] as const;

function checkValue(key: string, v: unknown): string | null {
  if (key !== "beta") return checkCommonValue(key, v);
  return v === "auto" || (typeof v === "number" && v > 0 && v <= 2) ? null : `beta must be "auto" or a number in (0, 2]`;
}

export const dpo: TrainingMethod = {
  type: "dpo",
  format: "dpo",
  checkHyperparameters: (h) => checkKnownHyperparameters(h, KEYS, checkValue),
  withDefaults: (h) => withAutos(KEYS, h),
  adapterSpec: (seed) => ({ lora: { rank: LORA_RANK, alpha: 2 * LORA_RANK, dropout: 0, targets: [...LINEAR_NAMES], seed }, valueHead: false }),

  async run(r: MethodRun): Promise<MethodResult> {
    const train = encodeJobPairs(r.model, r.trainText, "training_file");
    const val = r.validationText === null ? null : encodeJobPairs(r.model, r.validationText, "validation_file");
    const n = train.length;
    const { epochs, batchSize, mult } = commonSettings(r.hyperparameters, n);
    const beta = resolved(r.hyperparameters, "beta", DEFAULT_BETA);
    const lr = DEFAULT_DPO_LR * mult;
    const total = epochs * stepsPerEpoch(n, batchSize);
    r.report.message(`Training on ${n} preference pairs${val ? ` (validation: ${val.length})` : ""}: beta ${beta}, ${epochs} epochs, batch size ${batchSize}, ${total} steps`);
    let tokens = 0;
    await trainDpo(
      r.training,
      train,
      val,
      {
        adapter: r.adapter,
        reference: null,
        beta,
        epochs,
        batchSize,
        // a pair is never split: two answers per micro-batch at least
        maxBatchTokens: JOB_MICRO_BATCH_TOKENS,
        seed: r.seed,
        schedule: { kind: "linear", lr, warmupSteps: autoWarmupSteps(total), totalSteps: total },
        optimizer: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
      },
      {
        signal: r.signal,
        onStep: (e) => {
          tokens += e.tokens;
          r.report.step({
            step: e.step,
            total_steps: total,
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
    return { hyperparameters: { n_epochs: epochs, batch_size: batchSize, learning_rate_multiplier: mult, beta }, trainedTokens: tokens };
  },
};
