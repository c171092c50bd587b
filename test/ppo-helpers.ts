// Shared by the PPO tests: sampling stories260K's own stories, the rate of a behaviour in
// them, a pairwise reward model trained on preferences built from them, and the KL of an
// adapter to the base over sampled answers.
import type { LoadedModel } from "../engine/model.js";
import type { Engine } from "../engine/engine.js";
import type { SamplingParams } from "../engine/types.js";
import { addAdapter } from "../engine/peft.js";
import { answerLogp, generateRollouts, rewardScores, rolloutBatch, type Rollout } from "../engine/train/experience.js";

export function sampling(seed: number, maxTokens: number): SamplingParams {
  return { temperature: 1, topP: 1, topK: 0, minP: 0, seed, presencePenalty: 0, frequencyPenalty: 0, logitBias: {}, maxTokens, stop: [], logprobs: false, topLogprobs: 0, ignoreEos: false };
}

export function answerText(lm: LoadedModel, r: Rollout): string {
  return lm.tokenizer.decode(Array.from(r.tokens.subarray(r.promptLength)), true);
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

/**
 * A reward model on (chosen, rejected) pairs: a LoRA adapter with a value head, score = the
 * value at the last token, loss −mean log σ(r_chosen − r_rejected), AdamW.
 */
export async function trainRewardModel(lm: LoadedModel, name: string, pairs: readonly [Rollout, Rollout][], epochs: number, lr: number, batchPairs = 16): Promise<void> {
  const m = lm.native;
  addAdapter(m, name, { lora: { rank: 8, alpha: 16, dropout: 0, targets: ["q", "k", "v", "o", "gate", "up", "down"], seed: 1 }, valueHead: true });
  m.setTrainable({ adapter: name });
  for (let ep = 0; ep < epochs; ep++)
    for (let b = 0; b < pairs.length; b += batchPairs) {
      const flat = pairs.slice(b, b + batchPairs).flat();
      const batch = rolloutBatch(flat, flat.map((_, i) => i), name, true, true);
      const out = await m.trainForward(batch);
      const last: number[] = [];
      let off = 0;
      for (const r of flat) last.push((off += r.tokens.length) - 1);
      const dv = new Float32Array(out.logp.length);
      const n = flat.length / 2;
      for (let k = 0; k < n; k++) {
        // d/dr_c of −log σ(r_c − r_r) = −σ(r_r − r_c)
        const g = 1 / (1 + Math.exp(out.values![last[2 * k]] - out.values![last[2 * k + 1]]));
        dv[last[2 * k]] = -g / n;
        dv[last[2 * k + 1]] = g / n;
      }
      await m.trainBackward(new Float32Array(out.logp.length), dv);
      await m.step({ lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 });
    }
  m.setTrainable(null);
}

/** Fraction of pairs the reward model ranks chosen above rejected. */
export async function pairwiseAccuracy(lm: LoadedModel, name: string, pairs: readonly [Rollout, Rollout][]): Promise<number> {
  const s = await rewardScores(lm.native, pairs.flat(), name, 8192);
  let ok = 0;
  for (let k = 0; k < pairs.length; k++) ok += s[2 * k] > s[2 * k + 1] ? 1 : 0;
  return ok / pairs.length;
}
