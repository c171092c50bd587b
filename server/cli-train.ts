// `hybridchat train sft`: supervised fine-tuning from a JSONL file, with a progress bar
// (loss, tokens/s, ETA), a JSONL log of every step, checkpoints every epoch and --resume.
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { existsSync } from "node:fs";
import { MultiBar, Presets, type SingleBar } from "cli-progress";
import type { LinearName } from "../native/index.js";
import { LINEAR_NAMES } from "../engine/peft.js";
import { SCHEDULES, type ScheduleKind } from "../engine/train/lr-schedule.js";
import { runSftFromFiles, TRAIN_LOG } from "../engine/train/sft-run.js";
import { TrainingInterrupted } from "../engine/train/sft.js";
import { autoOrInt, floatOption, intOption, UsageError } from "./cli-errors.js";
import { TRAIN_HELP, TRAIN_SFT_HELP } from "./cli-help.js";

const C = "train sft";

/** "q,k,v" or HF names ("q_proj,v_proj") or "all" -> canonical targets in a fixed order. */
export function parseTargets(value: string, C = "train sft"): LinearName[] {
  if (value === "all" || value === "all-linear") return [...LINEAR_NAMES];
  const set = new Set<LinearName>();
  for (const raw of value.split(",").map((s) => s.trim()).filter(Boolean)) {
    const t = raw.replace(/_proj$/, "") as LinearName;
    if (!LINEAR_NAMES.includes(t)) throw new UsageError(`--target-modules: unknown module "${raw}"; use any of ${LINEAR_NAMES.join(",")} (or q_proj … down_proj, or all)`, C);
    set.add(t);
  }
  if (set.size === 0) throw new UsageError(`--target-modules is empty; use e.g. q,v or all`, C);
  return LINEAR_NAMES.filter((t) => set.has(t));
}

export async function trainCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") {
    process.stdout.write(TRAIN_HELP);
    return;
  }
  if (sub === "rm" || sub === "dpo") return (await import("./cli-train-pref.js")).preferenceCommand(sub, rest);
  if (sub === "ppo") return (await import("./cli-train-ppo.js")).ppoCommand(rest);
  if (sub !== "sft") throw new UsageError(`unknown training method "${sub}" (available: sft, rm, dpo, ppo)`, "train");
  return sftCommand(rest);
}

