// PPO experience (DeepSpeed-Chat generate_experience) on one native model: the actor's
// answers sampled by the serving Engine (KV cache, continuous batching) with the actor
// adapter, then, on the very same weights with grad off, the actor's and the reference's
// log-probs, the critic's values and the reward model's score.
//
// A rollout is an EncodedExample: prompt + answer tokens with mask 1 on the answer, so
// batches.ts packs it and each answer token j is predicted at position promptLength−1+j;
// logp, values and everything per token below are indexed by j.
import type { TrainBatch } from "../../../native/index.js";
import type { TrainingCalls } from "../loop/loop.js";
import type { RolloutEngine } from "./ppo-model.js";
import type { SamplingParams } from "../../types.js";
import { microBatches, trainBatch } from "../loop/batches.js";
import type { EncodedExample } from "../data/sft-encode.js";
import { scoreSequences } from "../preference/rm.js";

export interface Rollout extends EncodedExample {
  promptLength: number;
}

export interface Experience {
  rollout: Rollout;
  /** the actor's log-probs when it sampled the answer (ρ's denominator) */
  logpOld: Float32Array;
  /** the base's, adapters off */
  logpRef: Float32Array;
  /** the critic's value at each answer token's position */
  values: Float32Array;
  /** the reward model's value at the sequence's last token, unclipped */
  score: number;
}

/** The adapters of PPO's roles on one model. */
export interface Roles {
  actor: string;
  critic: string;
  reward: string;
  /** null: the base with adapters off; else a frozen adapter (the actor's starting weights) */
  reference: string | null;
}

export function rollout(prompt: readonly number[], answer: readonly number[]): Rollout {
  const tokens = Int32Array.from([...prompt, ...answer]);
  const mask = new Uint8Array(tokens.length);
  mask.fill(1, prompt.length);
  return { line: 0, tokens, mask, promptLength: prompt.length };
}

export function answerLength(r: Rollout): number {
  return r.tokens.length - r.promptLength;
}

/**
 * Samples one answer per prompt, all submitted at once so the engine batches them. An answer
 * that ended with an end-of-sequence token keeps it (the engine names it in the done event,
 * not as text), so stopping, and with which EOS, is an action too.
 */
export async function generateRollouts(engine: RolloutEngine, prompts: readonly (readonly number[])[], params: (i: number) => SamplingParams, adapter: string | null): Promise<Rollout[]> {
  return Promise.all(
    prompts.map(async (prompt, i) => {
      const answer: number[] = [];
      for await (const ev of engine.generate({ promptTokens: [...prompt], params: params(i), adapter, background: true })) {
        if (ev.type === "delta") answer.push(...ev.tokenIds);
        else if (ev.eosTokenId !== null) answer.push(ev.eosTokenId);
      }
      return rollout(prompt, answer);
    }),
  );
}

/** Per rollout, the answer tokens' entries of one packed forward output (logp or values at the predicting positions). */
export function answerSlices(rollouts: readonly Rollout[], indices: readonly number[], flat: Float32Array): Float32Array[] {
  const out: Float32Array[] = [];
  let off = 0;
  for (const i of indices) {
    const r = rollouts[i];
    const start = off + r.promptLength - 1;
    out.push(flat.slice(start, start + answerLength(r)));
    off += r.tokens.length;
  }
  return out;
}

/** The packed batch of some rollouts, targets on their answers. */
export function rolloutBatch(rollouts: readonly Rollout[], indices: readonly number[], adapter: string | null, grad: boolean, values: boolean): TrainBatch {
  return { ...trainBatch(rollouts, indices, adapter, grad), values };
}

/** Per rollout, the answer's log-probs or values under `adapter`, in micro-batches of at most `maxBatchTokens` tokens, grad off. */
async function perAnswer(model: TrainingCalls, rollouts: readonly Rollout[], adapter: string | null, read: "logp" | "values", maxBatchTokens: number): Promise<Float32Array[]> {
  const res: Float32Array[] = new Array(rollouts.length);
  const all = rollouts.map((_, i) => i);
  for (const mb of microBatches(rollouts, all, maxBatchTokens)) {
    const out = await model.trainForward(rolloutBatch(rollouts, mb, adapter, false, read === "values"));
    answerSlices(rollouts, mb, read === "logp" ? out.logp : out.values!).forEach((x, k) => (res[mb[k]] = x));
  }
  return res;
}

/** The answer's log-probs under `adapter` (null: the reference), no gradients. */
export function answerLogp(model: TrainingCalls, rollouts: readonly Rollout[], adapter: string | null, maxBatchTokens: number): Promise<Float32Array[]> {
  return perAnswer(model, rollouts, adapter, "logp", maxBatchTokens);
}

/** `adapter`'s value head at each answer token's predicting position, no gradients. */
export function answerValues(model: TrainingCalls, rollouts: readonly Rollout[], adapter: string, maxBatchTokens: number): Promise<Float32Array[]> {
  return perAnswer(model, rollouts, adapter, "values", maxBatchTokens);
}

/** Everything PPO needs about some rollouts, computed on the shared weights with grad off. */
export async function makeExperience(model: TrainingCalls, rollouts: readonly Rollout[], roles: Roles, maxBatchTokens: number): Promise<Experience[]> {
  const logpOld = await answerLogp(model, rollouts, roles.actor, maxBatchTokens);
  const logpRef = await answerLogp(model, rollouts, roles.reference, maxBatchTokens);
  const values = await answerValues(model, rollouts, roles.critic, maxBatchTokens);
  // the reward model's score: its value head at each sequence's last token, as train rm reads it
  const scores = await scoreSequences(model, roles.reward, rollouts.map((r) => r.tokens), maxBatchTokens);
  return rollouts.map((rollout, i) => ({ rollout, logpOld: logpOld[i], logpRef: logpRef[i], values: values[i], score: scores[i] }));
}
