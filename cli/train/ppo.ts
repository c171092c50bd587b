// `hybridchat train ppo`: PPO against a reward model (engine/train/ppo/ppo-run.ts), with a
// progress bar (reward, KL, where the time goes) and the JSONL log of every step.
import { parseArgs } from "node:util";
import { PPO_DEFAULTS } from "../../engine/train/ppo/ppo.js";
import { PPO_LOG, runPpoFromFiles, type PpoRunOptions } from "../../engine/train/ppo/ppo-run.js";
import { TRAIN_PPO_HELP } from "./ppo.help.js";
import { LORA_OPTIONS, OptionReader, RESUME_HINT, RUN_OPTIONS, runInterruptible } from "./common.js";
import { Progress } from "../progress-bar.js";

const C = "train ppo";
const str = { type: "string" } as const;

/** The flags of a PPO run (also the pipeline's step 3, as --ppo-…). */
export const PPO_OPTIONS = {
  ...LORA_OPTIONS,
  epochs: str,
  "generation-batch": str,
  "train-batch": str,
  "ppo-epochs": str,
  "max-prompt-tokens": str,
  "max-answer-tokens": str,
  temperature: str,
  "top-p": str,
  "top-k": str,
  "kl-ctl": str,
  "clip-reward": str,
  gamma: str,
  lambda: str,
  "clip-range": str,
  "clip-range-value": str,
  "whiten-advantages": { type: "boolean", default: false },
  "actor-lr": str,
  "critic-lr": str,
  schedule: { type: "string", default: "cosine" },
  "warmup-steps": str,
  "weight-decay": str,
  "max-grad-norm": str,
  ema: { type: "boolean", default: false },
  "ptx-data": str,
  "ptx-coef": str,
  "save-steps": str,
  reference: { type: "string", default: "base" },
} as const;

export type PpoHyperparams = Omit<PpoRunOptions, "actor" | "modelDir" | "rewardModel" | "promptsFile" | "outDir" | "resume" | "threads" | "tensorParallel" | "device" | "model" | "signal" | "onStart" | "onStep" | "onCheckpoint">;

export function ppoHyperparams(r: OptionReader): PpoHyperparams {
  r.exist("file", "ptx-data");
  const { loraRank, loraAlpha, targets, seed } = r.lora(1);
  return {
    epochs: r.int("epochs", 1, 10000),
    generationBatchSize: r.int("generation-batch", 1, 4096),
    trainBatchSize: r.int("train-batch", 1, 4096),
    ppoEpochs: r.int("ppo-epochs", 1, 1000),
    maxPromptTokens: r.int("max-prompt-tokens", 1, 1 << 24),
    maxAnswerTokens: r.int("max-answer-tokens", 1, 1 << 24),
    temperature: r.num("temperature", 0, 100, true),
    topP: r.num("top-p", 0, 1, true),
    topK: r.int("top-k", 0, 1 << 24),
    klCtl: r.num("kl-ctl", 0, 1e6),
    clipRewardValue: r.num("clip-reward", 0, 1e9, true),
    gamma: r.num("gamma", 0, 1),
    lambda: r.num("lambda", 0, 1),
    clipRange: r.num("clip-range", 0, 10, true),
    clipRangeValue: r.num("clip-range-value", 0, 1e9, true),
    whitenAdvantages: r.bool("whiten-advantages"),
    actorLr: r.num("actor-lr", 0, 1, true),
    criticLr: r.num("critic-lr", 0, 1, true),
    schedule: r.schedule(),
    warmupSteps: r.int("warmup-steps", 0, 1 << 30),
    weightDecay: r.num("weight-decay", 0, 10),
    maxGradNorm: r.num("max-grad-norm", 0, 1e9),
    emaDecay: r.bool("ema") ? PPO_DEFAULTS.ema : undefined,
    ptxFile: r.str("ptx-data"),
    ptxCoef: r.num("ptx-coef", 0, 1e6),
    saveSteps: r.int("save-steps", 1, 1 << 30),
    reference: r.choice("reference", ["base", "actor"] as const),
    // the shape of a fresh actor LoRA (an SFT adapter keeps its own)
    loraRank,
    loraAlpha,
    targets,
    seed,
  };
}

