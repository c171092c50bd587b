// method.type "ppo" (extension): PPO as DeepSpeed-Chat's step 3 (engine/train/ppo/ppo.ts), run
// on the serving weights. The actor is the job's new LoRA adapter (what the job publishes);
// the reward model is a succeeded reward_model job's checkpoint, frozen; the critic starts
// as a copy of it; the reference is the served base with adapters off. Rollouts are sampled
// by the serving Engine itself with the actor adapter, and every model call — role switch,
// scoring forward, training call — is one exclusive task between serving's forward steps.
// The training file gives prompts: prompt lines, the prompt part of chat or DPO lines, or of the collected
// preferences (training_file "feedback"). A validation file is not trained on (the
// continuous-RLHF gate reads it).
import { addAdapterWithData, readPeftAdapter } from "../../../engine/peft.js";
import type { LoadedModel } from "../../../engine/model.js";
import { SftDataError } from "../../../engine/train/data/sft-data.js";
import { encodePrompt, parsePromptLine } from "../../../engine/train/data/ppo-prompts.js";
import { prepareJobData } from "./job-data.js";
import { exclusivePpoModel } from "../../../engine/train/ppo/ppo-model.js";
import { PPO_DEFAULTS, ppoTotalSteps, runPpo } from "../../../engine/train/ppo/ppo.js";
import { ppoSettings } from "../../../engine/train/ppo/ppo-settings.js";
import { checkCommonValue, checkKnownHyperparameters, COMMON_KEYS, resolved, withAutos } from "./hyperparameters.js";
import { JOB_MICRO_BATCH_TOKENS, jobAdapterSpec } from "./supervised.js";
import type { MethodRun, MethodResult, TrainingMethod } from "./method.js";

const KEYS = [...COMMON_KEYS, "reward_model", "kl_ctl", "clip", "ppo_epochs", "max_new_tokens", "temperature"] as const;

/** "auto" for PPO: DeepSpeed-Chat's defaults, at most the prompts per step */
const AUTO = { n_epochs: 1, batch_size: 16, kl_ctl: PPO_DEFAULTS.klCtl, clip: PPO_DEFAULTS.clipRange, ppo_epochs: PPO_DEFAULTS.ppoEpochs, max_new_tokens: 64, temperature: 1 } as const;

function checkValue(key: string, v: unknown): string | null {
  const num = (ok: (x: number) => boolean, what: string): string | null => (v === "auto" || (typeof v === "number" && ok(v)) ? null : `${key} must be "auto" or ${what}`);
  switch (key) {
    case "reward_model":
      return typeof v === "string" && v !== "auto" ? null : `reward_model must name a succeeded reward_model job (its id or model id)`;
    case "kl_ctl":
      return num((x) => x >= 0 && x <= 10, "a number in [0, 10]");
    case "clip":
      return num((x) => x > 0 && x <= 1, "a number in (0, 1]");
    case "temperature":
      return num((x) => x > 0 && x <= 2, "a number in (0, 2]");
    case "ppo_epochs":
      return num((x) => Number.isInteger(x) && x >= 1 && x <= 16, "an integer from 1 to 16");
    case "batch_size":
      // one step's rollouts wait in the serving queue (serve --max-queue, default 256) together
      return num((x) => Number.isInteger(x) && x >= 1 && x <= 64, "an integer from 1 to 64");
    case "max_new_tokens":
      return num((x) => Number.isInteger(x) && x >= 1 && x <= 4096, "an integer from 1 to 4096");
    default:
      return checkCommonValue(key, v);
  }
}

/** the prompts' tokens, those leaving room for an answer in the context (parsed and encoded in slices) */
function jobPrompts(model: LoadedModel, text: string, maxNew: number): Promise<number[][]> {
  const room = Math.min(model.maxContext, model.config.maxPositions) - maxNew;
  const fits = (p: number[]): boolean => p.length <= Math.min(room, PPO_DEFAULTS.maxPromptTokens);
  return prepareJobData(text, {
    parse: parsePromptLine,
    encode: (p) => ({ encoded: [encodePrompt(p, model)].filter(fits), errors: [] }),
    fail: (errors) => new SftDataError("training_file", errors),
    noneParsed: "the file holds no prompts",
    noneEncoded: `every prompt is longer than ${PPO_DEFAULTS.maxPromptTokens} tokens or leaves no room for max_new_tokens ${maxNew}`,
  });
}

