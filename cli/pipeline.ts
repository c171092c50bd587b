// `hybridchat pipeline`: the three RLHF steps in one command (engine/train/pipeline/pipeline.ts), each
// with the progress bar and report lines of its own `train` command and one summary line,
// then the training-curves figure. Each step's flags are its command's, prefixed.
import { parseArgs } from "node:util";
import { PIPELINE_STEPS, runPipeline, STEP_DIRS, STEP_NAMES, type PipelineStep, type StepResult } from "../engine/train/pipeline/pipeline.js";
import { PPO_LOG } from "../engine/train/ppo/ppo-run.js";
import { UsageError } from "./errors.js";
import { PIPELINE_HELP } from "./pipeline.help.js";
import { COMMAND_OPTIONS, OptionReader, percent, runInterruptible } from "./train/common.js";
import { SFT_OPTIONS, sftHyperparams, sftProgress, sftReports } from "./train/sft.js";
import { prefHyperparams, prefProgress, RM_OPTIONS, rmReports } from "./train/pref.js";
import { PPO_OPTIONS, ppoHyperparams, ppoProgress, ppoReports } from "./train/ppo.js";

const C = "pipeline";
const str = { type: "string" } as const;

/** A step command's option table with every flag behind a prefix: lr → sft-lr. */
function prefixed<T extends Record<string, object>>(prefix: string, table: T): Record<string, T[keyof T]> {
  return Object.fromEntries(Object.entries(table).map(([k, v]) => [prefix + k, v])) as Record<string, T[keyof T]>;
}

const OPTIONS = {
  model: str,
  "sft-data": str,
  "preference-data": str,
  prompts: str,
  out: str,
  step: str,
  resume: { type: "boolean", default: false } as const,
  "tensor-parallel": str,
  ...prefixed("sft-", SFT_OPTIONS),
  ...prefixed("rm-", RM_OPTIONS),
  ...prefixed("ppo-", PPO_OPTIONS),
  // the actor starts from step 1's adapter: DeepSpeed-Chat's reference is that SFT model, not the base
  "ppo-reference": { type: "string", default: "actor" } as const,
  ...COMMAND_OPTIONS,
};

/** `--step 2 3` as DeepSpeed-Chat spells it: the numbers after --step become one value ("2,3"). */
function joinStepValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    out.push(argv[i]);
    if (argv[i] !== "--step") continue;
    const nums: string[] = [];
    while (i + 1 < argv.length && /^\d+(,\d+)*$/.test(argv[i + 1])) nums.push(argv[++i]);
    out.push(nums.join(","));
  }
  return out;
}

function parseSteps(value: string | undefined): PipelineStep[] {
  if (value === undefined) return [...PIPELINE_STEPS];
  const steps = value.split(",").filter(Boolean).map(Number);
  if (steps.length === 0 || steps.some((s, i) => !PIPELINE_STEPS.includes(s as PipelineStep) || (i > 0 && s <= steps[i - 1])))
    throw new UsageError(`--step takes some of 1 2 3 in order, e.g. --step 2 3; got "${value.replace(/,/g, " ")}"`, C);
  return steps as PipelineStep[];
}

function summary(r: StepResult, firstReward: number | null): string {
  const head = `step ${r.step} (${STEP_NAMES[r.step]}): ${r.result.steps} steps in ${r.seconds.toFixed(1)} s`;
  if (r.step === 1) {
    const e = r.result.lastEpoch;
    return `${head}, final train loss ${e?.train_loss.toFixed(4) ?? "-"}${e?.val_loss != null ? `, validation loss ${e.val_loss.toFixed(4)}` : ""} → ${r.out}`;
  }
  if (r.step === 2) {
    const e = r.result.lastEpoch;
    return `${head}, pairwise accuracy ${percent(e?.train_accuracy ?? null)}${e?.val_accuracy != null ? `, held out ${percent(e.val_accuracy)}` : ""} → ${r.out}`;
  }
  const last = r.result.last;
  return `${head}, reward ${firstReward?.toFixed(3) ?? "-"} → ${last?.reward.toFixed(3) ?? "-"}, KL ${last?.kl.toFixed(3) ?? "-"} → ${r.out}/actor (log ${r.out}/${PPO_LOG})`;
}

