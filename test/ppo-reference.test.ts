// PPO's reference for the KL term: the base with adapters off (default), or with reference
// "actor" the SFT adapter the actor starts from, frozen (DeepSpeed-Chat's ref model). At the
// first step the actor still equals its starting weights, so against that reference the KL
// is exactly zero, while against the base it is what SFT moved the model by.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { addAdapter, savePeftAdapter } from "../engine/peft.js";
import { runPpoFromFiles, type PpoRunResult } from "../engine/train/ppo/ppo-run.js";
import type { PpoStepEvent } from "../engine/train/ppo/ppo.js";
import { saveToyRewardModel } from "./pref-helpers.js";
import { storiesDir } from "./test-model.js";

describe("train ppo --reference", () => {
  let lm: LoadedModel;
  let dir: string;
  before(async () => {
    lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 256 });
    dir = mkdtempSync(join(tmpdir(), "hc-ppo-ref-"));
    await saveToyRewardModel(lm, join(dir, "rm"));
    // an "SFT" adapter that moved the model: non-zero LoRA B everywhere it adapts
    addAdapter(lm.native, "sft", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v", "down"], seed: 5 }, valueHead: false });
    for (const p of lm.native.parameters("sft").filter((q) => q.name.endsWith("lora_B")))
      lm.native.writeParameter("sft", p.name, Float32Array.from({ length: p.shape.reduce((a, b) => a * b, 1) }, (_, i) => 0.05 * Math.cos(i)));
    await savePeftAdapter(lm.native, lm.config, "sft", join(dir, "sft"), { baseModel: storiesDir });
    lm.native.removeAdapter("sft");
    writeFileSync(join(dir, "prompts.jsonl"), ["Tom had a pet", "One day", "Lily and her", "The sun was"].map((p) => JSON.stringify({ prompt: p })).join("\n") + "\n");
  });
  after(() => {
    lm?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = async (out: string, reference: "base" | "actor"): Promise<{ r: PpoRunResult; first: PpoStepEvent }> => {
    const steps: PpoStepEvent[] = [];
    const r = await runPpoFromFiles({
      actor: join(dir, "sft"),
      modelDir: storiesDir,
      rewardModel: join(dir, "rm"),
      promptsFile: join(dir, "prompts.jsonl"),
      outDir: join(dir, out),
      model: lm,
      generationBatchSize: 4,
      maxAnswerTokens: 16,
      reference,
      onStep: (e) => steps.push(e),
    });
    return { r, first: steps[0] };
  };

  test("reference actor: KL exactly 0 at the first step; reference base: the SFT drift", async () => {
    const frozen = await run("frozen", "actor");
    assert.equal(frozen.r.settings.reference, "actor");
    assert.equal(frozen.first.kl, 0);
    assert.deepEqual(lm.native.adapters(), [], "the reference copy is removed with the roles");
    const base = await run("base", "base");
    assert.equal(base.r.settings.reference, "base");
    // the same answers (same seed, same actor), scored against another reference
    assert.equal(base.first.response_length, frozen.first.response_length);
    assert.ok(Math.abs(base.first.kl) > 0.01, `KL to the base ${base.first.kl}`);
  });
});
