// method.type "supervised": LoRA SFT (engine/train/sft/sft.ts) on the job's training file.
// n_epochs, batch_size and learning_rate_multiplier as OpenAI takes them ("auto" or a
// number); the base learning rate is the LoRA default of engine/train/loop/hyperparams.ts.
import { sftLineParser, SftDataError } from "../../../engine/train/data/sft-data.js";
import { prepareJobData } from "./job-data.js";
import { encodeExamples, type EncodedExample } from "../../../engine/train/data/sft-encode.js";
import { autoWarmupSteps, defaultLearningRate } from "../../../engine/train/loop/hyperparams.js";
import { runSft, totalSteps } from "../../../engine/train/sft/sft.js";
import type { LoadedModel } from "../../../engine/model.js";
import type { AdapterSpec } from "../../../native/index.js";
import { LINEAR_NAMES } from "../../../engine/peft.js";
import { checkCommonValue, checkKnownHyperparameters, COMMON_KEYS, commonSettings, withAutos } from "./hyperparameters.js";
import type { MethodRun, MethodResult, TrainingMethod } from "./method.js";

export const LORA_RANK = 8;

/** every job's adapter: LoRA rank 8 on every linear layer, with a value head for a reward model */
export const jobAdapterSpec =
  (valueHead: boolean) =>
  (seed: number): AdapterSpec => ({ lora: { rank: LORA_RANK, alpha: 2 * LORA_RANK, dropout: 0, targets: [...LINEAR_NAMES], seed }, valueHead });

/**
 * Tokens per micro-batch (one trainForward/trainBackward call): the latency budget of a
 * decode step that waits for a training call. 256 tokens keep one call well under 50 ms
 * on stories260K on 2 cores (ARCHITECTURE.md, "Fine-tuning jobs").
 */
export const JOB_MICRO_BATCH_TOKENS = 256;

/** A job's SFT file parsed and encoded in slices: serving goes on meanwhile. */
function encode(model: LoadedModel, text: string, what: string): Promise<EncodedExample[]> {
  const ctx = { tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, maxLength: Math.min(model.maxContext, model.config.maxPositions) };
  return prepareJobData(text, {
    parse: sftLineParser(),
    encode: (ex) => encodeExamples(ctx, [ex]),
    fail: (errors) => new SftDataError(what, errors),
    noneParsed: "the file holds no examples",
    noneEncoded: "no example has a learned token left within the model's context",
  });
}

export const supervised: TrainingMethod = {
  type: "supervised",
  format: "sft",
  publishes: true,
  checkHyperparameters: (h) => checkKnownHyperparameters(h, COMMON_KEYS, checkCommonValue),
  withDefaults: (h) => withAutos(COMMON_KEYS, h),
  adapterSpec: jobAdapterSpec(false),

  async run(r: MethodRun): Promise<MethodResult> {
    const train = await encode(r.model, r.trainText, "training_file");
    const val = r.validationText === null ? null : await encode(r.model, r.validationText, "validation_file");
    const n = train.length;
    const { epochs, batchSize, mult } = commonSettings(r.hyperparameters, n);
    const lr = defaultLearningRate(LORA_RANK) * mult;
    const total = totalSteps(n, { epochs, batchSize });
    r.report.message(`Training ${n} examples${val ? ` (validation: ${val.length})` : ""}: ${epochs} epochs, batch size ${batchSize}, ${total} steps`);
    let tokens = 0;
    await runSft(
      r.training,
      train,
      val,
      {
        adapter: r.adapter,
        epochs,
        batchSize,
        maxBatchTokens: JOB_MICRO_BATCH_TOKENS,
        seed: r.seed,
        schedule: { kind: "linear", lr, warmupSteps: autoWarmupSteps(total), totalSteps: total },
        optimizer: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
      },
      {
        signal: r.signal,
        onStep: (e) => {
          tokens += e.tokens;
          r.report.step({ step: e.step, total_steps: total, train_loss: e.loss, learning_rate: e.lr, grad_norm: e.grad_norm, tokens_per_s: e.tokens_per_s });
        },
        onEpoch: (e) => r.report.epoch({ step: e.step, epoch: e.epoch, train_loss: e.train_loss, valid_loss: e.val_loss }),
      },
    );
    return { hyperparameters: { n_epochs: epochs, batch_size: batchSize, learning_rate_multiplier: mult }, trainedTokens: tokens };
  },
};
