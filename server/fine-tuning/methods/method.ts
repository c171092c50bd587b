// What a fine-tuning method is to the job runner: which file format it trains on, which
// hyperparameters it takes, and a run on an adapter the runner has already added and made
// trainable. The runner owns everything around it (status, events, saving, publishing);
// a method is one small module (supervised.ts; dpo.ts and ppo.ts plug in the same way).
// A method that trains against another model (ppo's reward_model) resolves it through
// ModelReferences, checked when the job is created and read again when it runs.
import type { AdapterSpec } from "../../../native/index.js";
import type { LoadedModel } from "../../../engine/model.js";
import type { TrainingCalls } from "../../../engine/train/sft/sft.js";
import type { ExclusiveRunner } from "../../../engine/train/loop/exclusive-model.js";
import type { RolloutEngine } from "../../../engine/train/ppo/ppo-model.js";
import type { Hyperparameters } from "../../store/jobs.js";
import type { FileFormat } from "../../store/files.js";
import type { TrainingFormat } from "../../../engine/train/data/training-format.js";

/** What a method reports while it runs; the runner turns these into job events. */
export interface MethodReporter {
  /** one optimizer step's numbers (OpenAI's metrics event: step, train_loss, total_steps, ...) */
  step(metrics: { step: number; total_steps: number; train_loss: number } & Record<string, number>): void;
  /** awaited: an epoch is done (the runner saves a checkpoint of the adapter) */
  epoch(e: { step: number; epoch: number; train_loss: number; valid_loss: number | null }): Promise<void>;
  message(text: string): void;
}

/** The serving engine as a job sees it: exclusive tasks between forward steps, and sampling (ppo's rollouts). */
export type JobEngine = ExclusiveRunner & RolloutEngine & { usesAdapter(name: string): boolean };

/** Other models a job's hyperparameters may name, resolved from the store. */
export interface ModelReferences {
  /** a succeeded reward_model job's id, its ft: model id or one of its checkpoint ids → the adapter directory, or why not */
  rewardModel(ref: string): { dir: string } | { error: string };
}

export interface MethodRun {
  model: LoadedModel;
  engine: JobEngine;
  references: ModelReferences;
  /** the model's training calls, each run between serving's forward steps */
  training: TrainingCalls;
  /** the native adapter being trained (added and set trainable by the runner) */
  adapter: string;
  trainText: string;
  validationText: string | null;
  hyperparameters: Hyperparameters;
  seed: number;
  signal: AbortSignal;
  report: MethodReporter;
}

export interface MethodResult {
  /** the hyperparameters with every "auto" resolved, as the job then shows them */
  hyperparameters: Record<string, number | string>;
  trainedTokens: number;
}

export interface TrainingMethod {
  readonly type: string;
  /** the training file lines it reads (training_file "feedback" exports these) */
  readonly format: TrainingFormat;
  /** the uploaded files it also reads (default: `format` only) */
  readonly accepts?: readonly FileFormat[];
  /** true: the result is a chat model, published as ft:<base>:<suffix>:<job-id>; false: it stays the job's checkpoints (a reward model) */
  readonly publishes: boolean;
  /** why these hyperparameters are not acceptable (names the key), or null */
  checkHyperparameters(h: Record<string, unknown>): string | null;
  /** every accepted hyperparameter, "auto" where the request left it out */
  withDefaults(h: Record<string, unknown>): Hyperparameters;
  /** why a model the hyperparameters name cannot be used, with the param to blame, or null */
  checkReferences?(h: Record<string, unknown>, refs: ModelReferences): { message: string; param: string } | null;
  adapterSpec(seed: number): AdapterSpec;
  run(r: MethodRun): Promise<MethodResult>;
}
