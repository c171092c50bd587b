// The model calls a PPO run makes, behind one interface, so engine/train/ppo/ppo.ts runs the
// same loop in `train ppo` (direct: the run owns the model) and in a fine-tuning job on the
// serving weights (exclusive: every call is one Engine.runExclusive task, so serving's
// decode steps run between any two of them, and a role switch — setTrainable plus the
// AdamW moments, which the native side refuses while a forward runs — never meets one).
import type { NativeModel } from "../../../native/index.js";
import type { Engine } from "../../engine.js";
import { exclusiveTraining, type ExclusiveRunner } from "../loop/exclusive-model.js";
import type { TrainingCalls } from "../loop/loop.js";

/** The synchronous calls that change or read what a forward uses: role switches, AdamW moments, parameters. */
export type RoleCalls = Pick<NativeModel, "setTrainable" | "optimizerState" | "loadOptimizerState" | "parameters" | "readParameter">;

export interface PpoModel extends TrainingCalls {
  /** runs `fn` with no forward in flight: one exclusive task of the serving engine, or at once */
  roles<T>(fn: (m: RoleCalls) => T): Promise<T>;
}

/** What samples the actor's answers: the Engine running on the same weights. */
export type RolloutEngine = Pick<Engine, "generate">;

/** A model the run owns: every call straight to it. */
export function directPpoModel(m: NativeModel): PpoModel {
  return {
    trainForward: (batch) => m.trainForward(batch),
    trainBackward: (dlogp, dvalues) => m.trainBackward(dlogp, dvalues),
    step: (opt) => m.step(opt),
    roles: async (fn) => fn(m),
  };
}

/** The serving model: each call one exclusive task of `engine`, between two forward steps. */
export function exclusivePpoModel(engine: ExclusiveRunner, m: NativeModel): PpoModel {
  return { ...exclusiveTraining(engine, m), roles: (fn) => engine.runExclusive(async () => fn(m)) };
}
