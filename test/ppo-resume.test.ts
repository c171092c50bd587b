// PPO --resume: a run stopped after step 2 and resumed from its checkpoint ends with the
// same actor, critic and EMA, bit for bit, and logs the same numbers per step as a run never
// stopped (the checkpoint carries both adapters, each role's AdamW moments, the EMA, the step
// and the ptx cursor; sampling seeds and prompt order are functions of (seed, step)).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { readF32Tensors } from "../engine/safetensors-writer.js";
import { TrainingInterrupted } from "../engine/train/loop/loop.js";
import { PPO_LOG, runPpoFromFiles, type PpoRunOptions } from "../engine/train/ppo/ppo-run.js";
import type { PpoStepEvent } from "../engine/train/ppo/ppo.js";
import { saveToyRewardModel } from "./pref-helpers.js";
import { storiesDir } from "./test-model.js";

describe("train ppo --resume", () => {
  let lm: LoadedModel;
  let dir: string;
  before(async () => {
    lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 256 });
    dir = mkdtempSync(join(tmpdir(), "hc-ppo-resume-"));
    await saveToyRewardModel(lm, join(dir, "rm"));
    writeFileSync(join(dir, "prompts.jsonl"), ["Tom had a pet", "One day", "Lily and her", "The sun was", "Ben and his", "Once upon a time"].map((p) => JSON.stringify({ prompt: p })).join("\n") + "\n");
    writeFileSync(join(dir, "ptx.jsonl"), ['{"prompt":"Once upon a time","completion":" there was a dog."}', '{"prompt":"Tom had","completion":" a red ball."}', '{"prompt":"Sue saw","completion":" a cat."}'].join("\n") + "\n");
  });
  after(() => {
    lm?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const opts = (out: string, over: Partial<PpoRunOptions> = {}): PpoRunOptions => ({
    actor: storiesDir,
    rewardModel: join(dir, "rm"),
    promptsFile: join(dir, "prompts.jsonl"),
    outDir: join(dir, out),
    model: lm,
    epochs: 2,
    generationBatchSize: 3,
    trainBatchSize: 2,
    maxAnswerTokens: 12,
    actorLr: 2e-3,
    criticLr: 2e-3,
    emaDecay: 0.9,
    ptxFile: join(dir, "ptx.jsonl"),
    ptxCoef: 0.5,
    seed: 7,
    ...over,
  });
  const log = (out: string): PpoStepEvent[] => readFileSync(join(dir, out, PPO_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as PpoStepEvent);
  const tensors = (out: string, file: string) => readF32Tensors(join(dir, out, file)).tensors;

  test("stopped after step 2 and resumed: the same adapters, EMA and per-step numbers as a run never stopped", async () => {
    const whole = await runPpoFromFiles(opts("whole"));
    assert.equal(whole.steps, 4);
    assert.deepEqual(readdirSync(join(dir, "whole")).filter((f) => f.startsWith("checkpoint-")), ["checkpoint-4"], "only the newest checkpoint is kept");

    const abort = new AbortController();
    await assert.rejects(
      runPpoFromFiles(opts("parts", { signal: abort.signal, onStep: (e) => e.step === 2 && abort.abort() })),
      (e) => e instanceof TrainingInterrupted && e.step === 2,
    );
    assert.deepEqual(lm.native.adapters(), [], "an interrupted run removes its roles from a lent model");
    assert.ok(existsSync(join(dir, "parts", "checkpoint-2", "trainer_state.json")));
    assert.ok(!existsSync(join(dir, "parts", "actor")));
    // a fresh run into it is refused; a resume with other settings too
    await assert.rejects(runPpoFromFiles(opts("parts")), /already holds a PPO run; pass --resume/);
    await assert.rejects(runPpoFromFiles(opts("parts", { resume: true, klCtl: 0.2 })), /cannot resume .*klCtl: 0\.1 → 0\.2/);
    await assert.rejects(runPpoFromFiles(opts("parts", { resume: true, seed: 8 })), /cannot resume .*seed: 7 → 8/);

    const resumed = await runPpoFromFiles(opts("parts", { resume: true }));
    assert.equal(resumed.startStep, 2);
    assert.match(resumed.resumedFrom!, /checkpoint-2$/);
    assert.equal(resumed.steps, 4);
    for (const f of ["actor/adapter_model.safetensors", "critic/adapter_model.safetensors", "critic/value_head.safetensors", "actor_ema/adapter_model.safetensors"]) {
      const a = tensors("whole", f);
      const b = tensors("parts", f);
      assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), f);
      for (const [k, t] of a) assert.ok(Buffer.from(b.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), `${f} ${k}`);
    }
    // the log reads as one run, and each step's numbers are those of the run never stopped
    const numbers = (e: PpoStepEvent) => [e.step, e.reward, e.kl, e.policy_loss, e.value_loss, e.entropy, e.response_length, e.ptx_loss, e.actor_lr, e.critic_lr];
    assert.deepEqual(log("parts").map(numbers), log("whole").map(numbers));
    const opt = (d: string) => readF32Tensors(join(dir, d, "checkpoint-4", "actor.optimizer.safetensors"));
    assert.deepEqual(opt("parts").metadata, opt("whole").metadata);
    for (const [k, t] of opt("whole").tensors) assert.ok(Buffer.from(opt("parts").tensors.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer)), k);
  });
});
