// PPO by effect on the real stories260K: stories that mention a dog (the base writes one
// in roughly 10–15 % of its 64-token continuations of these openings) are preferred over
// those that don't; `train rm` learns that from the base's own samples; `train ppo`
// (runPpoFromFiles, the CLI's path) trains a fresh LoRA actor against it. On held-out
// openings the saved actor must mention dogs clearly more often than the base and score
// clearly higher under the reward model (both by a margin sized from the sampling noise),
// with the KL to the base bounded, and the base's own logits must be bit-identical
// afterwards (the hybrid switch reloads and rewrites nothing of the base).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { LINEAR_NAMES, loadPeftAdapter } from "../engine/peft.js";
import { runRewardModelFromFiles, RM_ADAPTER } from "../engine/train/preference/rm-run.js";
import { scoreSequences } from "../engine/train/preference/rm.js";
import { runPpoFromFiles, PPO_LOG, type PpoRunResult } from "../engine/train/ppo/ppo-run.js";
import type { PpoStepEvent } from "../engine/train/ppo/ppo.js";
import { storiesDir } from "./test-model.js";
import { meanLogRatio, preferencePairs, rate, sampleStories, type Sample } from "./pref-helpers.js";
import { mean, trendT, welch } from "./stats.js";

const TRAIN = ["Tom had a pet", "Ben and his", "At the farm, there was a", "Once upon a time, there was a", "Sam had a pet", "Anna and her", "Once upon a time, there was a big", "One day, a little"];
const HELD_OUT = ["One day, a small", "Mia had a pet", "Lily and her", "On the farm, there was a"];
const DOG = /\bdogs?\b/i;
const ANSWER = 64;
const STEPS = 10;
const PROBE = Int32Array.from([1, 403, 407, 261, 378, 300, 350, 270, 280, 290]);

