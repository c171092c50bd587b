// What every training command shares (train sft|rm|dpo|ppo, pipeline): the option tables
// and the readers that turn their strings into run options (with a prefix, so `pipeline`
// can take each step's flags as --sft-lr, --rm-epochs, --ppo-kl-ctl…), the progress bar on
// stderr, Ctrl-C as a clean stop between steps, and the exit code of an interrupted run.
import { availableParallelism } from "node:os";
import { existsSync } from "node:fs";
import type { DeviceKind, LinearName } from "../../native/index.js";
import { cudaGemmLine, cudaTrainingLine, DEVICE_CHOICES, DeviceUnavailableError, resolveDevice } from "../../engine/device.js";
import { LINEAR_NAMES } from "../../engine/peft.js";
import { TrainingInterrupted } from "../../engine/train/loop/loop.js";
import { SCHEDULES, type ScheduleKind } from "../../engine/train/loop/lr-schedule.js";
import { autoOrInt, floatOption, intOption, UsageError } from "../errors.js";
import type { Progress } from "../progress-bar.js";

const str = { type: "string" } as const;

/** The LoRA shape and the run-wide flags of every training command. */
export const LORA_OPTIONS = {
  "lora-rank": { type: "string", default: "8" },
  "lora-alpha": str,
  "target-modules": { type: "string", default: "all" },
  seed: { type: "string", default: "0" },
} as const;

/** The flags of a run over a data file with epochs and checkpoints (sft, rm, dpo). */
export const EPOCH_RUN_OPTIONS = {
  ...LORA_OPTIONS,
  validation: str,
  epochs: { type: "string", default: "auto" },
  lr: str,
  "batch-size": { type: "string", default: "auto" },
  "max-length": str,
} as const;

/** Flags only a command run on its own has (the pipeline owns these for its steps). */
export const COMMAND_OPTIONS = {
  threads: str,
  device: { type: "string", default: "cpu" },
  help: { type: "boolean", short: "h" },
} as const;

/** What a training command run on its own takes besides its hyperparameters: where it writes, --resume, the ranks each layer is split over, threads and help. */
export const RUN_OPTIONS = {
  out: str,
  resume: { type: "boolean", default: false },
  "tensor-parallel": str,
  ...COMMAND_OPTIONS,
} as const;

/** The same for a run over a data file (sft, rm, dpo): the model and data too, as OptionReader.fileRun reads them. */
export const FILE_RUN_OPTIONS = {
  model: str,
  data: str,
  ...RUN_OPTIONS,
} as const;

export type OptionValues = Record<string, string | boolean | undefined>;

/** "q,k,v" or HF names ("q_proj,v_proj") or "all" -> canonical targets in a fixed order. */
function parseTargets(value: string, C: string, flag = "target-modules"): LinearName[] {
  if (value === "all" || value === "all-linear") return [...LINEAR_NAMES];
  const set = new Set<LinearName>();
  for (const raw of value.split(",").map((s) => s.trim()).filter(Boolean)) {
    const t = raw.replace(/_proj$/, "") as LinearName;
    if (!LINEAR_NAMES.includes(t)) throw new UsageError(`--${flag}: unknown module "${raw}"; use any of ${LINEAR_NAMES.join(",")} (or q_proj … down_proj, or all)`, C);
    set.add(t);
  }
  if (set.size === 0) throw new UsageError(`--${flag} is empty; use e.g. q,v or all`, C);
  return LINEAR_NAMES.filter((t) => set.has(t));
}

/**
 * Typed reads of parsed flags, named in errors as the user typed them: `prefix` + key
 * ("sft-" + "lr" → --sft-lr).
 */
export class OptionReader {
  constructor(
    readonly values: OptionValues,
    readonly command: string,
    readonly prefix = "",
  ) {}

  flag(k: string): string {
    return this.prefix + k;
  }

  str(k: string): string | undefined {
    const v = this.values[this.flag(k)];
    return typeof v === "string" ? v : undefined;
  }

  bool(k: string): boolean {
    return this.values[this.flag(k)] === true;
  }

  int(k: string, min: number, max: number): number | undefined {
    return intOption(this.str(k), this.flag(k), this.command, min, max);
  }

  num(k: string, min: number, max: number, exclusive = false): number | undefined {
    return floatOption(this.str(k), this.flag(k), this.command, min, max, exclusive);
  }

  auto(k: string, max: number): number | "auto" {
    return autoOrInt(this.str(k) ?? "auto", this.flag(k), this.command, max);
  }

  /** one of a fixed set of words */
  choice<T extends string>(k: string, allowed: readonly T[]): T | undefined {
    const v = this.str(k);
    if (v !== undefined && !allowed.includes(v as T)) throw new UsageError(`--${this.flag(k)} must be one of ${allowed.join(", ")}, got "${v}"`, this.command);
    return v as T | undefined;
  }

  schedule(k = "schedule"): ScheduleKind | undefined {
    return this.choice(k, SCHEDULES);
  }

  targets(): LinearName[] {
    return parseTargets(this.str("target-modules") ?? "all", this.command, this.flag("target-modules"));
  }

