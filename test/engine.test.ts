// The engine on the real model (stories260K) through the real native addon.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../engine/engine.js";
import { EngineError } from "../engine/errors.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { collect, samplingParams } from "./generation-helpers.js";
import { storiesDir } from "./test-model.js";

const modelDir = storiesDir;

// README facts
const GREEDY_FROM_BOS = [
  1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295,
];
const GREEDY_FROM_BOS_TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the par";
const CONTINUATION =
  ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.";

const params = samplingParams;


let model: LoadedModel;
let engine: Engine;

before(async () => {
  model = await loadModel(modelDir, { threads: 2 });
  engine = new Engine(model, { maxBatch: 8, maxQueue: 32, maxBatchTokens: 128 });
});

after(async () => {
  await engine.close();
  model.dispose();
});

const encode = (s: string): number[] => model.tokenizer.encode(s, true);

test("greedy from BOS equals the README's tokens and text", async () => {
  const r = await collect(engine.generate({ promptTokens: [1], params: params({ maxTokens: GREEDY_FROM_BOS.length - 1 }) }));
  assert.deepEqual([1, ...r.tokens], GREEDY_FROM_BOS);
  assert.equal(r.text, GREEDY_FROM_BOS_TEXT);
  assert.equal(r.done.finishReason, "length");
});

test("greedy continuation of 'Once upon a time' equals the README's", async () => {
  const prompt = encode("Once upon a time");
  assert.deepEqual(prompt, [1, 403, 407, 261, 378]);
  const r = await collect(engine.generate({ promptTokens: prompt, params: params({ maxTokens: 60 }) }));
  assert.ok(r.text.startsWith(CONTINUATION), JSON.stringify(r.text));
});

test("concurrent greedy requests give the same outputs as one at a time", async () => {
  const prompts = ["Once upon a time", "Tom had a dog", "The sun was", "Lily and Ben went to the park. They", "A"].map(encode);
  const alone: string[] = [];
  for (const p of prompts) alone.push((await collect(engine.generate({ promptTokens: p, params: params({ maxTokens: 40 }) }))).text);
  const together = await Promise.all(prompts.map((p) => collect(engine.generate({ promptTokens: p, params: params({ maxTokens: 40 }) }))));
  assert.deepEqual(together.map((r) => r.text), alone);
  assert.equal(engine.stats().running, 0);
});

test("same seed, same output while other requests run alongside", async () => {
  const p = params({ temperature: 1, topP: 0.95, seed: 42, maxTokens: 40 });
  const prompt = encode("Once upon a time");
  const alone = await collect(engine.generate({ promptTokens: prompt, params: p }));
  const others = [1, 2, 3].map((s) => collect(engine.generate({ promptTokens: encode("The cat"), params: { ...p, seed: s, topK: 10 } })));
  const [again, ...rest] = await Promise.all([collect(engine.generate({ promptTokens: prompt, params: p })), ...others]);
  assert.equal(again.text, alone.text);
  assert.deepEqual(again.tokens, alone.tokens);
  assert.ok(new Set(rest.map((r) => r.text)).size > 1, "different seeds sample differently");
});

test("a stop string ends the text before it", async () => {
  const r = await collect(engine.generate({ promptTokens: encode("Once upon a time"), params: params({ maxTokens: 60, stop: ["Lily"] }) }));
  assert.equal(r.text, ", there was a little girl named ");
  assert.equal(r.done.finishReason, "stop");
});

test("greedy logprobs: the chosen token is the most likely, probabilities normalised", async () => {
  for await (const ev of engine.generate({ promptTokens: [1], params: params({ maxTokens: 5, logprobs: true, topLogprobs: 3 }) })) {
    if (ev.type !== "delta") continue;
    for (const lp of ev.logprobs) {
      assert.equal(lp.top[0].tokenId, lp.tokenId);
      assert.equal(lp.top[0].logprob, lp.logprob);
      const mass = lp.top.reduce((s, t) => s + Math.exp(t.logprob), 0);
      assert.ok(mass <= 1 + 1e-6 && mass > 0);
      assert.deepEqual(lp.bytes, [...Buffer.from(model.tokenizer.tokenBytes(lp.tokenId))]);
    }
  }
});

test("abort frees the request's KV cache", async () => {
  const ac = new AbortController();
  const total = model.native.kvStats().totalBlocks;
  let seen = 0;
  await assert.rejects(
    (async () => {
      for await (const ev of engine.generate({ promptTokens: [1], params: params({ maxTokens: 400, ignoreEos: true }), signal: ac.signal })) {
        if (ev.type === "delta" && ++seen === 5) {
          assert.ok(model.native.kvStats().freeBlocks < total, "the running request holds KV blocks");
          ac.abort();
        }
      }
    })(),
    (e: unknown) => e instanceof EngineError && e.code === "cancelled",
  );
  // the abort may land while its step is in flight; the block is freed when that step ends
  while (engine.stats().running > 0) await new Promise((r) => setImmediate(r));
  const kv = model.native.kvStats();
  assert.equal(kv.freeBlocks, total);
  assert.equal(kv.sequences, 0);
});
