// `hybridchat train rm` and `hybridchat train dpo`: training on preference pairs (JSONL), with
// a progress bar, a JSONL log of every step, checkpoints every epoch and --resume, as train sft.
import { parseArgs } from "node:util";
import { TRAIN_LOG } from "../../engine/train/checkpoints/run-files.js";
import { runRewardModelFromFiles, type RmRunOptions } from "../../engine/train/preference/rm-run.js";
import { runDpoFromFiles } from "../../engine/train/preference/dpo-run.js";
import type { PrefRunInfo, PrefRunOptions } from "../../engine/train/preference/pref-run.js";
import { TRAIN_DPO_HELP, TRAIN_RM_HELP } from "./pref.help.js";
import { EPOCH_RUN_OPTIONS, FILE_RUN_OPTIONS, OptionReader, percent, RESUME_HINT, runInterruptible, sayRunStart } from "./common.js";
import { Progress } from "../progress-bar.js";

/** The flags of a reward-model run (also the pipeline's step 2, as --rm-…). */
export const RM_OPTIONS = EPOCH_RUN_OPTIONS;

export type PrefHyperparams = Omit<PrefRunOptions, "modelDir" | "dataFile" | "validationFile" | "outDir" | "resume" | "threads" | "tensorParallel" | "device" | "model" | "signal" | "onStart" | "onCheckpoint">;

export const prefHyperparams = (r: OptionReader): PrefHyperparams => ({ ...r.lora(1), ...r.epochRun() });

export const prefProgress = (method: "rm" | "dpo"): Progress => new Progress(`${method} [{bar}] {percentage}% | step {value}/{total} | epoch {epoch} | loss {loss} | acc {acc}`);

/** What the user sees of a preference run's start and checkpoints. */
export function prefStartReports(p: Progress, resume: boolean, out: string): Pick<PrefRunOptions, "onStart" | "onCheckpoint"> {
  return {
    onStart: (i: PrefRunInfo) => {
      const s = i.settings;
      const head =
        `${i.pairs} pairs (${i.stats.tokens} tokens)` +
        (i.validationPairs ? `, ${i.validationPairs} held out` : "") +
        `; LoRA r=${s.loraRank} alpha=${s.loraAlpha} on ${s.targets.join(",")}${s.beta !== undefined ? `; beta ${s.beta}` : ""}`;
      sayRunStart(p, { item: "pairs", batch: "pairs" }, head, i, resume, out, { epoch: "-", loss: "-", acc: "-" });
    },
    onCheckpoint: (d) => p.say(`checkpoint ${d}`),
  };
}

/** What the user sees of a reward-model run. */
export function rmReports(p: Progress, resume: boolean, out: string): Pick<RmRunOptions, "onStart" | "onCheckpoint" | "onStep" | "onEpoch"> {
  return {
    ...prefStartReports(p, resume, out),
    onStep: (e) => p.update(e.step, { epoch: e.epoch, loss: e.loss.toFixed(4), acc: percent(e.accuracy) }),
    onEpoch: (e) =>
      p.say(`epoch ${e.epoch}: train loss ${e.train_loss.toFixed(4)}, accuracy ${percent(e.train_accuracy)}` + (e.val_accuracy === null ? "" : `; held-out accuracy ${percent(e.val_accuracy)}, mean margin ${e.val_margin!.toFixed(3)}`)),
  };
}

export async function preferenceCommand(method: "rm" | "dpo", argv: string[]): Promise<void> {
  const C = `train ${method}`;
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      ...FILE_RUN_OPTIONS,
      ...RM_OPTIONS,
      ...(method === "dpo" ? { beta: { type: "string" as const }, adapter: { type: "string" as const } } : {}),
    },
  });
  if (values.help) {
    process.stdout.write(method === "rm" ? TRAIN_RM_HELP : TRAIN_DPO_HELP);
    return;
  }
  const r = new OptionReader(values, C);
  r.require({ model: "the base checkpoint directory", data: "the preference JSONL file", out: "where to write the adapter, log and checkpoints" });
  r.exist("directory", "model", "adapter");
  r.exist("file", "data", "validation");
  const device = r.device();
  const out = values.out!;
  const progress = prefProgress(method);
  await runInterruptible(progress, RESUME_HINT, async (signal) => {
    const common: PrefRunOptions = {
      ...r.fileRun(signal),
      tensorParallel: r.int("tensor-parallel", 1, 64),
      device,
      ...prefHyperparams(r),
      ...prefStartReports(progress, values.resume!, out),
    };
    const { steps } =
      method === "rm"
        ? await runRewardModelFromFiles({ ...common, ...rmReports(progress, values.resume!, out) })
        : await runDpoFromFiles({
            ...common,
            beta: r.num("beta", 0, 1e3, true),
            initAdapter: r.str("adapter"),
            onStep: (e) => progress.update(e.step, { epoch: e.epoch, loss: e.loss.toFixed(4), acc: percent(e.reward_accuracy) }),
            onEpoch: (e) =>
              progress.say(
                `epoch ${e.epoch}: train loss ${e.train_loss.toFixed(4)}, reward accuracy ${percent(e.train_reward_accuracy)}` +
                  (e.val_reward_accuracy === null ? "" : `; held-out reward accuracy ${percent(e.val_reward_accuracy)}, margin ${e.val_reward_margin!.toFixed(3)}`),
              ),
          });
    progress.stop();
    progress.say(
      `wrote the ${method === "rm" ? "reward model (PEFT adapter + value_head.safetensors)" : "DPO policy (PEFT adapter)"} to ${out} (${steps} steps; log ${out}/${TRAIN_LOG})` +
        (method === "dpo" ? `\nserve it with: hybridchat serve --model ${values.model} --adapter NAME=${out}` : ""),
    );
  });
}
