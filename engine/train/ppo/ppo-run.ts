// One `train ppo` run, from files to files: the base loaded once; the actor (an SFT
// adapter, or a fresh LoRA on a model directory), the frozen reward model and the critic
// (the reward model's tensors copied into a trainable adapter) added as adapters; the
// Engine on that same model samples the answers. Every step is logged to
// <out>/ppo_log.jsonl; the actor (and its EMA) and the critic are saved in PEFT's layout
// under <out>/actor, <out>/actor_ema and <out>/critic, as DeepSpeed-Chat names them, and
// <out>/checkpoint-<step>/ after every step (ppo-checkpoint.ts) lets `resume` continue.
// The CLI adds argument parsing and a progress bar; tests call this directly.
import { existsSync, readdirSync } from "node:fs";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { DeviceKind, AdapterSpec, LinearName } from "../../../native/index.js";
import { Engine } from "../../engine.js";
import { loadModel, type LoadedModel } from "../../model.js";
import { readJsonFile } from "../../json-file.js";
import { ADAPTER_CONFIG, addAdapter, addAdapterWithData, adapterSpec, readPeftAdapter, savePeftAdapter, type PeftAdapterData } from "../../peft.js";
import { restorePpoCheckpoint, savePpoCheckpoint, tokensHash } from "../checkpoints/ppo-checkpoint.js";
import { trimLog } from "../checkpoints/run-files.js";
import { readSftJsonl, SftDataError } from "../data/sft-data.js";
import { encodeExamples } from "../data/sft-encode.js";
import { encodePrompt, readPromptJsonl } from "../data/ppo-prompts.js";
import { directPpoModel } from "./ppo-model.js";
import { PPO_DEFAULTS, ppoTotalSteps, runPpo, type PpoSettings, type PpoStepEvent } from "./ppo.js";
import { ppoSettings, type PpoKnobs } from "./ppo-settings.js";

export const PPO_LOG = "ppo_log.jsonl";
// the roles' adapter names inside the model while training (removed afterwards)
const ROLES = { actor: "ppo_actor", critic: "ppo_critic", reward: "ppo_reward" } as const;
const REFERENCE = "ppo_reference";
const EMA = "ppo_actor_ema";

/** The run's own options; the PPO knobs (PpoKnobs: learning rates, clipping, sampling, …) with their defaults in ppo-settings.ts. */
export interface PpoRunOptions extends PpoKnobs {
  /** an SFT adapter directory (PEFT), or a model directory (the actor is then a fresh LoRA on it) */
  actor: string;
  /** the base, when `actor` is an adapter directory (default: the adapter's base_model_name_or_path) */
  modelDir?: string;
  /** the reward model: an adapter directory with value_head.safetensors (train rm's output) */
  rewardModel: string;
  promptsFile: string;
  outDir: string;
  /**
   * the KL term's reference: "base" (adapters off; the default) or "actor", the actor's
   * starting weights frozen as DeepSpeed-Chat's ref model is (the same as the base for a fresh LoRA)
   */
  reference?: "base" | "actor";
  /** for a fresh actor LoRA */
  loraRank?: number;
  loraAlpha?: number;
  targets?: LinearName[];
  epochs?: number;
  generationBatchSize?: number;
  maxPromptTokens?: number;
  maxAnswerTokens?: number;
  /** pretraining data (SFT JSONL) for the ptx loss, and its coefficient */
  ptxFile?: string;
  ptxCoef?: number;
  maxBatchTokens?: number;
  threads?: number;
  /** thread ranks each layer is split over, for generation and training alike; default 1 */
  tensorParallel?: number;
  /** where the model is loaded: "cuda" puts its serving forward (generation) on device 0; the training steps run where the engine runs them (docs/training.md); default cpu */
  device?: DeviceKind;
  /** continue from the newest checkpoint in outDir (same settings, prompts and seed) */
  resume?: boolean;
  /** a checkpoint every this many steps (and after the last); only the newest is kept. Default 1 */
  saveSteps?: number;
  /** a model already loaded (tests); the run neither reloads nor disposes it, and removes its adapters again */
  model?: LoadedModel;
  signal?: AbortSignal;
  onStart?: (info: PpoRunInfo) => void;
  onStep?: (e: PpoStepEvent) => void;
  onCheckpoint?: (dir: string) => void;
}

export interface PpoRunInfo {
  /** the base model directory */
  base: string;
  prompts: number;
  /** prompts longer than maxPromptTokens, skipped */
  skippedPrompts: number;
  totalSteps: number;
  actor: "adapter" | "fresh";
  settings: Omit<PpoSettings, "ptx" | "roles"> & { ptxCoef: number | null; reference: "base" | "actor" };
  /** the checkpoint resumed from, or null */
  resumedFrom: string | null;
  startStep: number;
}