export const ppo: TrainingMethod = {
  type: "ppo",
  format: "dpo",
  accepts: ["prompts", "sft", "dpo"],
  publishes: true,
  checkHyperparameters: (h) => (h.reward_model === undefined ? "ppo needs hyperparameters.reward_model: a succeeded reward_model job (its id or model id)" : checkKnownHyperparameters(h, KEYS, checkValue)),
  withDefaults: (h) => withAutos(KEYS, h),
  checkReferences: (h, refs) => {
    const r = refs.rewardModel(h.reward_model as string);
    return "error" in r ? { message: r.error, param: "reward_model" } : null;
  },
  adapterSpec: jobAdapterSpec(false),

  async run(r: MethodRun): Promise<MethodResult> {
    const h = r.hyperparameters;
    const ref = String(h.reward_model);
    const found = r.references.rewardModel(ref);
    if ("error" in found) throw new Error(found.error);
    const n = (k: keyof typeof AUTO): number => resolved(h, k, AUTO[k]);
    const maxNew = n("max_new_tokens");
    const prompts = await jobPrompts(r.model, r.trainText, maxNew);
    const epochs = n("n_epochs");
    const batch = Math.min(prompts.length, n("batch_size"));
    const mult = resolved(h, "learning_rate_multiplier", 1);
    const total = ppoTotalSteps(prompts.length, { epochs, generationBatchSize: batch });
    const perEpoch = total / epochs;
    const native = r.model.native;
    const rm = readPeftAdapter(r.model.config, found.dir);
    if (!rm.spec.valueHead) throw new Error(`reward_model '${ref}' has no value head`);
    const roles = { actor: r.adapter, critic: `${r.adapter}/ppo-critic`, reward: `${r.adapter}/ppo-reward`, reference: null };
    const settings = ppoSettings(
      { roles, epochs, generationBatchSize: batch, totalSteps: total, maxBatchTokens: JOB_MICRO_BATCH_TOKENS, maxAnswerTokens: maxNew, ptx: null },
      {
        trainBatchSize: batch,
        ppoEpochs: n("ppo_epochs"),
        temperature: n("temperature"),
        klCtl: n("kl_ctl"),
        clipRange: n("clip"),
        clipRangeValue: n("clip"),
        actorLr: PPO_DEFAULTS.actorLr * mult,
        criticLr: PPO_DEFAULTS.criticLr * mult,
        schedule: "linear",
        seed: r.seed,
      },
    );
    r.report.message(`PPO on ${prompts.length} prompts against reward model ${ref}: ${epochs} epochs, batch size ${batch}, ${total} steps, kl_ctl ${settings.klCtl}, max_new_tokens ${maxNew}`);
    // the frozen reward model and the critic (a trainable copy of it), beside the actor
    await r.engine.runExclusive(async () => {
      addAdapterWithData(native, roles.reward, rm);
      try {
        addAdapterWithData(native, roles.critic, rm);
      } catch (e) {
        native.removeAdapter(roles.reward);
        throw e;
      }
    });
    let tokens = 0;
    try {
      // the rollouts share the serving engine (generateRollouts marks them background:
      // behind user requests, outside --max-queue)
      await runPpo(exclusivePpoModel(r.engine, native), r.engine, prompts, settings, {
        signal: r.signal,
        onStep: async (e) => {
          const rollouts = Math.min(batch, prompts.length - ((e.step - 1) % perEpoch) * batch);
          tokens += e.response_length * rollouts;
          const stepS = e.generation_s + e.experience_s + e.training_s + e.switch_s;
          r.report.step({
            step: e.step,
            total_steps: total,
            train_loss: e.policy_loss + e.value_loss,
            reward: e.reward,
            // per token, as the kl gauge and dpo report it; kl_sequence is PPO's per-answer sum
            kl: e.response_length > 0 ? e.kl / e.response_length : 0,
            kl_sequence: e.kl,
            policy_loss: e.policy_loss,
            value_loss: e.value_loss,
            entropy: e.entropy,
            response_length: e.response_length,
            clipfrac: e.clipfrac,
            learning_rate: e.actor_lr,
            generation_s: e.generation_s,
            experience_s: e.experience_s,
            training_s: e.training_s,
            switch_s: e.switch_s,
            tokens_per_s: stepS > 0 ? (e.response_length * rollouts) / stepS : 0,
          });
          if (e.step % perEpoch === 0) await r.report.epoch({ step: e.step, epoch: e.epoch, train_loss: e.policy_loss + e.value_loss, valid_loss: null });
        },
      });
    } finally {
      await r.engine.runExclusive(async () => {
        native.setTrainable(null);
        for (const a of [roles.critic, roles.reward]) if (native.adapters().includes(a)) native.removeAdapter(a);
      });
    }
    return {
      hyperparameters: { n_epochs: epochs, batch_size: batch, learning_rate_multiplier: mult, reward_model: ref, kl_ctl: settings.klCtl, clip: settings.clipRange, ppo_epochs: settings.ppoEpochs, max_new_tokens: maxNew, temperature: settings.sampling.temperature },
      // the sampled answer tokens trained on (each ppo_epochs times)
      trainedTokens: Math.round(tokens),
    };
  },
};
