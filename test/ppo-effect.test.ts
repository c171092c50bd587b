// PPO by effect on the real stories260K: stories that mention a dog (the base writes one
// in roughly 10–15 % of its 64-token continuations of these openings) are preferred over
// those that don't; a reward model learns that from the base's own samples; `train ppo`
// (runPpoFromFiles, the CLI's path) trains a fresh LoRA actor against it. On held-out
// openings the saved actor must mention dogs clearly more often than the base, with the
// KL to the base bounded, and the base's own logits must be bit-identical afterwards
// (the hybrid switch reloads and rewrites nothing of the base).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { Engine } from "../engine/engine.js";
import { loadPeftAdapter, savePeftAdapter } from "../engine/peft.js";
import { runPpoFromFiles, PPO_LOG, type PpoRunResult } from "../engine/train/ppo-run.js";
import type { PpoStepEvent } from "../engine/train/ppo.js";
import type { Rollout } from "../engine/train/experience.js";
import { storiesDir } from "./test-model.js";
import { answerText, klToBase, pairwiseAccuracy, sample, trainRewardModel } from "./ppo-helpers.js";

const TRAIN = ["Tom had a pet", "Ben and his", "At the farm, there was a", "Once upon a time, there was a", "Sam had a pet", "Anna and her", "Once upon a time, there was a big", "One day, a little"];
const HELD_OUT = ["One day, a small", "Mia had a pet", "Lily and her", "On the farm, there was a"];
const DOG = /\bdogs?\b/i;
const ANSWER = 64;
const PROBE = Int32Array.from([1, 403, 407, 261, 378, 300, 350, 270, 280, 290]);

describe("PPO on stories260K: the actor learns what the reward model prefers", () => {
  let lm: LoadedModel;
  let engine: Engine;
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
  const rate = (rs: readonly Rollout[]): number => rs.filter((r) => DOG.test(answerText(lm, r))).length / rs.length;

  before(async () => {
    lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 1024 });
    engine = new Engine(lm, { maxBatch: 64, maxQueue: 4096, maxBatchTokens: 4096 });
    dir = mkdtempSync(join(tmpdir(), "hc-ppo-"));
    baseLogits = await probe();
  });
  after(async () => {
    await engine?.close();
    lm?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let rmAccuracy = 0;
  let result: PpoRunResult;
  const steps: PpoStepEvent[] = [];

  test("a reward model trained on the base's own samples ranks held-out pairs (≥ 80 %)", async (t) => {
    const own = await sample(lm, engine, TRAIN, 1200, null, 1, ANSWER);
    const yes = own.filter((r) => DOG.test(answerText(lm, r)));
    const no = own.filter((r) => !DOG.test(answerText(lm, r)));
    const base = yes.length / own.length;
    assert.ok(base > 0.05 && base < 0.4, `the base mentions a dog in ${base} of its stories: not a usable preference`);
    const pairs = yes.map((y, i): [Rollout, Rollout] => [y, no[i]]);
    const held = pairs.slice(0, Math.floor(pairs.length / 4));
    await trainRewardModel(lm, "rm", pairs.slice(held.length), 5, 2e-3);
    rmAccuracy = await pairwiseAccuracy(lm, "rm", held);
    t.diagnostic(`base dog rate ${base.toFixed(3)}; ${pairs.length} pairs; held-out accuracy ${rmAccuracy.toFixed(3)}`);
    assert.ok(rmAccuracy >= 0.8, `held-out pairwise accuracy ${rmAccuracy} over ${held.length} pairs`);
    await savePeftAdapter(lm.native, lm.config, "rm", join(dir, "rm"), { baseModel: storiesDir });
    lm.native.removeAdapter("rm");
  });

  test("train ppo: held-out stories mention a dog clearly more often, KL to the base bounded, base logits unchanged", async (t) => {
    assert.ok(existsSync(join(dir, "rm")), "needs the reward model of the previous test");
    const prompts = Array.from({ length: 16 * 32 }, (_, i) => JSON.stringify({ prompt: TRAIN[i % TRAIN.length] })).join("\n");
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
    assert.equal(result.steps, 16);
    assert.deepEqual(lm.native.adapters(), [], "the run removes its roles from a model it was given");

    // the saved actor, loaded as a serving adapter, against the base on held-out openings
    await loadPeftAdapter(lm.native, lm.config, "ppo", join(dir, "out", "actor"));
    const n = 400;
    const base = rate(await sample(lm, engine, HELD_OUT, n, null, 100000, ANSWER));
    const tuned = await sample(lm, engine, HELD_OUT, n, "ppo", 100000, ANSWER);
    const after = rate(tuned);
    // two-proportion z statistic: > 4 is far beyond what sampling noise gives
    const p = (base + after) / 2;
    const z = (after - base) / Math.sqrt((2 * p * (1 - p)) / n);
    assert.ok(after - base >= 0.1 && z > 4, `dog rate: base ${base}, after PPO ${after} (z ${z.toFixed(1)})`);
    const kl = await klToBase(lm, tuned, "ppo");
    t.diagnostic(`dog rate on held-out openings: base ${base}, after PPO ${after}, z ${z.toFixed(1)}; KL ${kl.toFixed(2)} nats per answer`);
    assert.ok(kl >= 0 && kl < 15, `KL(actor ‖ base) per answer ${kl} nats`);
    lm.native.removeAdapter("ppo");

    const now = await probe();
    assert.ok(Buffer.from(now.buffer).equals(Buffer.from(baseLogits.buffer)), "the base's logits changed");
  });

  test("the log and outputs: one line per step with the time split; actor, critic and EMA saved", () => {
    const lines = readFileSync(join(dir, "out", PPO_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as PpoStepEvent & { type: string });
    assert.equal(lines.length, 16);
    for (const l of lines) {
      for (const k of ["reward", "kl", "policy_loss", "value_loss", "entropy", "response_length", "generation_s", "experience_s", "training_s", "switch_s"] as const)
        assert.ok(Number.isFinite(l[k]), `${k} = ${l[k]}`);
      assert.ok(l.generation_s > 0 && l.training_s > 0 && l.switch_s >= 0);
      assert.ok(l.response_length > 0 && l.response_length <= ANSWER);
    }
    assert.deepEqual(lines.map((l) => l.step), steps.map((s) => s.step));
    // reward rises: the last quarter's mean score above the first quarter's
    const m = (xs: PpoStepEvent[]): number => xs.reduce((s, x) => s + x.reward, 0) / xs.length;
    assert.ok(m(steps.slice(12)) > m(steps.slice(0, 4)), `reward ${m(steps.slice(0, 4))} → ${m(steps.slice(12))}`);
    for (const d of ["actor", "critic", "actor_ema"]) assert.ok(existsSync(join(dir, "out", d, d === "critic" ? "value_head.safetensors" : "adapter_model.safetensors")), d);
  });
});
