// The SFT loop on the native training boundary: per optimizer batch, trainForward and
// trainBackward over its micro-batches (gradients accumulate), then one AdamW step.
// loss = −Σ logp over the learned tokens of the optimizer batch / their number N, so
// dL/dlogp = −1/N at each learned position and 0 elsewhere.
import type { NativeModel, OptimizerStep } from "../../native/index.js";
import type { EncodedExample } from "./sft-encode.js";
import { epochOrder, lossTokens, microBatches, optimizerBatches, stepsPerEpoch, trainBatch } from "./batches.js";
import { learningRate, type Schedule } from "./lr-schedule.js";

/**
 * The training calls the loop makes: a NativeModel, or a wrapper that runs each call on
 * the serving model between forward steps (engine/train/exclusive-model.ts).
 */
export type TrainingCalls = Pick<NativeModel, "trainForward" | "trainBackward" | "step">;

export interface SftSettings {
  /** the adapter trained (setTrainable({adapter}) done by the caller); null: full fine-tuning of the base */
  adapter: string | null;
  epochs: number;
  /** sequences per optimizer step */
  batchSize: number;
  /** token budget of one micro-batch (one trainForward) */
  maxBatchTokens: number;
  seed: number;
  schedule: Schedule;
  optimizer: Omit<OptimizerStep, "lr">;
}

export interface StepEvent {
  step: number;
  /** 1-based epoch the step belongs to */
  epoch: number;
  loss: number;
  lr: number;
  grad_norm: number;
  /** tokens run through the model in this step */
  tokens: number;
  tokens_per_s: number;
  elapsed_s: number;
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

export interface SftCallbacks {
  onStep?: (e: StepEvent) => void;
  /** awaited before the next epoch starts (checkpoints are written here) */
  onEpoch?: (e: EpochEvent) => void | Promise<void>;
  /** stops the run between steps with a TrainingInterrupted error */
  signal?: AbortSignal;
}

export class TrainingInterrupted extends Error {
  readonly code = "interrupted";
  constructor(readonly step: number) {
    super(`training interrupted after step ${step}`);
    this.name = "TrainingInterrupted";
  }
}

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
 * Runs epochs `startEpoch` … settings.epochs−1 (a resumed run starts after its last completed
 * epoch; the order of each epoch depends only on (seed, epoch), so it matches an
 * uninterrupted run). Returns the number of optimizer steps taken in total.
 */
export async function runSft(
  model: TrainingCalls,
  train: readonly EncodedExample[],
  validation: readonly EncodedExample[] | null,
  s: SftSettings,
  cb: SftCallbacks = {},
  startEpoch = 0,
): Promise<number> {
  const perEpoch = stepsPerEpoch(train.length, s.batchSize);
  let step = startEpoch * perEpoch;
  const started = performance.now();
  for (let epoch = startEpoch; epoch < s.epochs; epoch++) {
    let epochLoss = 0;
    let epochTokens = 0;
    for (const batchIdx of optimizerBatches(epochOrder(train.length, s.seed, epoch), s.batchSize)) {
      if (cb.signal?.aborted) throw new TrainingInterrupted(step);
      const t0 = performance.now();
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
      const lr = learningRate(s.schedule, step);
      const res = await model.step({ ...s.optimizer, lr });
      step++;
      const dt = (performance.now() - t0) / 1000;
      epochLoss += lossSum;
      epochTokens += N;
      cb.onStep?.({
        step,
        epoch: epoch + 1,
        loss: N > 0 ? lossSum / N : 0,
        lr,
        grad_norm: res.gradNorm,
        tokens,
        tokens_per_s: dt > 0 ? tokens / dt : 0,
        elapsed_s: (performance.now() - started) / 1000,
      });
    }
    const val = validation && validation.length > 0 ? await evaluateLoss(model, validation, s.adapter, s.maxBatchTokens) : null;
    await cb.onEpoch?.({ epoch: epoch + 1, step, train_loss: epochTokens > 0 ? epochLoss / epochTokens : 0, val_loss: val });
  }
  return step;
}
