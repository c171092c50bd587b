// PpoSettings from the knobs a caller sets, everything else DeepSpeed-Chat's defaults
// (PPO_DEFAULTS): the one place `train ppo` (ppo-run.ts) and the ppo fine-tuning job
// (server/fine-tuning/methods/ppo.ts) turn their options into the loop's settings.
import type { ScheduleKind } from "../loop/lr-schedule.js";
import type { Roles } from "./experience.js";
import { PPO_DEFAULTS, ppoOptimizer, type PpoSettings } from "./ppo.js";

/** What a caller decides; an absent knob takes its default. */
export interface PpoKnobs {
  trainBatchSize?: number;
  ppoEpochs?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  klCtl?: number;
  clipRewardValue?: number;
  gamma?: number;
  lambda?: number;
  clipRange?: number;
  clipRangeValue?: number;
  whitenAdvantages?: boolean;
  actorLr?: number;
  criticLr?: number;
  /** default cosine, as DeepSpeed-Chat */
  schedule?: ScheduleKind;
  warmupSteps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  /** EMA of the actor with this decay; absent: off */
  emaDecay?: number;
  seed?: number;
}

/** What only the caller can know: the roles' adapters, the run's size and its data. */
export interface PpoRunShape {
  roles: Roles;
  epochs: number;
  generationBatchSize: number;
  /** optimizer steps of the whole run (the learning-rate schedules' length) */
  totalSteps: number;
  maxBatchTokens: number;
  maxAnswerTokens: number;
  ptx: PpoSettings["ptx"];
}

export function ppoSettings(shape: PpoRunShape, k: PpoKnobs): PpoSettings {
  const schedule = (lr: number): PpoSettings["actorSchedule"] => ({ kind: k.schedule ?? "cosine", lr, warmupSteps: k.warmupSteps ?? 0, totalSteps: shape.totalSteps });
  // the key order is the one checkpoints have recorded since PPO began (trainer_state.json)
  return {
    roles: shape.roles,
    epochs: shape.epochs,
    generationBatchSize: shape.generationBatchSize,
    trainBatchSize: k.trainBatchSize ?? PPO_DEFAULTS.trainBatchSize,
    ppoEpochs: k.ppoEpochs ?? PPO_DEFAULTS.ppoEpochs,
    maxBatchTokens: shape.maxBatchTokens,
    sampling: { temperature: k.temperature ?? 1, topP: k.topP ?? 1, topK: k.topK ?? 0, maxTokens: shape.maxAnswerTokens },
    klCtl: k.klCtl ?? PPO_DEFAULTS.klCtl,
    clipRewardValue: k.clipRewardValue ?? PPO_DEFAULTS.clipRewardValue,
    gamma: k.gamma ?? PPO_DEFAULTS.gamma,
    lambda: k.lambda ?? PPO_DEFAULTS.lambda,
    clipRange: k.clipRange ?? PPO_DEFAULTS.clipRange,
    clipRangeValue: k.clipRangeValue ?? PPO_DEFAULTS.clipRangeValue,
    whitenAdvantages: k.whitenAdvantages ?? false,
    actorSchedule: schedule(k.actorLr ?? PPO_DEFAULTS.actorLr),
    criticSchedule: schedule(k.criticLr ?? PPO_DEFAULTS.criticLr),
    optimizer: ppoOptimizer(k.weightDecay, k.maxGradNorm),
    ema: k.emaDecay ?? null,
    ptx: shape.ptx,
    seed: k.seed ?? 0,
  };
}
