// method.type "reward_model" (extension): a reward model (engine/train/preference/rm.ts: the base + a
// LoRA adapter + a scalar value head, pairwise loss) on preference pairs, as DeepSpeed-Chat's
// step 2. It is not a chat model, so it is not published as a served version: the job keeps
// it as its checkpoints (PEFT layout with value_head.safetensors; the last one is the result).
import { DEFAULT_LORA_LR } from "../../../engine/train/loop/hyperparams.js";
import { trainRewardModel } from "../../../engine/train/preference/rm.js";
import { checkCommonValue, checkKnownHyperparameters, COMMON_KEYS, withAutos } from "./hyperparameters.js";
import { preparePairJob } from "./pairs.js";
import { jobAdapterSpec } from "./supervised.js";
import type { MethodRun, MethodResult, TrainingMethod } from "./method.js";

export const rewardModel: TrainingMethod = {
  type: "reward_model",
  format: "dpo",
  publishes: false,
  checkHyperparameters: (h) => checkKnownHyperparameters(h, COMMON_KEYS, checkCommonValue),
  withDefaults: (h) => withAutos(COMMON_KEYS, h),
  adapterSpec: jobAdapterSpec(true),

  async run(r: MethodRun): Promise<MethodResult> {
    const job = await preparePairJob(r, DEFAULT_LORA_LR);
    const { n_epochs, batch_size } = job.resolved;
    r.report.message(`Training a reward model on ${job.train.length} preference pairs${job.validation ? ` (validation: ${job.validation.length})` : ""}: ${n_epochs} epochs, batch size ${batch_size}, ${job.total} steps`);
    let tokens = 0;
    await trainRewardModel(
      r.training,
      job.train,
      job.validation,
      { ...job.loop, adapter: r.adapter },
      {
        signal: r.signal,
        onStep: (e) => {
          tokens += e.tokens;
          r.report.step({ step: e.step, total_steps: job.total, train_loss: e.loss, learning_rate: e.lr, grad_norm: e.grad_norm, reward: e.margin, reward_accuracy: e.accuracy, tokens_per_s: e.tokens_per_s });
        },
        onEpoch: async (e) => {
          await r.report.epoch({ step: e.step, epoch: e.epoch, train_loss: e.train_loss, valid_loss: e.val_loss });
          if (e.val_accuracy !== null) r.report.message(`Epoch ${e.epoch}: held-out pairwise accuracy ${e.val_accuracy.toFixed(3)}, mean margin ${e.val_margin!.toFixed(3)}`);
        },
      },
    );
    return { hyperparameters: job.resolved, trainedTokens: tokens };
  },
};
