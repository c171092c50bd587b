// Shared by the PPO tests: sampling stories260K's own stories, their text (for the rate of
// a behaviour and for preference files), and the KL of an adapter to the base over sampled answers.
import type { LoadedModel } from "../engine/model.js";
import type { Engine } from "../engine/engine.js";
import type { SamplingParams } from "../engine/types.js";
import { answerLogp, generateRollouts, type Rollout } from "../engine/train/experience.js";

export function sampling(seed: number, maxTokens: number): SamplingParams {
  return { temperature: 1, topP: 1, topK: 0, minP: 0, seed, presencePenalty: 0, frequencyPenalty: 0, logitBias: {}, maxTokens, stop: [], logprobs: false, topLogprobs: 0, ignoreEos: false };
}

/** The answer as it continues the prompt's text (its leading space kept), as serving streams it. */
export function answerText(lm: LoadedModel, r: Rollout): string {
  const d = lm.tokenizer.detokenizer(Array.from(r.tokens.subarray(0, r.promptLength)));
  let text = "";
  for (const id of r.tokens.subarray(r.promptLength)) if (!lm.tokenizer.eosIds.includes(id)) text += d.push(id);
  return text + d.flush();
}

/** n answers, cycling through the openings, sampled with seeds seed0, seed0+1, … */
export async function sample(lm: LoadedModel, engine: Engine, openings: readonly string[], n: number, adapter: string | null, seed0: number, maxTokens: number): Promise<Rollout[]> {
  const prompts = Array.from({ length: n }, (_, i) => lm.tokenizer.encode(openings[i % openings.length], true));
  return generateRollouts(engine, lm.tokenizer.eosIds, prompts, (i) => sampling(seed0 + i, maxTokens), adapter);
}

/** Mean over the answers of Σ_t (logp_adapter − logp_base): the sequence-level KL estimate on the adapter's own samples. */
export async function klToBase(lm: LoadedModel, rollouts: readonly Rollout[], adapter: string): Promise<number> {
  const a = await answerLogp(lm.native, rollouts, adapter, 8192);
  const b = await answerLogp(lm.native, rollouts, null, 8192);
  let kl = 0;
  a.forEach((x, i) => x.forEach((v, j) => (kl += v - b[i][j])));
  return kl / rollouts.length;
}
