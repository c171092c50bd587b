// The SFT loop on the native training boundary: per optimizer batch, trainForward and
// trainBackward over its micro-batches (gradients accumulate), then one AdamW step.
// loss = −Σ logp over the learned tokens of the optimizer batch / their number N, so
// dL/dlogp = −1/N at each learned position and 0 elsewhere.
import type { EncodedExample } from "../data/sft-encode.js";
import { lossTokens, microBatches, stepsPerEpoch, trainBatch } from "../loop/batches.js";
import { runEpochs, TrainingInterrupted, type LoopCallbacks, type LoopSettings, type StepCommon, type TrainingCalls } from "../loop/loop.js";

export type { TrainingCalls } from "../loop/loop.js";

export interface SftSettings extends LoopSettings {
  /** the adapter trained (setTrainable({adapter}) done by the caller); null: full fine-tuning of the base */
  adapter: string | null;
  /** token budget of one micro-batch (one trainForward) */
  maxBatchTokens: number;
}

export interface StepEvent extends StepCommon {
  loss: number;
}

export interface EpochEvent {
  /** epochs completed */
  epoch: number;
  step: number;
  /** mean loss per learned token over the epoch */
  train_loss: number;
  /** the same on the validation set, when there is one */
  val_loss: number | null;
}

export type SftCallbacks = LoopCallbacks<{ loss: number }, Omit<EpochEvent, "epoch" | "step">>;

export { TrainingInterrupted };

/** Optimizer steps the whole run takes. */
export function totalSteps(examples: number, s: Pick<SftSettings, "epochs" | "batchSize">): number {
  return s.epochs * stepsPerEpoch(examples, s.batchSize);
}

/** Mean −logp per learned token of some examples, without gradients. */
export async function evaluateLoss(model: TrainingCalls, examples: readonly EncodedExample[], adapter: string | null, maxBatchTokens: number): Promise<number> {
  let sum = 0;
  let n = 0;
  const all = examples.map((_, i) => i);
  for (const mb of microBatches(examples, all, maxBatchTokens)) {
    const batch = trainBatch(examples, mb, adapter, false);
    const { logp } = await model.trainForward(batch);
    for (let t = 0; t < logp.length; t++) if (batch.targets[t] >= 0) sum -= logp[t];
    n += lossTokens(examples, mb);
  }
  return n > 0 ? sum / n : 0;
}

/**
 * Runs epochs `startEpoch` … settings.epochs−1 (see runEpochs). Returns the number of
 * optimizer steps taken in total.
 */
export async function runSft(
  model: TrainingCalls,
  train: readonly EncodedExample[],
  validation: readonly EncodedExample[] | null,
  s: SftSettings,
  cb: SftCallbacks = {},
  startEpoch = 0,
): Promise<number> {
  let epochLoss = 0;
  let epochTokens = 0;
  return runEpochs(
    model,
    train.length,
    s,
    {
      batch: async (batchIdx) => {
        const N = lossTokens(train, batchIdx);
        let lossSum = 0;
        let tokens = 0;
        for (const mb of microBatches(train, batchIdx, s.maxBatchTokens)) {
          const batch = trainBatch(train, mb, s.adapter, true);
          const { logp } = await model.trainForward(batch);
          const dlogp = new Float32Array(logp.length);
          for (let t = 0; t < logp.length; t++) {
            if (batch.targets[t] < 0) continue;
            lossSum -= logp[t];
            dlogp[t] = -1 / N;
          }
          await model.trainBackward(dlogp, null);
          tokens += batch.tokens.length;
        }
        epochLoss += lossSum;
        epochTokens += N;
        return { stats: { loss: N > 0 ? lossSum / N : 0 }, tokens };
      },
      epoch: async () => {
        const train_loss = epochTokens > 0 ? epochLoss / epochTokens : 0;
        epochLoss = 0;
        epochTokens = 0;
        const val_loss = validation && validation.length > 0 ? await evaluateLoss(model, validation, s.adapter, s.maxBatchTokens) : null;
        return { train_loss, val_loss };
      },
    },
    cb,
    startEpoch,
  );
}