describe("PPO on stories260K: the actor learns what the reward model prefers", () => {
  let lm: LoadedModel;
  let dir: string;
  let baseLogits: Float32Array;
  let seq = 5000;

  /** the base's logits (adapters off) for every position of a fixed token sequence */
  async function probe(): Promise<Float32Array> {
    const id = seq++;
    try {
      return await lm.native.forward({ seqIds: Int32Array.of(id), tokens: PROBE, counts: Int32Array.of(PROBE.length), logits: "all" });
    } finally {
      lm.native.freeSeq(id);
    }
  }

  before(async () => {
    lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 1024 });
    dir = mkdtempSync(join(tmpdir(), "hc-ppo-"));
    baseLogits = await probe();
  });
  after(async () => {
    lm?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let result: PpoRunResult;
  const steps: PpoStepEvent[] = [];

  test("train rm on preferences built from the base's own samples: ≥ 80 % held-out pairwise accuracy", async (t) => {
    const own = await sampleStories(lm, TRAIN, 150, ANSWER, 1);
    const base = rate(own, DOG);
    assert.ok(base > 0.05 && base < 0.4, `the base mentions a dog in ${base} of its stories: not a usable preference`);
    const lines = preferencePairs(own, DOG).map((p) => JSON.stringify(p));
    const held = Math.floor(lines.length / 4);
    writeFileSync(join(dir, "pref-val.jsonl"), lines.slice(0, held).join("\n") + "\n");
    writeFileSync(join(dir, "pref-train.jsonl"), lines.slice(held).join("\n") + "\n");
    const rm = await runRewardModelFromFiles({
      modelDir: storiesDir,
      dataFile: join(dir, "pref-train.jsonl"),
      validationFile: join(dir, "pref-val.jsonl"),
      outDir: join(dir, "rm"),
      loraRank: 8,
      targets: [...LINEAR_NAMES],
      epochs: 5,
      lr: 2e-3,
      batchSize: 16,
      schedule: "constant",
      warmupSteps: 0,
      seed: 1,
      resume: false,
      model: lm,
    });
    const acc = rm.lastEpoch?.val_accuracy ?? 0;
    t.diagnostic(`base dog rate ${base.toFixed(3)}; ${lines.length} pairs; held-out accuracy ${acc.toFixed(3)}`);
    assert.ok(acc >= 0.8, `held-out pairwise accuracy ${acc} over ${held} pairs`);
    lm.native.removeAdapter(RM_ADAPTER);
  });

  test("train ppo: held-out stories mention a dog clearly more often, KL to the base bounded, base logits unchanged", async (t) => {
    assert.ok(existsSync(join(dir, "rm")), "needs the reward model of the previous test");
    const prompts = Array.from({ length: STEPS * 32 }, (_, i) => JSON.stringify({ prompt: TRAIN[i % TRAIN.length] })).join("\n");
    writeFileSync(join(dir, "prompts.jsonl"), prompts + "\n");
    result = await runPpoFromFiles({
      actor: storiesDir,
      rewardModel: join(dir, "rm"),
      promptsFile: join(dir, "prompts.jsonl"),
      outDir: join(dir, "out"),
      model: lm,
      generationBatchSize: 32,
      trainBatchSize: 16,
      maxAnswerTokens: ANSWER,
      actorLr: 2e-3,
      criticLr: 2e-3,
      schedule: "constant",
      emaDecay: 0.992,
      seed: 5,
      onStep: (e) => steps.push(e),
    });
    assert.equal(result.steps, STEPS);
    assert.deepEqual(lm.native.adapters(), [], "the run removes its roles from a model it was given");

    // the saved actor, loaded as a serving adapter, against the base on held-out openings
    await loadPeftAdapter(lm.native, lm.config, "ppo", join(dir, "out", "actor"));
    const n = 400;
    const baseSamples = await sampleStories(lm, HELD_OUT, n / HELD_OUT.length, ANSWER, 100000);
    const base = rate(baseSamples, DOG);
    const tuned = await sampleStories(lm, HELD_OUT, n / HELD_OUT.length, ANSWER, 100000, "ppo");
    const after = rate(tuned, DOG);
    // the reward model's own verdict on the same held-out samples: a score per story, so the
    // noise is the spread of the scores themselves
    await loadPeftAdapter(lm.native, lm.config, "rm-eval", join(dir, "rm"));
    const score = async (ss: Sample[]) => [...(await scoreSequences(lm.native, "rm-eval", ss.map((x) => Int32Array.from([...x.promptTokens, ...x.tokens]))))];
    const [r0, r1] = [await score(baseSamples), await score(tuned)];
    lm.native.removeAdapter("rm-eval");
    const zr = welch(r0, r1);
    t.diagnostic(`held-out reward-model score: base ${mean(r0).toFixed(3)}, after PPO ${mean(r1).toFixed(3)} (${zr.toFixed(1)} standard errors)`);
    assert.ok(zr > 4, `held-out score base ${mean(r0)} → PPO ${mean(r1)}: ${zr.toFixed(2)} standard errors`);
    // two-proportion z statistic: > 4 is far beyond what sampling noise gives
    const p = (base + after) / 2;
    const z = (after - base) / Math.sqrt((2 * p * (1 - p)) / n);
    assert.ok(after - base >= 0.1 && z > 4, `dog rate: base ${base}, after PPO ${after} (z ${z.toFixed(1)})`);
    // bounded: the KL penalty holds it to a fraction of a nat per token (the base itself: 0)
    const kl = await meanLogRatio(lm, tuned, "ppo");
    t.diagnostic(`dog rate on held-out openings: base ${base}, after PPO ${after}, z ${z.toFixed(1)}; KL ${kl.toFixed(3)} nats per token`);
    assert.ok(kl >= 0 && kl < 0.3, `KL(actor ‖ base) ${kl} nats per token`);
    lm.native.removeAdapter("ppo");

    const now = await probe();
    assert.ok(Buffer.from(now.buffer).equals(Buffer.from(baseLogits.buffer)), "the base's logits changed");
  });

  test("the log and outputs: one line per step with the time split; reward rising beyond its scatter; actor, critic and EMA saved", (tc) => {
    const lines = readFileSync(join(dir, "out", PPO_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as PpoStepEvent & { type: string });
    assert.equal(lines.length, STEPS);
    for (const l of lines) {
      for (const k of ["reward", "kl", "policy_loss", "value_loss", "entropy", "response_length", "generation_s", "experience_s", "training_s", "switch_s"] as const)
        assert.ok(Number.isFinite(l[k]), `${k} = ${l[k]}`);
      assert.ok(l.generation_s > 0 && l.training_s > 0 && l.switch_s >= 0);
      assert.ok(l.response_length > 0 && l.response_length <= ANSWER);
    }
    assert.deepEqual(lines.map((l) => l.step), steps.map((s) => s.step));
    // reward rises over the steps: the least-squares slope of the step means, beyond its own
    // standard error (the steps' scatter around the line is the noise)
    const { slope, t } = trendT(steps.map((s) => s.reward));
    tc.diagnostic(`reward per step ${steps.map((s) => s.reward.toFixed(3)).join(" ")}: slope ${slope.toFixed(4)}, ${t.toFixed(1)} standard errors`);
    assert.ok(slope > 0 && t > 3, `reward per step ${steps.map((s) => s.reward.toFixed(3)).join(" ")}: slope ${slope}, ${t.toFixed(2)} standard errors`);
    for (const d of ["actor", "critic", "actor_ema"]) assert.ok(existsSync(join(dir, "out", d, d === "critic" ? "value_head.safetensors" : "adapter_model.safetensors")), d);
  });
});