async function sftCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: "string" },
      data: { type: "string" },
      out: { type: "string" },
      validation: { type: "string" },
      "lora-rank": { type: "string", default: "8" },
      "lora-alpha": { type: "string" },
      "lora-dropout": { type: "string", default: "0" },
      "target-modules": { type: "string", default: "all" },
      epochs: { type: "string", default: "auto" },
      lr: { type: "string" },
      "batch-size": { type: "string", default: "auto" },
      schedule: { type: "string", default: "linear" },
      "warmup-steps": { type: "string" },
      seed: { type: "string", default: "0" },
      "max-length": { type: "string" },
      resume: { type: "boolean", default: false },
      threads: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(TRAIN_SFT_HELP);
    return;
  }
  for (const k of ["model", "data", "out"] as const)
    if (values[k] === undefined) throw new UsageError(`--${k} is required (${{ model: "the checkpoint directory to fine-tune", data: "the training JSONL file", out: "where to write the adapter, log and checkpoints" }[k]})`, C);
  for (const k of ["model", "data", "validation"] as const)
    if (values[k] !== undefined && !existsSync(values[k]!)) throw new UsageError(`--${k} ${values[k]}: no such ${k === "model" ? "directory" : "file"}`, C);
  const schedule = values.schedule as ScheduleKind;
  if (!SCHEDULES.includes(schedule)) throw new UsageError(`--schedule must be one of ${SCHEDULES.join(", ")}, got "${values.schedule}"`, C);
  const loraRank = intOption(values["lora-rank"], "lora-rank", C, 0, 4096)!;

  const bars = new MultiBar(
    {
      format: "train [{bar}] {percentage}% | step {value}/{total} | epoch {epoch} | loss {loss} | {tps} tok/s | eta {eta_formatted}",
      hideCursor: true,
      stream: process.stderr,
      etaBuffer: 20,
    },
    Presets.shades_classic,
  );
  let bar: SingleBar | null = null;
  const say = (line: string): void => {
    if (bar) bars.log(line + "\n");
    else process.stdout.write(line + "\n");
  };
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const result = await runSftFromFiles({
      modelDir: values.model!,
      dataFile: values.data!,
      validationFile: values.validation,
      outDir: values.out!,
      loraRank,
      loraAlpha: floatOption(values["lora-alpha"], "lora-alpha", C, 0, 1e6, true),
      loraDropout: floatOption(values["lora-dropout"], "lora-dropout", C, 0, 0.99)!,
      targets: parseTargets(values["target-modules"]!),
      epochs: autoOrInt(values.epochs!, "epochs", C, 1000),
      lr: floatOption(values.lr, "lr", C, 0, 1, true),
      batchSize: autoOrInt(values["batch-size"]!, "batch-size", C, 1 << 20),
      schedule,
      warmupSteps: intOption(values["warmup-steps"], "warmup-steps", C, 0, 1 << 30),
      seed: intOption(values.seed, "seed", C, 0, 0xffffffff)!,
      maxLength: intOption(values["max-length"], "max-length", C, 2, 1 << 24),
      resume: values.resume!,
      threads: intOption(values.threads, "threads", C, 1, 4096) ?? availableParallelism(),
      signal: abort.signal,
      onStart: (i) => {
        const s = i.settings;
        say(
          `${i.examples} examples (${i.stats.tokens} tokens, ${i.stats.lossTokens} learned)` +
            (i.validationExamples ? `, ${i.validationExamples} validation` : "") +
            `; ${s.loraRank > 0 ? `LoRA r=${s.loraRank} alpha=${s.loraAlpha} on ${s.targets.join(",")}` : "full fine-tuning"}` +
            `; ${s.epochs} epochs × ${i.stepsPerEpoch} steps of ${s.batchSize} sequences; lr ${s.lr} ${s.schedule}, ${s.warmupSteps} warm-up steps`,
        );
        if (i.stats.truncated > 0) say(`warning: ${i.stats.truncated} examples were longer than ${s.maxLength} tokens and were truncated (--max-length)`);
        if (i.stats.dropped > 0) say(`warning: ${i.stats.dropped} examples had nothing left to learn after truncation and were skipped`);
        if (i.resumedFrom) say(`resuming from ${i.resumedFrom} (step ${i.startStep})`);
        else if (values.resume) say(`no checkpoint in ${values.out} yet: starting from the beginning`);
        // cli-progress draws nothing without a terminal: plain lines (above) are the output then
        if (process.stderr.isTTY) bar = bars.create(i.totalSteps, i.startStep, { epoch: "-", loss: "-", tps: "-" });
      },
      onStep: (e) => bar?.update(e.step, { epoch: e.epoch, loss: e.loss.toFixed(4), tps: Math.round(e.tokens_per_s) }),
      onEpoch: (e) => say(`epoch ${e.epoch}: train loss ${e.train_loss.toFixed(4)}${e.val_loss === null ? "" : `, validation loss ${e.val_loss.toFixed(4)}`}`),
      onCheckpoint: (d) => say(`checkpoint ${d}`),
    });
    bars.stop();
    bar = null;
    const full = result.settings.loraRank === 0;
    say(
      `wrote ${full ? "the fine-tuned checkpoint" : "the PEFT adapter"} to ${values.out} (${result.steps} steps; log ${values.out}/${TRAIN_LOG})\n` +
        (full ? `serve it with: hybridchat serve --model ${values.out}` : `serve it with: hybridchat serve --model ${values.model} --adapter NAME=${values.out}`),
    );
  } catch (e) {
    bars.stop();
    if (e instanceof TrainingInterrupted) {
      process.stderr.write(`hybridchat: ${e.message}; continue from the last checkpoint with the same command and --resume\n`);
      process.exit(130);
    }
    throw e;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