export interface PpoRunResult extends PpoRunInfo {
  steps: number;
  last: PpoStepEvent | null;
}

export class PpoRunError extends Error {
  constructor(
    message: string,
    readonly code: "out_not_empty" | "no_prompts" | "bad_reward_model" | "bad_actor",
  ) {
    super(message);
    this.name = "PpoRunError";
  }
}

/** KV-cache blocks (of 16 tokens) a model needs to sample a whole generation batch at once. */
export function ppoKvBlocks(o: Pick<PpoRunOptions, "generationBatchSize" | "maxPromptTokens" | "maxAnswerTokens">): number {
  const tokens = (o.maxPromptTokens ?? PPO_DEFAULTS.maxPromptTokens) + (o.maxAnswerTokens ?? PPO_DEFAULTS.maxAnswerTokens);
  return (o.generationBatchSize ?? PPO_DEFAULTS.generationBatchSize) * Math.ceil(tokens / 16);
}

function isAdapterDir(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG));
}

/** The base directory: --model, else the actor adapter's base_model_name_or_path, else the actor itself (a model directory). */
function baseDir(o: PpoRunOptions): string {
  if (o.modelDir) return resolve(o.modelDir);
  if (!isAdapterDir(o.actor)) return resolve(o.actor);
  const base = readJsonFile(join(o.actor, ADAPTER_CONFIG)).base_model_name_or_path;
  if (typeof base === "string" && existsSync(join(base, "config.json"))) return resolve(base);
  throw new PpoRunError(`--actor ${o.actor} is an adapter; pass --model with the base it was trained on`, "bad_actor");
}

