// One `train sft` run, from files to files: validate and encode the data, pick the "auto"
// hyperparameters, start fresh or resume from the last checkpoint in the output directory,
// train, log every step to <out>/train_log.jsonl, checkpoint every epoch, save the result.
// The CLI adds argument parsing and a progress bar; tests call this directly.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { appendFile, mkdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { AdapterSpec, LinearName } from "../../native/index.js";
import { loadModel, type LoadedModel } from "../model.js";
import { addAdapter } from "../peft.js";
import { readSftJsonl, SftDataError } from "./sft-data.js";
import { encodeExamples, type EncodeStats, type EncodedExample } from "./sft-encode.js";
import { autoBatchSize, autoEpochs, autoWarmupSteps, defaultLearningRate } from "./hyperparams.js";
import { stepsPerEpoch } from "./batches.js";
import type { ScheduleKind } from "./lr-schedule.js";
import { runSft, totalSteps, type EpochEvent, type StepEvent } from "./sft.js";
import {
  dataHash,
  lastCheckpoint,
  readTrainerState,
  restoreOptimizer,
  restoreWeights,
  saveCheckpoint,
  saveWeights,
  settingsMismatch,
  type RunSettings,
  type TrainedWeights,
  type TrainerState,
} from "./run-state.js";

export const TRAIN_LOG = "train_log.jsonl";
/** the adapter's name inside the model while training (never visible outside) */
const ADAPTER = "sft";

export interface SftRunOptions {
  modelDir: string;
  dataFile: string;
  validationFile?: string;
  outDir: string;
  /** 0 = full fine-tuning */
  loraRank: number;
  /** default 2 × rank */
  loraAlpha?: number;
  loraDropout: number;
  targets: LinearName[];
  epochs: number | "auto";
  /** default: hyperparams.ts defaultLearningRate */
  lr?: number;
  batchSize: number | "auto";
  seed: number;
  /** default: the model's context */
  maxLength?: number;
  schedule: ScheduleKind;
  /** default: 3 % of the steps */
  warmupSteps?: number;
  /** tokens per micro-batch; default max(maxLength, 4096) */
  maxBatchTokens?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  resume: boolean;
  threads?: number;
  /** a model already loaded from modelDir (tests); the run neither reloads nor disposes it */
  model?: LoadedModel;
  signal?: AbortSignal;
  onStart?: (info: SftRunInfo) => void;
  onStep?: (e: StepEvent) => void;
  onEpoch?: (e: EpochEvent) => void;
  onCheckpoint?: (dir: string) => void;
}

export interface SftRunInfo {
  examples: number;
  validationExamples: number;
  stats: EncodeStats;
  settings: RunSettings;
  totalSteps: number;
  stepsPerEpoch: number;
  /** the checkpoint resumed from, or null */
  resumedFrom: string | null;
  startStep: number;
}

export interface SftRunResult extends SftRunInfo {
  steps: number;
  lastEpoch: EpochEvent | null;
}

export class SftRunError extends Error {
  constructor(
    message: string,
    readonly code: "out_not_empty" | "resume_mismatch" | "no_examples",
  ) {
    super(message);
    this.name = "SftRunError";
  }
}

/** Files that say a directory already holds a run's output. */
function holdsRun(dir: string): boolean {
  if (!existsSync(dir)) return false;
  return readdirSync(dir).some((f) => f === TRAIN_LOG || f === "adapter_config.json" || f === "model.safetensors" || /^checkpoint-\d+$/.test(f));
}

