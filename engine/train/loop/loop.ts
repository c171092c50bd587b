// The epoch/step skeleton every training method shares (SFT, reward model, DPO): each epoch's
// order from (seed, epoch), optimizer batches of example indices, the method's own work on a
// batch (forwards and backwards; gradients accumulate), then one AdamW step at the scheduled
// learning rate, a step event, and at the end of each epoch an evaluation and an epoch event.
import type { NativeModel, OptimizerStep } from "../../../native/index.js";

/** The training calls the loop makes: a NativeModel, or a wrapper that runs each call on
 * the serving model between forward steps (engine/train/loop/exclusive-model.ts). */
export type TrainingCalls = Pick<NativeModel, "trainForward" | "trainBackward" | "step">;
import { epochOrder, optimizerBatches, stepsPerEpoch } from "./batches.js";
import { learningRate, type Schedule } from "./lr-schedule.js";

export interface LoopSettings {
  epochs: number;
  /** examples (sequences or pairs) per optimizer step */
  batchSize: number;
  seed: number;
  schedule: Schedule;
  optimizer: Omit<OptimizerStep, "lr">;
}

/** What every step event holds; each method adds its own statistics. */
export interface StepCommon {
  step: number;
  /** 1-based epoch the step belongs to */
  epoch: number;
  lr: number;
  grad_norm: number;
  /** tokens run through the model in this step */
  tokens: number;
  tokens_per_s: number;
  elapsed_s: number;
}

export interface LoopCallbacks<S, E> {
  onStep?: (e: StepCommon & S) => void;
  /** awaited before the next epoch starts (checkpoints are written here) */
  onEpoch?: (e: { epoch: number; step: number } & E) => void | Promise<void>;
  /** stops the run between steps with a TrainingInterrupted error */
  signal?: AbortSignal;
}

/** One method's work: gradients of one optimizer batch, and the epoch's summary of its batches. */
export interface LoopWork<S, E> {
  /** forwards and backwards over the batch; returns its statistics and the tokens it ran */
  batch(indices: number[]): Promise<{ stats: S; tokens: number }>;
  /** the epoch event's fields from the statistics of the epoch's steps (evaluation goes here) */
  epoch(steps: S[]): Promise<E>;
}

export class TrainingInterrupted extends Error {
  readonly code = "interrupted";
  constructor(readonly step: number) {
    super(`training interrupted after step ${step}`);
    this.name = "TrainingInterrupted";
  }
}

/**
 * Runs epochs `startEpoch` … epochs−1 over `n` examples (a resumed run starts after its last
 * completed epoch; the order of each epoch depends only on (seed, epoch), so it matches an
 * uninterrupted run). Returns the number of optimizer steps taken in total.
 */
export async function runEpochs<S, E>(model: TrainingCalls, n: number, s: LoopSettings, work: LoopWork<S, E>, cb: LoopCallbacks<S, E> = {}, startEpoch = 0): Promise<number> {
  let step = startEpoch * stepsPerEpoch(n, s.batchSize);
  const started = performance.now();
  for (let epoch = startEpoch; epoch < s.epochs; epoch++) {
    const epochStats: S[] = [];
    for (const indices of optimizerBatches(epochOrder(n, s.seed, epoch), s.batchSize)) {
      if (cb.signal?.aborted) throw new TrainingInterrupted(step);
      const t0 = performance.now();
      const { stats, tokens } = await work.batch(indices);
      const lr = learningRate(s.schedule, step);
      const res = await model.step({ ...s.optimizer, lr });
      step++;
      const dt = (performance.now() - t0) / 1000;
      epochStats.push(stats);
      cb.onStep?.({
        step,
        epoch: epoch + 1,
        ...stats,
        lr,
        grad_norm: res.gradNorm,
        tokens,
        tokens_per_s: dt > 0 ? tokens / dt : 0,
        elapsed_s: (performance.now() - started) / 1000,
      });
    }
    const summary = await work.epoch(epochStats);
    await cb.onEpoch?.({ epoch: epoch + 1, step, ...summary });
  }
  return step;
}
