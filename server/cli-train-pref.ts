// `hybridchat train rm` and `hybridchat train dpo`: training on preference pairs (JSONL), with
// a progress bar, a JSONL log of every step, checkpoints every epoch and --resume, as train sft.
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { existsSync } from "node:fs";
import { MultiBar, Presets, type SingleBar } from "cli-progress";
import { TRAIN_LOG } from "../engine/train/run-files.js";
import { TrainingInterrupted } from "../engine/train/loop.js";
import { runRewardModelFromFiles } from "../engine/train/rm-run.js";
import { runDpoFromFiles } from "../engine/train/dpo-run.js";
import type { PrefRunInfo, PrefRunOptions } from "../engine/train/pref-run.js";
import { autoOrInt, floatOption, intOption, UsageError } from "./cli-errors.js";
import { TRAIN_DPO_HELP, TRAIN_RM_HELP } from "./cli-help.js";
import { parseTargets } from "./cli-train.js";

export async function preferenceCommand(method: "rm" | "dpo", argv: string[]): Promise<void> {
  const C = `train ${method}`;
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
      "target-modules": { type: "string", default: "all" },
      epochs: { type: "string", default: "auto" },
      lr: { type: "string" },
      "batch-size": { type: "string", default: "auto" },
      seed: { type: "string", default: "0" },
      "max-length": { type: "string" },
      resume: { type: "boolean", default: false },
      threads: { type: "string" },
      ...(method === "dpo" ? { beta: { type: "string" as const }, adapter: { type: "string" as const } } : {}),
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(method === "rm" ? TRAIN_RM_HELP : TRAIN_DPO_HELP);
    return;
  }
  const v = values as typeof values & { beta?: string; adapter?: string };
  for (const k of ["model", "data", "out"] as const)
    if (v[k] === undefined) throw new UsageError(`--${k} is required (${{ model: "the base checkpoint directory", data: "the preference JSONL file", out: "where to write the adapter, log and checkpoints" }[k]})`, C);
  for (const k of ["model", "data", "validation", "adapter"] as const)
    if (v[k] !== undefined && !existsSync(v[k]!)) throw new UsageError(`--${k} ${v[k]}: no such ${k === "model" || k === "adapter" ? "directory" : "file"}`, C);

  const bars = new MultiBar(
    {
      format: `${method} [{bar}] {percentage}% | step {value}/{total} | epoch {epoch} | loss {loss} | acc {acc} | eta {eta_formatted}`,
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
  const common: PrefRunOptions = {
    modelDir: v.model!,
    dataFile: v.data!,
    validationFile: v.validation,
    outDir: v.out!,
    loraRank: intOption(v["lora-rank"], "lora-rank", C, 1, 4096)!,
    loraAlpha: floatOption(v["lora-alpha"], "lora-alpha", C, 0, 1e6, true),
    targets: parseTargets(v["target-modules"]!, C),
    epochs: autoOrInt(v.epochs!, "epochs", C, 1000),
    lr: floatOption(v.lr, "lr", C, 0, 1, true),
    batchSize: autoOrInt(v["batch-size"]!, "batch-size", C, 1 << 20),
    seed: intOption(v.seed, "seed", C, 0, 0xffffffff)!,
    maxLength: intOption(v["max-length"], "max-length", C, 2, 1 << 24),
    resume: v.resume!,
    threads: intOption(v.threads, "threads", C, 1, 4096) ?? availableParallelism(),
    signal: abort.signal,
    onStart: (i: PrefRunInfo) => {
      const s = i.settings;
      say(
        `${i.pairs} pairs (${i.stats.tokens} tokens)` +
          (i.validationPairs ? `, ${i.validationPairs} held out` : "") +
          `; LoRA r=${s.loraRank} alpha=${s.loraAlpha} on ${s.targets.join(",")}${s.beta !== undefined ? `; beta ${s.beta}` : ""}` +
          `; ${s.epochs} epochs × ${i.stepsPerEpoch} steps of ${s.batchSize} pairs; lr ${s.lr} ${s.schedule}, ${s.warmupSteps} warm-up steps`,
      );
      if (i.stats.truncated > 0) say(`warning: ${i.stats.truncated} pairs were longer than ${s.maxLength} tokens and were truncated (--max-length)`);
      if (i.stats.dropped > 0) say(`warning: ${i.stats.dropped} pairs had nothing left to learn after truncation and were skipped`);
      if (i.resumedFrom) say(`resuming from ${i.resumedFrom} (step ${i.startStep})`);
      else if (v.resume) say(`no checkpoint in ${v.out} yet: starting from the beginning`);
      // cli-progress draws nothing without a terminal: plain lines are the output then
      if (process.stderr.isTTY) bar = bars.create(i.totalSteps, i.startStep, { epoch: "-", loss: "-", acc: "-" });
    },
    onCheckpoint: (d) => say(`checkpoint ${d}`),
  };
  const pct = (x: number | null): string => (x === null ? "-" : `${(100 * x).toFixed(1)}%`);
  try {
    let steps: number;
    if (method === "rm") {
      ({ steps } = await runRewardModelFromFiles({
        ...common,
        onStep: (e) => bar?.update(e.step, { epoch: e.epoch, loss: e.loss.toFixed(4), acc: pct(e.accuracy) }),
        onEpoch: (e) =>
          say(`epoch ${e.epoch}: train loss ${e.train_loss.toFixed(4)}, accuracy ${pct(e.train_accuracy)}` + (e.val_accuracy === null ? "" : `; held-out accuracy ${pct(e.val_accuracy)}, mean margin ${e.val_margin!.toFixed(3)}`)),
      }));
    } else {
      ({ steps } = await runDpoFromFiles({
        ...common,
        beta: floatOption(v.beta, "beta", C, 0, 1e3, true),
        initAdapter: v.adapter,
        onStep: (e) => bar?.update(e.step, { epoch: e.epoch, loss: e.loss.toFixed(4), acc: pct(e.reward_accuracy) }),
        onEpoch: (e) =>
          say(
            `epoch ${e.epoch}: train loss ${e.train_loss.toFixed(4)}, reward accuracy ${pct(e.train_reward_accuracy)}` +
              (e.val_reward_accuracy === null ? "" : `; held-out reward accuracy ${pct(e.val_reward_accuracy)}, margin ${e.val_reward_margin!.toFixed(3)}`),
          ),
      }));
    }
    bars.stop();
    bar = null;
    say(
      `wrote the ${method === "rm" ? "reward model (PEFT adapter + value_head.safetensors)" : "DPO policy (PEFT adapter)"} to ${v.out} (${steps} steps; log ${v.out}/${TRAIN_LOG})` +
        (method === "dpo" ? `\nserve it with: hybridchat serve --model ${v.model} --adapter NAME=${v.out}` : ""),
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
