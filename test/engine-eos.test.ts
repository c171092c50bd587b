// The done event names the end-of-sequence token that ended a generation: models with
// several EOS ids (Llama 3's <|eot_id|> and <|end_of_text|>) mean different things by each,
// and PPO keeps that token as the answer's last action. stories260K has one EOS, so the
// test lends the engine a tokenizer that also counts two ordinary tokens as EOS.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../engine/engine.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import type { Tokenizer } from "../engine/types.js";
import { collect, samplingParams } from "./generation-helpers.js";
import { storiesDir } from "./test-model.js";

// greedy from BOS: 1, 403 "Once", 407 " upon", 261 " a", 378 " time", 432 ",", …
const SECOND_EOS = 261;
const THIRD_EOS = 378;

let model: LoadedModel;
let engine: Engine;

before(async () => {
  model = await loadModel(storiesDir, { threads: 2 });
  const tokenizer: Tokenizer = Object.create(model.tokenizer, { eosIds: { value: [...model.tokenizer.eosIds, THIRD_EOS, SECOND_EOS] } });
  engine = new Engine({ ...model, tokenizer }, { maxBatch: 4, maxQueue: 8, maxBatchTokens: 64 });
});

after(async () => {
  await engine.close();
  model.dispose();
});

test("the done event carries the EOS id that ended the sequence, not just the first of the list", async () => {
  const r = await collect(engine.generate({ promptTokens: [1], params: samplingParams({ maxTokens: 20 }) }));
  assert.deepEqual(r.tokens, [403, 407], "the EOS token is not reported as a delta");
  assert.equal(r.done.finishReason, "stop");
  assert.equal(r.done.eosTokenId, SECOND_EOS);
  assert.equal(r.done.usage.completionTokens, 3);
  // from after " a", the next EOS met is the other one
  const s = await collect(engine.generate({ promptTokens: [1, 403, 407, 261], params: samplingParams({ maxTokens: 20 }) }));
  assert.equal(s.done.eosTokenId, THIRD_EOS);
});

test("a sequence ended by max tokens or a stop string has eosTokenId null", async () => {
  const byLength = await collect(engine.generate({ promptTokens: [1], params: samplingParams({ maxTokens: 2 }) }));
  assert.equal(byLength.done.finishReason, "length");
  assert.equal(byLength.done.eosTokenId, null);
  const byStop = await collect(engine.generate({ promptTokens: [1], params: samplingParams({ maxTokens: 20, stop: [" upon"] }) }));
  assert.equal(byStop.done.finishReason, "stop");
  assert.equal(byStop.done.eosTokenId, null);
});
