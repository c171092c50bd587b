// Training on the serving model through Engine.runExclusive (engine/train/loop/exclusive-model.ts):
// with requests decoding between every training call, SFT ends with exactly the adapter
// weights of the same run on a model nobody serves, and the served outputs are unchanged.
// Also prints how long one training call of a job's micro-batch takes (the most a decode
// step waits for one).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Engine } from "../engine/engine.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { addAdapter, LINEAR_NAMES } from "../engine/peft.js";
import { exclusiveTraining, exclusively } from "../engine/train/loop/exclusive-model.js";
import { parseSftJsonl } from "../engine/train/data/sft-data.js";
import { encodeExamples, type EncodedExample } from "../engine/train/data/sft-encode.js";
import { runSft, type SftSettings, type TrainingCalls } from "../engine/train/sft/sft.js";
import { JOB_MICRO_BATCH_TOKENS } from "../server/fine-tuning/methods/supervised.js";
import type { AdapterSpec } from "../native/index.js";
import { collect, samplingParams } from "./generation-helpers.js";
import { nameChangeData } from "./sft-helpers.js";
import { storiesDir } from "./test-model.js";

const tmp = mkdtempSync(join(tmpdir(), "hc-excl-"));
let served: LoadedModel;
let alone: LoadedModel;
let engine: Engine;
let examples: EncodedExample[];

const spec: AdapterSpec = { lora: { rank: 4, alpha: 8, dropout: 0.1, targets: [...LINEAR_NAMES], seed: 3 }, valueHead: false };
const settings: SftSettings = {
  adapter: "job",
  epochs: 1,
  batchSize: 4,
  maxBatchTokens: JOB_MICRO_BATCH_TOKENS,
  seed: 1,
  schedule: { kind: "linear", lr: 2e-3, warmupSteps: 0, totalSteps: 4 },
  optimizer: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 },
};

before(async () => {
  served = await loadModel(storiesDir, { threads: 2 });
  alone = await loadModel(storiesDir, { threads: 2, kvBlocks: 8 });
  const file = join(tmp, "names.jsonl");
  await nameChangeData(alone, file, 16);
  const ctx = { tokenizer: alone.tokenizer, chatTemplate: alone.chatTemplate, maxLength: alone.maxContext };
  examples = encodeExamples(ctx, parseSftJsonl(readFileSync(file, "utf8"))).encoded;
  engine = new Engine(served, { maxBatch: 8, maxQueue: 64, maxBatchTokens: 128 });
});
after(async () => {
  await engine.close();
  served.dispose();
  alone.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** every call's duration, recorded around the real model's calls */
function timed(model: TrainingCalls, ms: number[]): TrainingCalls {
  const t = <A extends unknown[], R>(f: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
    const t0 = performance.now();
    try {
      return await f(...a);
    } finally {
      ms.push(performance.now() - t0);
    }
  };
  return { trainForward: t((b) => model.trainForward(b)), trainBackward: t((d, v) => model.trainBackward(d, v)), step: t((o) => model.step(o)) };
}

test("SFT between decode steps gives the weights of SFT alone; serving outputs unchanged", async () => {
  const prompt = served.tokenizer.encode("Once upon a time", true);
  const expected = (await collect(engine.generate({ promptTokens: prompt, params: samplingParams({ maxTokens: 24 }) }))).text;

  addAdapter(alone.native, "job", spec);
  alone.native.setTrainable({ adapter: "job" });
  await runSft(alone.native, examples, null, settings);

  await exclusively(engine, () => {
    addAdapter(served.native, "job", spec);
    served.native.setTrainable({ adapter: "job" });
  });
  const callMs: number[] = [];
  let serving = true;
  const texts: string[] = [];
  const load = (async () => {
    while (serving) texts.push((await collect(engine.generate({ promptTokens: prompt, params: samplingParams({ maxTokens: 24 }) }))).text);
  })();
  const before = engine.stats().counters.steps;
  await runSft(exclusiveTraining(engine, timed(served.native, callMs)), examples, null, settings);
  const stepsDuring = engine.stats().counters.steps - before;
  serving = false;
  await load;

  assert.ok(stepsDuring >= callMs.length / 2, `decode steps ran between the training calls (${stepsDuring} steps, ${callMs.length} calls)`);
  assert.ok(texts.length > 0 && texts.every((t) => t === expected), "the base's outputs did not change while its adapter trained");
  for (const p of served.native.parameters("job")) {
    assert.deepEqual(served.native.readParameter("job", p.name), alone.native.readParameter("job", p.name), p.name);
  }
  const sorted = callMs.sort((a, b) => a - b);
  console.log(`# one training call (micro-batch ≤ ${JOB_MICRO_BATCH_TOKENS} tokens): median ${sorted[sorted.length >> 1]!.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms over ${sorted.length} calls`);
});