export async function pipelineCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: joinStepValues(argv), strict: true, allowPositionals: false, options: OPTIONS });
  if (values.help) {
    process.stdout.write(PIPELINE_HELP);
    return;
  }
  const r = new OptionReader(values, C);
  const steps = parseSteps(r.str("step"));
  r.require({ model: "the base checkpoint directory", out: "where each step writes its output" });
  const data = { 1: ["sft-data", "the SFT JSONL file"], 2: ["preference-data", "the preference JSONL file"], 3: ["prompts", "the PPO prompts JSONL file"] } as const;
  for (const s of steps) r.require({ [data[s][0]]: `${data[s][1]}, for step ${s}` });
  r.exist("directory", "model");
  r.exist("file", "sft-data", "preference-data", "prompts");
  const sft = new OptionReader(values, C, "sft-");
  sft.exist("file", "validation");
  const rm = new OptionReader(values, C, "rm-");
  rm.exist("file", "validation");
  const sftHyper = sftHyperparams(sft);
  if (sftHyper.loraRank === 0) throw new UsageError("--sft-lora-rank must be at least 1: step 3 trains the actor as a LoRA adapter", C);
  const device = r.device();
  const out = values.out!;

  // a bar per step, each drawn from its step's start to its end
  const bars = { 1: sftProgress(), 2: prefProgress("rm"), 3: ppoProgress() };
  let current: PipelineStep = steps[0];
  let firstReward: number | null = null;
  const ppoReport = ppoReports(bars[3], values.resume, `${out}/${STEP_DIRS[3]}`);
  const after = (): string => `step ${current} (${STEP_NAMES[current]}) did not finish; continue with the same command and --resume (finished steps are kept)`;
  const resume = values.resume;
  await runInterruptible({ stop: () => Object.values(bars).forEach((b) => b.stop()) }, after, async (signal) => {
    const result = await runPipeline({
      modelDir: values.model!,
      sftData: values["sft-data"],
      preferenceData: values["preference-data"],
      prompts: values.prompts,
      outDir: out,
      steps,
      resume,
      threads: r.threads(),
      tensorParallel: r.int("tensor-parallel", 1, 64),
      device,
      signal,
      sft: { ...sftHyper, validationFile: sft.str("validation"), ...sftReports(bars[1], resume, `${out}/${STEP_DIRS[1]}`) },
      rm: { ...prefHyperparams(rm), validationFile: rm.str("validation"), ...rmReports(bars[2], resume, `${out}/${STEP_DIRS[2]}`) },
      ppo: {
        ...ppoHyperparams(new OptionReader(values, C, "ppo-")),
        ...ppoReport,
        onStep: (e) => {
          firstReward ??= e.reward;
          ppoReport.onStep?.(e);
        },
      },
      onStepStart: (s) => {
        current = s;
        process.stdout.write(`step ${s} (${STEP_NAMES[s]}) → ${out}/${STEP_DIRS[s]}\n`);
      },
      onStepKept: (s, d) => process.stdout.write(`step ${s} (${STEP_NAMES[s]}): finished before, kept → ${d}\n`),
      onStepDone: (s) => {
        bars[s.step].stop();
        process.stdout.write(summary(s, firstReward) + "\n");
      },
    });
    if (result.curves) process.stdout.write(`training curves: ${result.curves}\n`);
    if (steps.includes(3)) process.stdout.write(`serve the actor with: hybridchat serve --model ${values.model} --adapter NAME=${out}/${STEP_DIRS[3]}/actor\n`);
  });
}