export const ppoProgress = (): Progress => new Progress("ppo [{bar}] {percentage}% | step {value}/{total} | reward {reward} | kl {kl} | gen {gen}s train {train}s switch {sw}s");

/** What the user sees of a PPO run: the settings at the start, the bar per step. */
export function ppoReports(p: Progress, resume: boolean, out: string): Pick<PpoRunOptions, "onStart" | "onStep"> {
  return {
    onStart: (i) => {
      const s = i.settings;
      p.say(
        `${i.prompts} prompts${i.skippedPrompts ? ` (${i.skippedPrompts} longer than --max-prompt-tokens skipped)` : ""}; actor: ${i.actor === "fresh" ? "a fresh LoRA" : "the SFT adapter"}; ` +
          `${i.totalSteps} step${i.totalSteps === 1 ? "" : "s"} of ${s.generationBatchSize} answers (≤ ${s.sampling.maxTokens} tokens), ${s.ppoEpochs} PPO epoch(s) in batches of ${s.trainBatchSize}; ` +
          `kl_ctl ${s.klCtl}, reward clip ±${s.clipRewardValue}, γ ${s.gamma}, λ ${s.lambda}, clip ${s.clipRange}/${s.clipRangeValue}; lr ${s.actorSchedule.lr}/${s.criticSchedule.lr} ${s.actorSchedule.kind}` +
          (s.ema !== null ? `; EMA ${s.ema}` : "") +
          (s.ptxCoef !== null ? `; ptx ×${s.ptxCoef}` : "") +
          `; reference: ${s.reference === "actor" ? "the SFT adapter, frozen" : "the base"}`,
      );
      if (i.resumedFrom) p.say(`resuming from ${i.resumedFrom} (step ${i.startStep})`);
      else if (resume) p.say(`no checkpoint in ${out} yet: starting from the beginning`);
      p.start(i.totalSteps, i.startStep, { reward: "-", kl: "-", gen: "-", train: "-", sw: "-" });
    },
    onStep: (e) => {
      p.update(e.step, { reward: e.reward.toFixed(3), kl: e.kl.toFixed(3), gen: e.generation_s.toFixed(1), train: (e.experience_s + e.training_s).toFixed(1), sw: e.switch_s.toFixed(3) });
      if (!process.stderr.isTTY) p.say(`ppo step ${e.step}: reward ${e.reward.toFixed(3)}, kl ${e.kl.toFixed(3)}, policy loss ${e.policy_loss.toFixed(4)}, value loss ${e.value_loss.toFixed(4)}`);
    },
  };
}

export async function ppoCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: { actor: str, model: str, "reward-model": str, prompts: str, ...PPO_OPTIONS, ...RUN_OPTIONS },
  });
  if (values.help) {
    process.stdout.write(TRAIN_PPO_HELP);
    return;
  }
  const r = new OptionReader(values, C);
  r.require({ actor: "the SFT adapter or model to train", "reward-model": "the reward model adapter", prompts: "the prompts JSONL file", out: "where to write the actor, critic and log" });
  r.exist("directory", "actor", "model", "reward-model");
  r.exist("file", "prompts");
  const hyper = ppoHyperparams(r);
  const device = r.device();
  const out = values.out!;
  const progress = ppoProgress();
  await runInterruptible(progress, RESUME_HINT, async (signal) => {
    const result = await runPpoFromFiles({
      actor: values.actor!,
      modelDir: values.model,
      rewardModel: values["reward-model"]!,
      promptsFile: values.prompts!,
      outDir: out,
      resume: values.resume,
      threads: r.threads(),
      tensorParallel: r.int("tensor-parallel", 1, 64),
      device,
      signal,
      ...hyper,
      ...ppoReports(progress, values.resume, out),
    });
    progress.stop();
    progress.say(
      `wrote the actor to ${out}/actor and the critic to ${out}/critic (${result.steps} step${result.steps === 1 ? "" : "s"}; log ${out}/${PPO_LOG})\n` +
        `serve it with: hybridchat serve --model ${result.base} --adapter NAME=${out}/actor`,
    );
  });
}
