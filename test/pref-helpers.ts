// Shared by the reward-model and DPO tests: seeded samples of stories260K's own story
// continuations (through the engine, as serving makes them), and preference pairs built
// from them: a continuation that mentions the chosen word preferred over one that does not.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { Engine } from "../engine/engine.js";
import { collect, samplingParams } from "./generation-helpers.js";
import { microBatches, trainBatch } from "../engine/train/loop/batches.js";
import { addAdapter, savePeftAdapter } from "../engine/peft.js";

/** the behaviour preferred, mentioning an animal: about 1 in 5 of stories260K's 32-token continuations */
export const WORD = /\b(dog|cat|bird|bear|duck|frog|bunny|fish|puppy|kitty|cow|horse|pig|lion|mouse|animal|rabbit|owl|bug)s?\b/i;

export const STORY_PROMPTS = [
  "Once upon a time, there was a little boy named Tim.",
  "One day, a girl named Lily went to the park.",
  "Once upon a time, there was a big house.",
  "Tom and Sue were playing outside.",
  "Once upon a time, there was a little girl.",
  "One sunny day, Ben went for a walk.",
  "There was a small farm near the hill.",
  "Mia had a red ball.",
  "Once upon a time, in a small town, there lived a kind man.",
  "Sam liked to play in the garden.",
  "One day, a little bird flew to the tree.",
  "Once upon a time, there was a happy family.",
  "Max went to the store with his mom.",
  "Anna found a box in the yard.",
  "Once upon a time, there was a boy who liked to run.",
  "The sun was shining and the sky was blue.",
];

/** held-out prompts: no pair is built on them */
export const HELD_OUT_PROMPTS = [
  "Once upon a time, there was a little boy.",
  "One day, Tim went to the park with his dad.",
  "Lucy and her friend were in the garden.",
  "Once upon a time, there was a small house in the woods.",
];

export interface Sample {
  prompt: string;
  text: string;
  /** the prompt's tokens and the sampled ones, as the model saw them */
  promptTokens: number[];
  tokens: number[];
}

/** `perPrompt` seeded samples (temperature 1) of `maxTokens` tokens after each prompt. */
export async function sampleStories(model: LoadedModel, prompts: readonly string[], perPrompt: number, maxTokens: number, seed: number, adapter: string | null = null): Promise<Sample[]> {
  const engine = new Engine(model, { maxBatch: 32, maxQueue: 4096, maxBatchTokens: 1024 });
  try {
    const jobs: Promise<Sample>[] = [];
    prompts.forEach((prompt, p) => {
      for (let k = 0; k < perPrompt; k++) {
        const params = samplingParams({ temperature: 1, maxTokens, seed: seed + 1000 * p + k });
        const promptTokens = model.tokenizer.encode(prompt, true);
        jobs.push(collect(engine.generate({ promptTokens, params, adapter })).then((r) => ({ prompt, text: r.text, promptTokens, tokens: r.tokens })));
      }
    });
    return await Promise.all(jobs);
  } finally {
    await engine.close();
  }
}

export const rate = (samples: readonly Sample[], word: RegExp = WORD): number => samples.filter((s) => word.test(s.text)).length / Math.max(samples.length, 1);

/**
 * {"prompt","chosen","rejected"} pairs: per prompt, samples with the word (WORD unless given) paired one to one
 * with samples without it (no sample in two pairs, so a model cannot pass by memorising a few).
 */
export function preferencePairs(samples: readonly Sample[], word: RegExp = WORD): { prompt: string; chosen: string; rejected: string }[] {
  const byPrompt = new Map<string, Sample[]>();
  for (const s of samples) byPrompt.set(s.prompt, [...(byPrompt.get(s.prompt) ?? []), s]);
  const out: { prompt: string; chosen: string; rejected: string }[] = [];
  for (const [prompt, ss] of byPrompt) {
    const yes = ss.filter((s) => word.test(s.text));
    const no = ss.filter((s) => !word.test(s.text));
    for (let i = 0; i < Math.min(yes.length, no.length); i++) out.push({ prompt, chosen: yes[i].text, rejected: no[i].text });
  }
  return out;
}
/**
 * Mean per-token log p_adapter − log p_base over the sampled continuations: the Monte-Carlo
 * estimate of KL(policy ‖ reference) per token when the samples come from the adapter.
 */
export async function meanLogRatio(model: LoadedModel, samples: readonly Sample[], adapter: string): Promise<number> {
  const examples = samples.map((s) => {
    const ids = [...s.promptTokens, ...s.tokens];
    const mask = new Uint8Array(ids.length);
    for (let t = s.promptTokens.length; t < ids.length; t++) mask[t] = 1;
    return { line: 0, tokens: Int32Array.from(ids), mask };
  });
  const all = examples.map((_, i) => i);
  let sum = 0;
  let n = 0;
  for (const mb of microBatches(examples, all, 4096)) {
    const pol = await model.native.trainForward(trainBatch(examples, mb, adapter, false));
    const batch = trainBatch(examples, mb, null, false);
    const ref = await model.native.trainForward(batch);
    for (let t = 0; t < batch.targets.length; t++)
      if (batch.targets[t] >= 0) {
        sum += pol.logp[t] - ref.logp[t];
        n++;
      }
  }
  return sum / Math.max(n, 1);
}

/**
 * Saves a reward model that scores without training (a LoRA whose B is zero, as PEFT
 * initialises it, and a non-zero value head) for PPO tests that need one, not a good one.
 */
export async function saveToyRewardModel(model: LoadedModel, dir: string): Promise<void> {
  addAdapter(model.native, "toy-rm", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v"], seed: 3 }, valueHead: true });
  model.native.writeParameter("toy-rm", "value_head", Float32Array.from({ length: model.config.hiddenSize }, (_, i) => 0.1 * Math.sin(i)));
  await savePeftAdapter(model.native, model.config, "toy-rm", dir, { baseModel: model.dir });
  model.native.removeAdapter("toy-rm");
}

/**
 * What a `train ppo` CLI test runs on: the toy reward model of `base` in dir/rm and two
 * prompts in dir/prompts.jsonl.
 */
export async function writePpoInputs(base: string, dir: string): Promise<{ rm: string; prompts: string }> {
  const lm = await loadModel(base, { threads: 2, kvBlocks: 16 });
  try {
    await saveToyRewardModel(lm, join(dir, "rm"));
  } finally {
    lm.dispose();
  }
  writeFileSync(join(dir, "prompts.jsonl"), '{"prompt":"Tom had a pet"}\n{"prompt":"One day"}\n');
  return { rm: join(dir, "rm"), prompts: join(dir, "prompts.jsonl") };
}