export async function runPpoFromFiles(o: PpoRunOptions): Promise<PpoRunResult> {
  const outDir = resolve(o.outDir);
  if (!o.resume && existsSync(outDir) && readdirSync(outDir).some((f) => f === PPO_LOG || f === "actor" || f === "critic" || /^checkpoint-\d+$/.test(f)))
    throw new PpoRunError(`--out ${o.outDir} already holds a PPO run; pass --resume to continue it, or choose another directory`, "out_not_empty");
  const promptExamples = readPromptJsonl(o.promptsFile);
  const ptxExamples = o.ptxFile ? readSftJsonl(o.ptxFile) : null;
  const genBatch = o.generationBatchSize ?? PPO_DEFAULTS.generationBatchSize;
  const maxPrompt = o.maxPromptTokens ?? PPO_DEFAULTS.maxPromptTokens;
  const maxAnswer = o.maxAnswerTokens ?? PPO_DEFAULTS.maxAnswerTokens;

  const lm = o.model ?? (await loadModel(baseDir(o), { threads: o.threads, kvBlocks: ppoKvBlocks(o), tensorParallel: o.tensorParallel, device: o.device }));
  const m = lm.native;
  const added: string[] = [];
  const add = (name: string, f: () => void): void => {
    f();
    added.push(name);
  };
  try {
    const all = promptExamples.map((p) => encodePrompt(p, lm));
    const prompts = all.filter((p) => p.length <= maxPrompt && p.length + maxAnswer <= lm.maxContext);
    if (prompts.length === 0)
      throw new PpoRunError(`${o.promptsFile}: every prompt is longer than --max-prompt-tokens ${maxPrompt} (or leaves no room for --max-answer-tokens in the context)`, "no_prompts");

    // the reward model, frozen; the critic starts as a copy of it (DS-Chat: critic_model_name_or_path = the reward model)
    const rm = readPeftAdapter(lm.config, o.rewardModel);
    if (!rm.spec.valueHead) throw new PpoRunError(`--reward-model ${o.rewardModel} has no value head (value_head.safetensors): train it with \`hybridchat train rm\``, "bad_reward_model");
    add(ROLES.reward, () => addAdapterWithData(m, ROLES.reward, rm));

    // the actor: the SFT adapter's weights, or a fresh LoRA (added below, unless a checkpoint has it)
    let actorInit: PeftAdapterData | null = null;
    let actorSpec: AdapterSpec;
    if (isAdapterDir(o.actor)) {
      actorInit = readPeftAdapter(lm.config, o.actor);
      if (!actorInit.spec.lora) throw new PpoRunError(`--actor ${o.actor} holds no LoRA`, "bad_actor");
      actorSpec = { lora: actorInit.spec.lora, valueHead: false };
    } else {
      const rank = o.loraRank ?? 8;
      actorSpec = { lora: { rank, alpha: o.loraAlpha ?? 2 * rank, dropout: 0, targets: [...(o.targets ?? ["q", "k", "v", "o", "gate", "up", "down"])], seed: o.seed ?? 0 }, valueHead: false };
    }

    let ptx: PpoSettings["ptx"] = null;
    if (ptxExamples) {
      const { encoded, errors } = encodeExamples({ tokenizer: lm.tokenizer, chatTemplate: lm.chatTemplate, maxLength: maxPrompt + maxAnswer }, ptxExamples);
      if (errors.length > 0) throw new SftDataError(o.ptxFile!, errors);
      ptx = { examples: encoded, coef: o.ptxCoef ?? PPO_DEFAULTS.ptxCoef };
    }

    const epochs = o.epochs ?? PPO_DEFAULTS.epochs;
    const generationBatchSize = Math.min(genBatch, prompts.length);
    const total = ppoTotalSteps(prompts.length, { epochs, generationBatchSize });
    // a copy of the SFT adapter, never trained; a fresh LoRA starts as the base itself
    const reference: PpoRunInfo["settings"]["reference"] = o.reference === "actor" && actorInit ? "actor" : "base";
    if (reference === "actor") add(REFERENCE, () => addAdapterWithData(m, REFERENCE, actorInit!, actorSpec));
    const settings = ppoSettings(
      {
        roles: { ...ROLES, reference: reference === "actor" ? REFERENCE : null },
        epochs,
        generationBatchSize,
        totalSteps: total,
        maxBatchTokens: o.maxBatchTokens ?? Math.max(4096, maxPrompt + maxAnswer),
        maxAnswerTokens: maxAnswer,
        ptx,
      },
      o,
    );
    const { roles: _r, ptx: _p, ...shown } = settings;
    const checkpointState = {
      total_steps: total,
      rng: { seed: settings.seed },
      data_hash: tokensHash([...prompts, ...(ptx?.examples.map((e) => e.tokens) ?? [])]),
      settings: { ...shown, ptxCoef: ptx?.coef ?? null, reference },
    };
    const checkpointRoles = { actor: { adapter: ROLES.actor, spec: actorSpec }, critic: { adapter: ROLES.critic, spec: rm.spec } };
    // a checkpoint's actor and critic, else the SFT adapter (or a fresh LoRA) and a copy of the reward model
    added.push(ROLES.actor, ROLES.critic);
    const resumed = o.resume ? restorePpoCheckpoint(outDir, m, lm.config, checkpointRoles, checkpointState) : null;
    if (!resumed) {
      addAdapterWithData(m, ROLES.critic, rm);
      if (actorInit) addAdapterWithData(m, ROLES.actor, actorInit, actorSpec);
      else addAdapter(m, ROLES.actor, actorSpec);
    }
    const info: PpoRunInfo = {
      base: lm.dir,
      prompts: prompts.length,
      skippedPrompts: all.length - prompts.length,
      totalSteps: total,
      actor: actorInit ? "adapter" : "fresh",
      settings: checkpointState.settings,
      resumedFrom: resumed?.dir ?? null,
      startStep: resumed?.state.step ?? 0,
    };

    await mkdir(outDir, { recursive: true });
    const log = join(outDir, PPO_LOG);
    if (resumed) await trimLog(log, resumed.state.step, Infinity);
    else await writeFile(log, "");
    o.onStart?.(info);
    const saveSteps = o.saveSteps ?? 1;
    const engine = new Engine(lm, { maxBatch: genBatch, maxQueue: genBatch, maxBatchTokens: Math.max(genBatch, 4096) });
    let last: PpoStepEvent | null = null;
    let result;
    try {
      result = await runPpo(
        directPpoModel(m),
        engine,
        prompts,
        settings,
        {
          signal: o.signal,
          onStep: async (e) => {
            last = e;
            await appendFile(log, JSON.stringify({ type: "step", ...e }) + "\n");
            o.onStep?.(e);
          },
          onCheckpoint: async (st) => {
            if (st.step % saveSteps !== 0 && st.step !== total) return;
            // saved first: o.onCheckpoint?.(await save…) would skip the save without a callback
            const saved = await savePpoCheckpoint(outDir, m, lm.config, lm.dir, checkpointRoles, st, checkpointState);
            o.onCheckpoint?.(saved);
          },
        },
        resumed?.state ?? null,
      );
    } finally {
      await engine.close();
    }

    const baseModel = lm.dir;
    await savePeftAdapter(m, lm.config, ROLES.actor, join(outDir, "actor"), { baseModel });
    await savePeftAdapter(m, lm.config, ROLES.critic, join(outDir, "critic"), { baseModel });
    if (result.ema) {
      // the EMA has the actor's shapes; addAdapter's fresh tensors are all overwritten
      const spec = adapterSpec(m, ROLES.actor)!;
      add(EMA, () => addAdapter(m, EMA, spec));
      for (const [name, data] of result.ema) m.writeParameter(EMA, name, data);
      await savePeftAdapter(m, lm.config, EMA, join(outDir, "actor_ema"), { baseModel, spec });
    }
    return { ...info, steps: result.steps, last };
  } finally {
    for (const name of added.reverse()) if (m.adapters().includes(name)) m.removeAdapter(name);
    if (!o.model) lm.dispose();
  }
}