/** Keeps the log lines up to the checkpoint resumed from, so the log reads as one run. */
async function trimLog(file: string, step: number, epoch: number): Promise<void> {
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

function encodeFile(model: LoadedModel, file: string, maxLength: number): { encoded: EncodedExample[]; stats: EncodeStats } {
  const { encoded, stats, errors } = encodeExamples({ tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, maxLength }, readSftJsonl(file));
  if (errors.length > 0) throw new SftDataError(file, errors);
  if (encoded.length === 0) throw new SftRunError(`${file}: every example was cut to nothing by --max-length ${maxLength}; raise it`, "no_examples");
  return { encoded, stats };
}

export async function runSftFromFiles(o: SftRunOptions): Promise<SftRunResult> {
  const outDir = resolve(o.outDir);
  const modelDir = resolve(o.modelDir);
  if (!o.resume && holdsRun(outDir))
    throw new SftRunError(`--out ${o.outDir} already holds a training run; pass --resume to continue it, or choose another directory`, "out_not_empty");
  // validate the data files before paying for the model
  readSftJsonl(o.dataFile);
  if (o.validationFile) readSftJsonl(o.validationFile);

  const lm = o.model ?? (await loadModel(modelDir, { threads: o.threads, kvBlocks: 4 }));
  try {
    const maxLength = Math.min(o.maxLength ?? lm.maxContext, lm.config.maxPositions);
    const train = encodeFile(lm, o.dataFile, maxLength);
    const val = o.validationFile ? encodeFile(lm, o.validationFile, maxLength) : null;
    const n = train.encoded.length;
    const epochs = o.epochs === "auto" ? autoEpochs(n) : o.epochs;
    const batchSize = Math.min(n, o.batchSize === "auto" ? autoBatchSize(n) : o.batchSize);
    const total = totalSteps(n, { epochs, batchSize });
    const lr = o.lr ?? defaultLearningRate(o.loraRank);
    const settings: RunSettings = {
      loraRank: o.loraRank,
      loraAlpha: o.loraRank > 0 ? (o.loraAlpha ?? 2 * o.loraRank) : 0,
      loraDropout: o.loraRank > 0 ? o.loraDropout : 0,
      targets: o.loraRank > 0 ? [...o.targets] : [],
      epochs,
      batchSize,
      lr,
      schedule: o.schedule,
      warmupSteps: o.warmupSteps ?? autoWarmupSteps(total),
      maxLength,
    };
    const hash = dataHash(train.encoded);

    const resumeDir = o.resume ? lastCheckpoint(outDir) : null;
    let state: TrainerState | null = null;
    if (resumeDir) {
      state = readTrainerState(resumeDir);
      const diff = settingsMismatch(state.settings, settings);
      if (state.data_hash !== hash) diff.push("the training data changed");
      if (state.rng.seed !== o.seed) diff.push(`seed: ${state.rng.seed} → ${o.seed}`);
      if (diff.length > 0)
        throw new SftRunError(`cannot resume from ${resumeDir}: ${diff.join("; ")}. Run with the same options, or without --resume into a new --out`, "resume_mismatch");
    }

    let adapter: { name: string; spec: AdapterSpec } | null = null;
    if (o.loraRank > 0) {
      const spec: AdapterSpec = {
        lora: { rank: o.loraRank, alpha: settings.loraAlpha, dropout: settings.loraDropout, targets: [...o.targets], seed: o.seed },
        valueHead: false,
      };
      adapter = { name: ADAPTER, spec };
      if (resumeDir) restoreWeights(resumeDir, lm.native, lm.config, adapter);
      else addAdapter(lm.native, ADAPTER, spec);
      lm.native.setTrainable({ adapter: ADAPTER });
    } else {
      lm.native.setTrainable({ base: true });
      if (resumeDir) restoreWeights(resumeDir, lm.native, lm.config, null);
    }
    if (resumeDir) restoreOptimizer(resumeDir, lm.native);

    const weights: TrainedWeights = { model: lm.native, config: lm.config, modelDir: lm.dir, adapter };
    const info: SftRunInfo = {
      examples: n,
      validationExamples: val?.encoded.length ?? 0,
      stats: train.stats,
      settings,
      totalSteps: total,
      stepsPerEpoch: stepsPerEpoch(n, batchSize),
      resumedFrom: resumeDir,
      startStep: state?.global_step ?? 0,
    };
    await mkdir(outDir, { recursive: true });
    // checkpoints a killed run was still writing (complete ones have been renamed)
    for (const f of readdirSync(outDir)) if (/^checkpoint-\d+\.tmp-\d+$/.test(f)) await rm(join(outDir, f), { recursive: true, force: true });
    const log = join(outDir, TRAIN_LOG);
    if (state) await trimLog(log, state.global_step, state.epoch);
    else await writeFile(log, "");
    o.onStart?.(info);

    let lastEpoch: EpochEvent | null = null;
    let pending: Promise<void> = Promise.resolve();
    const steps = await runSft(
      lm.native,
      train.encoded,
      val?.encoded ?? null,
      {
        adapter: adapter?.name ?? null,
        epochs,
        batchSize,
        maxBatchTokens: o.maxBatchTokens ?? Math.max(maxLength, 4096),
        seed: o.seed,
        schedule: { kind: o.schedule, lr, warmupSteps: settings.warmupSteps, totalSteps: total },
        optimizer: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: o.weightDecay ?? 0, maxGradNorm: o.maxGradNorm ?? 1 },
      },
      {
        signal: o.signal,
        onStep: (e) => {
          // one chain of appends keeps the lines in step order without blocking the loop
          pending = pending.then(() => appendFile(log, JSON.stringify({ type: "step", ...e }) + "\n"));
          o.onStep?.(e);
        },
        onEpoch: async (e) => {
          lastEpoch = e;
          await pending;
          await appendFile(log, JSON.stringify({ type: "eval", ...e }) + "\n");
          o.onEpoch?.(e);
          const st: TrainerState = { global_step: e.step, epoch: e.epoch, total_steps: total, rng: { seed: o.seed }, data_hash: hash, settings };
          // saved first: `o.onCheckpoint?.(await save…)` would skip the save when no callback is given
          const dir = await saveCheckpoint(outDir, weights, st);
          o.onCheckpoint?.(dir);
        },
      },
      state?.epoch ?? 0,
    ).finally(() => pending);
    await saveWeights(weights, outDir);
    return { ...info, steps, lastEpoch };
  } finally {
    if (!o.model) lm.dispose();
  }
}
