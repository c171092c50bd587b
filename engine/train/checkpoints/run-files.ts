// What every training run from files does around its loop (train sft, rm, dpo): refuse an
// output directory holding another run, resume from its last checkpoint only when the
// settings, data and seed agree, log every step and epoch to <out>/train_log.jsonl, and
// write a checkpoint after every epoch.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { appendFile, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AdapterSpec, NativeModel } from "../../../native/index.js";
import type { ModelConfig } from "../../types.js";
import { addAdapter, addAdapterWithData, type PeftAdapterData } from "../../peft.js";
import {
  lastCheckpoint,
  readTrainerState,
  restoreOptimizer,
  restoreWeights,
  saveCheckpoint,
  settingsMismatch,
  type RunSettings,
  type TrainedWeights,
  type TrainerState,
} from "./run-state.js";
import type { WriteProgress } from "../../safetensors-writer.js";

export const TRAIN_LOG = "train_log.jsonl";

export class TrainRunError extends Error {
  constructor(
    message: string,
    readonly code: "out_not_empty" | "resume_mismatch" | "no_examples",
  ) {
    super(message);
    this.name = "TrainRunError";
  }
}

/** Files that say a directory already holds a run's output. */
function holdsRun(dir: string): boolean {
  if (!existsSync(dir)) return false;
  return readdirSync(dir).some((f) => f === TRAIN_LOG || f === "adapter_config.json" || f === "model.safetensors" || /^checkpoint-\d+$/.test(f));
}

/** Throws out_not_empty when a fresh run would overwrite another run's output. */
export function checkOutDir(outDir: string, given: string, resume: boolean): void {
  if (!resume && holdsRun(outDir))
    throw new TrainRunError(`--out ${given} already holds a training run; pass --resume to continue it, or choose another directory`, "out_not_empty");
}

/**
 * The checkpoint to resume from (null: start fresh) and its state, after checking it was
 * written by a run with the same settings, data and seed.
 */
export function resumePoint(outDir: string, resume: boolean, settings: RunSettings, hash: string, seed: number): { dir: string; state: TrainerState } | null {
  const dir = resume ? lastCheckpoint(outDir) : null;
  if (!dir) return null;
  const state = readTrainerState(dir);
  const diff = settingsMismatch(state.settings, settings);
  if (state.data_hash !== hash) diff.push("the training data changed");
  if (state.rng.seed !== seed) diff.push(`seed: ${state.rng.seed} → ${seed}`);
  if (diff.length > 0) throw new TrainRunError(`cannot resume from ${dir}: ${diff.join("; ")}. Run with the same options, or without --resume into a new --out`, "resume_mismatch");
  return { dir, state };
}

/** Keeps the log lines up to the checkpoint resumed from, so the log reads as one run. */
export async function trimLog(file: string, step: number, epoch: number): Promise<void> {
  if (!existsSync(file)) return;
  const keep = readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => {
      if (l.trim() === "") return false;
      try {
        const r = JSON.parse(l) as { type?: string; step?: number; epoch?: number };
        return r.type === "eval" ? (r.epoch ?? 0) <= epoch : (r.step ?? 0) <= step;
      } catch {
        return false;
      }
    });
  await writeFile(file, keep.map((l) => l + "\n").join(""));
}

export interface RunLogOptions {
  outDir: string;
  /** the checkpoint's state resumed from, or null for a fresh run */
  resumed: TrainerState | null;
  weights: TrainedWeights;
  /** the trainer state of a checkpoint after `epoch` epochs, `step` steps */
  state: (step: number, epoch: number) => TrainerState;
  onCheckpoint?: (dir: string) => void;
  /** how far each big checkpoint file is written */
  onWriteProgress?: WriteProgress;
}

/** Step and epoch callbacks that log and checkpoint, and `settle` to await the pending log writes. */
export interface RunLog {
  onStep(e: object): void;
  /** logs the epoch event, calls `announce` (the caller's own report of the epoch), then writes checkpoint-<step>/ */
  onEpoch<E extends { epoch: number; step: number }>(e: E, announce?: (e: E) => void): Promise<void>;
  settle(): Promise<void>;
}

/** Creates the output directory and its log (trimmed on resume) and returns the callbacks that write them. */
export async function openRunLog(o: RunLogOptions): Promise<RunLog> {
  await mkdir(o.outDir, { recursive: true });
  // checkpoints a killed run was still writing (complete ones have been renamed)
  for (const f of readdirSync(o.outDir)) if (/^checkpoint-\d+\.tmp-\d+$/.test(f)) await rm(join(o.outDir, f), { recursive: true, force: true });
  const log = join(o.outDir, TRAIN_LOG);
  if (o.resumed) await trimLog(log, o.resumed.global_step, o.resumed.epoch);
  else await writeFile(log, "");
  let pending: Promise<void> = Promise.resolve();
  return {
    onStep: (e) => {
      // one chain of appends keeps the lines in step order without blocking the loop
      pending = pending.then(() => appendFile(log, JSON.stringify({ type: "step", ...e }) + "\n"));
    },
    onEpoch: async (e, announce) => {
      await pending;
      await appendFile(log, JSON.stringify({ type: "eval", ...e }) + "\n");
      announce?.(e);
      // saved first: `o.onCheckpoint?.(await save…)` would skip the save when no callback is given
      const dir = await saveCheckpoint(o.outDir, o.weights, o.state(e.step, e.epoch), o.onWriteProgress);
      o.onCheckpoint?.(dir);
    },
    settle: () => pending,
  };
}

/**
 * Adds the trained adapter (restored from the checkpoint resumed from, else from `init`'s
 * weights, else freshly initialised), makes it the trainable set, and restores the optimizer
 * state when resuming.
 */
export function setUpAdapter(model: NativeModel, config: ModelConfig, name: string, spec: AdapterSpec, resumeDir: string | null, init: PeftAdapterData | null = null): void {
  if (resumeDir) restoreWeights(resumeDir, model, config, { name, spec });
  else if (init) addAdapterWithData(model, name, init, spec);
  else addAdapter(model, name, spec);
  model.setTrainable({ adapter: name });
  if (resumeDir) restoreOptimizer(resumeDir, model);
}

/** The caller's view of a run's loop: its own step and epoch reports, and the stop signal. */
export interface RunCallbacks<S, E> {
  signal?: AbortSignal;
  onStep?: (e: S) => void;
  onEpoch?: (e: E) => void;
}

/**
 * Runs a method's loop with every step and epoch logged (and checkpointed) before the
 * caller hears of it, waits for the log, then saves the result; returns the steps run and
 * the last epoch's event.
 */
export async function trainLogged<S extends object, E extends { epoch: number; step: number }>(
  log: RunLog,
  o: RunCallbacks<S, E>,
  train: (cb: { signal?: AbortSignal; onStep: (e: S) => void; onEpoch: (e: E) => Promise<void> }) => Promise<number>,
  save: () => Promise<void>,
): Promise<{ steps: number; lastEpoch: E | null }> {
  let lastEpoch: E | null = null;
  const steps = await train({
    signal: o.signal,
    onStep: (e) => {
      log.onStep(e);
      o.onStep?.(e);
    },
    onEpoch: async (e) => {
      lastEpoch = e;
      await log.onEpoch(e, o.onEpoch);
    },
  }).finally(() => log.settle());
  await save();
  return { steps, lastEpoch };
}
