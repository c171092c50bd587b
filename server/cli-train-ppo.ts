// `hybridchat train ppo`: PPO against a reward model (engine/train/ppo-run.ts), with a
// progress bar (reward, KL, where the time goes) and the JSONL log of every step.
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { existsSync } from "node:fs";
import { SingleBar, Presets } from "cli-progress";
import { SCHEDULES, type ScheduleKind } from "../engine/train/lr-schedule.js";
import { PPO_DEFAULTS } from "../engine/train/ppo.js";
import { PPO_LOG, runPpoFromFiles } from "../engine/train/ppo-run.js";
import { TrainingInterrupted } from "../engine/train/sft.js";
import { floatOption, intOption, UsageError } from "./cli-errors.js";
import { TRAIN_PPO_HELP } from "./cli-help.js";
import { parseTargets } from "./cli-train.js";

const C = "train ppo";

export async function ppoCommand(argv: string[]): Promise<void> {
  const str = { type: "string" } as const;
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      actor: str,
      model: str,
      "reward-model": str,
      prompts: str,
      out: str,
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
      "lora-rank": str,
      "lora-alpha": str,
      "target-modules": { type: "string", default: "all" },
      seed: { type: "string", default: "0" },
      threads: str,
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(TRAIN_PPO_HELP);
    return;
  }
  const required = { actor: "the SFT adapter or model to train", "reward-model": "the reward model adapter", prompts: "the prompts JSONL file", out: "where to write the actor, critic and log" } as const;
  for (const [k, what] of Object.entries(required)) if (values[k as keyof typeof required] === undefined) throw new UsageError(`--${k} is required (${what})`, C);
  for (const k of ["actor", "model", "reward-model", "prompts", "ptx-data"] as const)
    if (values[k] !== undefined && !existsSync(values[k]!)) throw new UsageError(`--${k} ${values[k]}: no such ${k === "prompts" || k === "ptx-data" ? "file" : "directory"}`, C);
  const schedule = values.schedule as ScheduleKind;
  if (!SCHEDULES.includes(schedule)) throw new UsageError(`--schedule must be one of ${SCHEDULES.join(", ")}, got "${values.schedule}"`, C);
  const int = (k: keyof typeof values, min: number, max: number): number | undefined => intOption(values[k] as string | undefined, k, C, min, max);
  const num = (k: keyof typeof values, min: number, max: number, exclusive = false): number | undefined => floatOption(values[k] as string | undefined, k, C, min, max, exclusive);

  const bar = new SingleBar(
    {
      format: "ppo [{bar}] {percentage}% | step {value}/{total} | reward {reward} | kl {kl} | gen {gen}s train {train}s switch {sw}s | eta {eta_formatted}",
      hideCursor: true,
      stream: process.stderr,
      etaBuffer: 10,
    },
    Presets.shades_classic,
  );
  let drawing = false;
  const say = (line: string): void => void process.stdout.write(line + "\n");
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const r = await runPpoFromFiles({
      actor: values.actor!,
      modelDir: values.model,
      rewardModel: values["reward-model"]!,
      promptsFile: values.prompts!,
      outDir: values.out!,
      epochs: int("epochs", 1, 10000),
      generationBatchSize: int("generation-batch", 1, 4096),
      trainBatchSize: int("train-batch", 1, 4096),
      ppoEpochs: int("ppo-epochs", 1, 1000),
      maxPromptTokens: int("max-prompt-tokens", 1, 1 << 24),
      maxAnswerTokens: int("max-answer-tokens", 1, 1 << 24),
      temperature: num("temperature", 0, 100, true),
      topP: num("top-p", 0, 1, true),
      topK: int("top-k", 0, 1 << 24),
      klCtl: num("kl-ctl", 0, 1e6),
      clipRewardValue: num("clip-reward", 0, 1e9, true),
      gamma: num("gamma", 0, 1),
      lambda: num("lambda", 0, 1),
      clipRange: num("clip-range", 0, 10, true),
      clipRangeValue: num("clip-range-value", 0, 1e9, true),
      whitenAdvantages: values["whiten-advantages"],
      actorLr: num("actor-lr", 0, 1, true),
      criticLr: num("critic-lr", 0, 1, true),
      schedule,
      warmupSteps: int("warmup-steps", 0, 1 << 30),
      weightDecay: num("weight-decay", 0, 10),
      maxGradNorm: num("max-grad-norm", 0, 1e9),
      emaDecay: values.ema ? PPO_DEFAULTS.ema : undefined,
      ptxFile: values["ptx-data"],
      ptxCoef: num("ptx-coef", 0, 1e6),
      loraRank: int("lora-rank", 1, 4096),
      loraAlpha: num("lora-alpha", 0, 1e6, true),
      targets: parseTargets(values["target-modules"]!, C),
      seed: int("seed", 0, 0xffffffff),
      threads: int("threads", 1, 4096) ?? availableParallelism(),
      signal: abort.signal,
      onStart: (i) => {
        const s = i.settings;
        say(
          `${i.prompts} prompts${i.skippedPrompts ? ` (${i.skippedPrompts} longer than --max-prompt-tokens skipped)` : ""}; actor: ${i.actor === "fresh" ? "a fresh LoRA" : "the SFT adapter"}; ` +
            `${i.totalSteps} step${i.totalSteps === 1 ? "" : "s"} of ${s.generationBatchSize} answers (≤ ${s.sampling.maxTokens} tokens), ${s.ppoEpochs} PPO epoch(s) in batches of ${s.trainBatchSize}; ` +
            `kl_ctl ${s.klCtl}, reward clip ±${s.clipRewardValue}, γ ${s.gamma}, λ ${s.lambda}, clip ${s.clipRange}/${s.clipRangeValue}; lr ${s.actorSchedule.lr}/${s.criticSchedule.lr} ${s.actorSchedule.kind}` +
            (s.ema !== null ? `; EMA ${s.ema}` : "") +
            (s.ptxCoef !== null ? `; ptx ×${s.ptxCoef}` : ""),
        );
        // cli-progress draws nothing without a terminal: the per-step log file is the record then
        if (process.stderr.isTTY) (bar.start(i.totalSteps, 0, { reward: "-", kl: "-", gen: "-", train: "-", sw: "-" }), (drawing = true));
      },
      onStep: (e) => {
        const fields = { reward: e.reward.toFixed(3), kl: e.kl.toFixed(3), gen: e.generation_s.toFixed(1), train: (e.experience_s + e.training_s).toFixed(1), sw: e.switch_s.toFixed(3) };
        if (drawing) bar.update(e.step, fields);
        else say(`step ${e.step}: reward ${fields.reward}, kl ${fields.kl}, policy loss ${e.policy_loss.toFixed(4)}, value loss ${e.value_loss.toFixed(4)}`);
      },
    });
    if (drawing) bar.stop();
    say(
      `wrote the actor to ${values.out}/actor and the critic to ${values.out}/critic (${r.steps} step${r.steps === 1 ? "" : "s"}; log ${values.out}/${PPO_LOG})\n` +
        `serve it with: hybridchat serve --model ${r.base} --adapter NAME=${values.out}/actor`,
    );
  } catch (e) {
    if (drawing) bar.stop();
    if (e instanceof TrainingInterrupted) {
      process.stderr.write(`hybridchat: ${e.message}; nothing was saved\n`);
      process.exit(130);
    }
    throw e;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
