// PPO's reference for the KL term: the base with adapters off (default), or with reference
// "actor" the SFT adapter the actor starts from, frozen (DeepSpeed-Chat's ref model). At the
// first step the actor still equals its starting weights, so against that reference the KL
// is exactly zero, while against the base it is what SFT moved the model by. Sampling is
// greedy here, so the first step's answers are known in advance: the test decodes them
// itself through the inference forward (KV cache, logits) with the saved SFT adapter and
// computes Σ log p_sft − Σ log p_base over each answer in float64 — the number the step's kl
// must be for the base to be the reference; any other reference (the critic, the reward
// model, the actor itself) gives another.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { addAdapter, loadPeftAdapter, savePeftAdapter } from "../engine/peft.js";
import { runPpoFromFiles, type PpoRunResult } from "../engine/train/ppo/ppo-run.js";
import type { PpoStepEvent } from "../engine/train/ppo/ppo.js";
import { saveToyRewardModel } from "./pref-helpers.js";
import { storiesDir } from "./test-model.js";

const PROMPTS = ["Tom had a pet", "One day", "Lily and her", "The sun was"];
const ANSWER = 16;

/** log softmax(row)[id] in float64 */
function logSoftmaxAt(row: Float32Array, id: number): number {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  return row[id] - max - Math.log(sum);
}

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
    writeFileSync(join(dir, "prompts.jsonl"), PROMPTS.map((p) => JSON.stringify({ prompt: p })).join("\n") + "\n");
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
      maxAnswerTokens: ANSWER,
      temperature: 0,
      reference,
      onStep: (e) => steps.push(e),
    });
    return { r, first: steps[0] };
  };

  /**
   * The first step's kl with the base as reference, computed apart from PPO: each prompt's
   * greedy answer under the SFT adapter (ending with EOS when it ends there, as a rollout
   * keeps it), then the mean over answers of Σ_t log p_sft(a_t) − log p_base(a_t).
   */
  async function expectedKl(): Promise<number> {
    await loadPeftAdapter(lm.native, lm.config, "sft-check", join(dir, "sft"));
    const V = lm.config.vocabSize;
    const logits = async (tokens: number[], adapter: string | null): Promise<Float32Array> => {
      const out = await lm.native.forward({ seqIds: Int32Array.of(900), tokens: Int32Array.from(tokens), counts: Int32Array.of(tokens.length), logits: "all", adapters: adapter ? [adapter] : undefined });
      lm.native.freeSeq(900);
      return out;
    };
    try {
      let total = 0;
      for (const p of PROMPTS) {
        const prompt = lm.tokenizer.encode(p, true);
        const seq = [...prompt];
        while (seq.length - prompt.length < ANSWER) {
          const all = await logits(seq, "sft-check");
          const last = all.subarray(all.length - V);
          let best = 0;
          for (let v = 1; v < V; v++) if (last[v] > last[best]) best = v;
          seq.push(best);
          if (lm.tokenizer.eosIds.includes(best)) break;
        }
        const [sft, base] = [await logits(seq, "sft-check"), await logits(seq, null)];
        for (let t = prompt.length; t < seq.length; t++) {
          const at = (l: Float32Array) => logSoftmaxAt(l.subarray((t - 1) * V, t * V), seq[t]);
          total += at(sft) - at(base);
        }
      }
      return total / PROMPTS.length;
    } finally {
      lm.native.removeAdapter("sft-check");
    }
  }

  test("reference actor: KL exactly 0 at the first step; reference base: the SFT drift, as computed apart from PPO", async (t) => {
    const frozen = await run("frozen", "actor");
    assert.equal(frozen.r.settings.reference, "actor");
    assert.equal(frozen.first.kl, 0);
    assert.deepEqual(lm.native.adapters(), [], "the reference copy is removed with the roles");
    const base = await run("base", "base");
    assert.equal(base.r.settings.reference, "base");
    // the same answers (same seed, same actor), scored against another reference
    assert.equal(base.first.response_length, frozen.first.response_length);
    const want = await expectedKl();
    t.diagnostic(`first-step KL to the base: ${base.first.kl}, computed apart: ${want}`);
    assert.ok(Math.abs(want) > 0.05, `the SFT adapter must move the model for the check to mean anything (${want})`);
    // the inference and training forwards differ by float32 rounding only
    assert.ok(Math.abs(base.first.kl - want) <= 1e-4 + 1e-4 * Math.abs(want), `KL to the base ${base.first.kl}, expected ${want}`);
  });
});
