// Engine.runExclusive: training calls on the serving model run between forward steps,
// never during one (no "busy"), serving keeps its outputs and its priority, and pending
// work is refused once the engine closes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../engine/engine.js";
import { EngineError } from "../engine/errors.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import type { ForwardBatch } from "../native/index.js";
import { collect, samplingParams } from "./generation-helpers.js";
import { storiesDir } from "./test-model.js";

let model: LoadedModel;
let engine: Engine;
/** what the native model did, in order: "F" a forward step, "T" an exclusive training call */
const trace: string[] = [];
let inForward = false;

before(async () => {
  model = await loadModel(storiesDir, { threads: 2 });
  const native = model.native;
  // the engine's view of the model, recording each forward step
  const runner = {
    forward: async (b: ForwardBatch) => {
      inForward = true;
      trace.push("F");
      try {
        return await native.forward(b);
      } finally {
        inForward = false;
      }
    },
    freeSeq: (id: number) => native.freeSeq(id),
    kvStats: () => native.kvStats(),
  };
  engine = new Engine({ native: runner, tokenizer: model.tokenizer, maxContext: model.maxContext }, { maxBatch: 8, maxQueue: 32, maxBatchTokens: 128 });
});

after(async () => {
  await engine.close();
  model.dispose();
});

const encode = (s: string): number[] => model.tokenizer.encode(s, true);

/** a real training call on the serving model: reference log-probs of a short sequence */
async function trainCall(): Promise<Float32Array> {
  assert.equal(inForward, false, "no forward step is in flight while exclusive work runs");
  trace.push("T");
  const tokens = Int32Array.from(encode("Once upon a time, there was a dog"));
  const targets = Int32Array.from(tokens, (_, i) => (i + 1 < tokens.length ? tokens[i + 1]! : -1));
  const r = await model.native.trainForward({ tokens, counts: Int32Array.of(tokens.length), targets, adapter: null, values: false, grad: false, checkpoint: false });
  return r.logp;
}

test("training calls interleave with decoding: one per step while serving, outputs unchanged", async () => {
  const prompts = ["Once upon a time", "Tom had a dog", "The sun was"].map(encode);
  const alone: string[] = [];
  for (const p of prompts) alone.push((await collect(engine.generate({ promptTokens: p, params: samplingParams({ maxTokens: 40 }) }))).text);
  const first = await trainCall();
  trace.length = 0;
  const serving = Promise.all(prompts.map((p) => collect(engine.generate({ promptTokens: p, params: samplingParams({ maxTokens: 40 }) }))));
  const tasks = Array.from({ length: 12 }, () => engine.runExclusive(trainCall));
  const [served, results] = await Promise.all([serving, Promise.all(tasks)]);
  assert.deepEqual(served.map((r) => r.text), alone, "serving gives the same greedy text with training calls in between");
  for (const r of results) assert.deepEqual(r, first, "each training call sees the same weights");
  // serving priority: while requests ran, no two training calls came back to back
  const lastF = trace.lastIndexOf("F");
  const whileServing = trace.slice(0, lastF + 1).join("");
  assert.ok(!whileServing.includes("TT"), `one training call per forward step while serving: ${trace.join("")}`);
  assert.equal(trace.filter((x) => x === "T").length, 12);
});

test("with nothing to serve, exclusive work runs at once, back to back", async () => {
  trace.length = 0;
  await Promise.all(Array.from({ length: 5 }, () => engine.runExclusive(trainCall)));
  assert.deepEqual(trace, ["T", "T", "T", "T", "T"]);
});

test("a failing task rejects alone; the engine keeps serving", async () => {
  await assert.rejects(engine.runExclusive(async () => { throw new Error("boom"); }), /boom/);
  const r = await collect(engine.generate({ promptTokens: encode("Once upon a time"), params: samplingParams({ maxTokens: 5 }) }));
  assert.equal(r.done.finishReason, "length");
});

test("close() refuses new exclusive work", async () => {
  const m = await loadModel(storiesDir, { threads: 1 });
  const e = new Engine(m, { maxBatch: 2, maxQueue: 4, maxBatchTokens: 64 });
  await e.close();
  await assert.rejects(e.runExclusive(async () => 1), (err: unknown) => err instanceof EngineError && err.code === "engine_closed");
  m.dispose();
});