  /** the LoRA shape and seed shared by every command */
  lora(minRank: number): { loraRank: number; loraAlpha?: number; targets: LinearName[]; seed: number } {
    return {
      loraRank: this.int("lora-rank", minRank, 4096) ?? 8,
      loraAlpha: this.num("lora-alpha", 0, 1e6, true),
      targets: this.targets(),
      seed: this.int("seed", 0, 0xffffffff) ?? 0,
    };
  }

  /** the epochs, learning rate, batch and length of a run over a data file */
  epochRun(): { epochs: number | "auto"; lr?: number; batchSize: number | "auto"; maxLength?: number } {
    return {
      epochs: this.auto("epochs", 1000),
      lr: this.num("lr", 0, 1, true),
      batchSize: this.auto("batch-size", 1 << 20),
      maxLength: this.int("max-length", 2, 1 << 24),
    };
  }

  /** the files, output and run control of a `train sft|rm|dpo` command */
  fileRun(signal: AbortSignal): { modelDir: string; dataFile: string; validationFile?: string; outDir: string; resume: boolean; threads: number; signal: AbortSignal } {
    return { modelDir: this.str("model")!, dataFile: this.str("data")!, validationFile: this.str("validation"), outDir: this.str("out")!, resume: this.bool("resume"), threads: this.threads(), signal };
  }

  /**
   * --device cpu|cuda|auto: where the model is loaded. cuda without a usable device is a
   * usage error naming the library paths searched; a cuda model says on stderr where it
   * runs and which GEMM serves it.
   */
  device(): DeviceKind {
    const choice = this.choice("device", DEVICE_CHOICES) ?? "cpu";
    let device: DeviceKind;
    try {
      device = resolveDevice(choice);
    } catch (e) {
      if (e instanceof DeviceUnavailableError) throw new UsageError(e.message, this.command);
      throw e;
    }
    if (device === "cuda") process.stderr.write(`hybridchat: ${cudaTrainingLine(this.int("tensor-parallel", 1, 64) ?? 1)}\nhybridchat: ${cudaGemmLine()}\n`);
    return device;
  }

  threads(): number {
    return this.int("threads", 1, 4096) ?? availableParallelism();
  }

  /** usage errors for missing required flags, each saying what it is for */
  require(what: Record<string, string>): void {
    for (const [k, why] of Object.entries(what)) if (this.str(k) === undefined) throw new UsageError(`--${this.flag(k)} is required (${why})`, this.command);
  }

  /** usage errors for paths that do not exist */
  exist(kind: "file" | "directory", ...keys: string[]): void {
    for (const k of keys) {
      const v = this.str(k);
      if (v !== undefined && !existsSync(v)) throw new UsageError(`--${this.flag(k)} ${v}: no such ${kind}`, this.command);
    }
  }
}

/** What an epoch run (sft, rm, dpo) tells at its start, whatever it trains on. */
export interface EpochRunStart {
  stats: { truncated: number; dropped: number };
  settings: { epochs: number; batchSize: number; lr: number; schedule: string; warmupSteps: number; maxLength: number };
  stepsPerEpoch: number;
  resumedFrom: string | null;
  startStep: number;
}

/**
 * The start of an epoch run: `head` (what it trains on, and how) with the schedule, the
 * truncation warnings, where it resumes from; then the bar.
 */
export function sayRunStart(
  p: Progress,
  unit: { item: string; batch: string },
  head: string,
  i: EpochRunStart & { totalSteps: number },
  resume: boolean,
  out: string,
  fields: Record<string, string>,
): void {
  const s = i.settings;
    p.say(`${head}; ${s.epochs} epochs × ${i.stepsPerEpoch} steps of ${s.batchSize} ${unit.batch}; lr ${s.lr} ${s.schedule}, ${s.warmupSteps} warm-up steps`);
  if (i.stats.truncated > 0) p.say(`warning: ${i.stats.truncated} ${unit.item} were longer than ${s.maxLength} tokens and were truncated (--max-length)`);
  if (i.stats.dropped > 0) p.say(`warning: ${i.stats.dropped} ${unit.item} had nothing left to learn after truncation and were skipped`);
  if (i.resumedFrom) p.say(`resuming from ${i.resumedFrom} (step ${i.startStep})`);
  else if (resume) p.say(`no checkpoint in ${out} yet: starting from the beginning`);
  p.start(i.totalSteps, i.startStep, fields);
}

export const percent = (x: number | null): string => (x === null ? "-" : `${(100 * x).toFixed(1)}%`);

/**
 * Runs a training command with SIGINT/SIGTERM turned into an abort between steps (a
 * second Ctrl-C while a checkpoint is written does not kill it), the bar stopped whatever
 * happens, and an interrupted run ending with exit code 130 and `after` (what to do next).
 */
export async function runInterruptible(progress: { stop(): void }, after: string | (() => string), run: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await run(abort.signal);
  } catch (e) {
    progress.stop();
    if (e instanceof TrainingInterrupted) {
      process.stderr.write(`hybridchat: ${e.message}; ${typeof after === "string" ? after : after()}\n`);
      process.exit(130);
    }
    throw e;
  } finally {
    progress.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

export const RESUME_HINT = "continue from the last checkpoint with the same command and --resume";
