// Training on the serving model: each native training call (trainForward, trainBackward,
// step) becomes one Engine.runExclusive task, so the engine runs it between two forward
// steps and serving goes on between any two calls. A decode step therefore waits for at
// most one training call; a job bounds that by its micro-batch size (maxBatchTokens).
import type { TrainingCalls } from "../sft/sft.js";

/** The part of Engine that schedules work on the model between forward steps. */
export interface ExclusiveRunner {
  runExclusive<T>(work: () => Promise<T>): Promise<T>;
}

/** The training calls of `model`, each run as one exclusive task of `engine`. */
export function exclusiveTraining(engine: ExclusiveRunner, model: TrainingCalls): TrainingCalls {
  return {
    trainForward: (batch) => engine.runExclusive(() => model.trainForward(batch)),
    trainBackward: (dlogp, dvalues) => engine.runExclusive(() => model.trainBackward(dlogp, dvalues)),
    step: (opt) => engine.runExclusive(() => model.step(opt)),
  };
}

/**
 * Runs synchronous model calls that change what a forward reads (addAdapter,
 * removeAdapter, setTrainable, reading a trained adapter) as one exclusive task, so no
 * forward step is in flight on the worker thread while they run.
 */
export function exclusively<T>(engine: ExclusiveRunner, fn: () => T | Promise<T>): Promise<T> {
  return engine.runExclusive(async () => fn());
}

