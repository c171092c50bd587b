// `hybridchat train sft`: supervised fine-tuning from a JSONL file, with a progress bar
// (loss, tokens/s, ETA), a JSONL log of every step, checkpoints every epoch and --resume.
// `hybridchat train` itself dispatches to the methods.
import { parseArgs } from "node:util";
import type { ZeroStage } from "../../native/index.js";
import { runSftFromFiles, TRAIN_LOG, type SftRunOptions } from "../../engine/train/sft/sft-run.js";
import { UsageError } from "../errors.js";
import { didYouMean } from "../suggest.js";
import { TRAIN_HELP } from "./train.help.js";
import { TRAIN_SFT_HELP } from "./sft.help.js";
import { EPOCH_RUN_OPTIONS, FILE_RUN_OPTIONS, OptionReader, RESUME_HINT, runInterruptible, sayRunStart } from "./common.js";
import { Progress } from "../progress-bar.js";

const C = "train sft";
const TRAIN_METHODS = ["sft", "rm", "dpo", "ppo"];

/** The flags of an SFT run (also the pipeline's step 1, as --sft-…). */
export const SFT_OPTIONS = {
  ...EPOCH_RUN_OPTIONS,
  "lora-dropout": { type: "string", default: "0" },
  schedule: { type: "string", default: "linear" },
  "warmup-steps": { type: "string" },
} as const;

export type SftHyperparams = Omit<
  SftRunOptions,
  "modelDir" | "dataFile" | "validationFile" | "outDir" | "resume" | "threads" | "tensorParallel" | "device" | "model" | "signal" | "onStart" | "onStep" | "onEpoch" | "onCheckpoint" | "onWriteProgress"
>;

export function sftHyperparams(r: OptionReader): SftHyperparams {
  return {
    ...r.lora(0),
    ...r.epochRun(),
    loraDropout: r.num("lora-dropout", 0, 0.99) ?? 0,
    schedule: r.schedule() ?? "linear",
    warmupSteps: r.int("warmup-steps", 0, 1 << 30),
  };
}

export const sftProgress = (): Progress => new Progress("sft [{bar}] {percentage}% | step {value}/{total} | epoch {epoch} | loss {loss} | {tps} tok/s");

/** What the user sees of an SFT run: one line at the start and per epoch, the bar per step. */
export function sftReports(p: Progress, resume: boolean, out: string): Pick<SftRunOptions, "onStart" | "onStep" | "onEpoch" | "onCheckpoint" | "onWriteProgress"> {
  return {
    onStart: (i) => {
      const s = i.settings;
      const head =
        `${i.examples} examples (${i.stats.tokens} tokens, ${i.stats.lossTokens} learned)` +
        (i.validationExamples ? `, ${i.validationExamples} validation` : "") +
        `; ${s.loraRank > 0 ? `LoRA r=${s.loraRank} alpha=${s.loraAlpha} on ${s.targets.join(",")}` : "full fine-tuning"}`;
      sayRunStart(p, { item: "examples", batch: "sequences" }, head, i, resume, out, { epoch: "-", loss: "-", tps: "-" });
    },
    onStep: (e) => p.update(e.step, { epoch: e.epoch, loss: e.loss.toFixed(4), tps: Math.round(e.tokens_per_s) }),
    onEpoch: (e) => p.say(`epoch ${e.epoch}: train loss ${e.train_loss.toFixed(4)}${e.val_loss === null ? "" : `, validation loss ${e.val_loss.toFixed(4)}`}`),
    onCheckpoint: (d) => p.say(`checkpoint ${d}`),
    onWriteProgress: p.writing(),
  };
}

export async function trainCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") {
    process.stdout.write(TRAIN_HELP);
    return;
  }
  if (sub === "rm" || sub === "dpo") return (await import("./pref.js")).preferenceCommand(sub, rest);
  if (sub === "ppo") return (await import("./ppo.js")).ppoCommand(rest);
  if (sub !== "sft") throw new UsageError(`unknown training method "${sub}"${didYouMean(sub, TRAIN_METHODS)} (available: ${TRAIN_METHODS.join(", ")})`, "train");
  return sftCommand(rest);
}

async function sftCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      ...FILE_RUN_OPTIONS,
      ...SFT_OPTIONS,
      "data-parallel": { type: "string", default: "1" },
      "zero-stage": { type: "string", default: "0" },
    },
  });
  if (values.help) {
    process.stdout.write(TRAIN_SFT_HELP);
    return;
  }
  const r = new OptionReader(values, C);
  r.require({ model: "the checkpoint directory to fine-tune", data: "the training JSONL file", out: "where to write the adapter, log and checkpoints" });
  r.exist("directory", "model");
  r.exist("file", "data", "validation");
  const hyper = sftHyperparams(r);
  const tensorParallel = r.int("tensor-parallel", 1, 64);
  const dataParallel = r.int("data-parallel", 1, 64);
  if ((tensorParallel ?? 1) > 1 && (dataParallel ?? 1) > 1)
    throw new UsageError("--tensor-parallel and --data-parallel cannot be combined (yet): use one of them", C);
  const device = r.device();
  const out = values.out!;
  const progress = sftProgress();
  await runInterruptible(progress, RESUME_HINT, async (signal) => {
    const result = await runSftFromFiles({
      ...r.fileRun(signal),
      ...hyper,
      tensorParallel,
      device,
      dataParallel,
      zeroStage: r.int("zero-stage", 0, 3) as ZeroStage | undefined,
      ...sftReports(progress, values.resume!, out),
    });
    progress.stop();
    const full = result.settings.loraRank === 0;
    progress.say(
      `wrote ${full ? "the fine-tuned checkpoint" : "the PEFT adapter"} to ${out} (${result.steps} steps; log ${out}/${TRAIN_LOG})\n` +
        (full ? `serve it with: hybridchat serve --model ${out}` : `serve it with: hybridchat serve --model ${values.model} --adapter NAME=${out}`),
    );
  });
}
