// The real pretrained model against the reference facts in its README, through loadModel and
// a plain greedy loop over native.forward (the generation engine is tested elsewhere).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { encodeChat } from "../engine/chat-template.js";
import { storiesDir } from "./test-model.js";


const GREEDY = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295];
const GREEDY_TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the par";
const CONTINUATION =
  ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.";

let model: LoadedModel;
before(async () => {
  model = await loadModel(storiesDir, { threads: 2 });
});
after(() => model?.dispose());

function argmax(row: Float32Array, V: number, r = 0): number {
  let best = 0;
  for (let i = 1; i < V; i++) if (row[r * V + i] > row[r * V + best]) best = i;
  return best;
}

/** Greedy decoding: one prefill, then one token per forward. */
async function greedy(seqId: number, prompt: number[], steps: number): Promise<number[]> {
  const V = model.config.vocabSize;
  const out: number[] = [];
  let logits = await model.native.forward({ seqIds: Int32Array.of(seqId), tokens: Int32Array.from(prompt), counts: Int32Array.of(prompt.length), logits: "last" });
  for (let i = 0; i < steps; i++) {
    const next = argmax(logits, V);
    out.push(next);
    if (i + 1 < steps) logits = await model.native.forward({ seqIds: Int32Array.of(seqId), tokens: Int32Array.of(next), counts: Int32Array.of(1), logits: "last" });
  }
  model.native.freeSeq(seqId);
  return out;
}

test("loadModel: id, context, flags", () => {
  assert.equal(model.id, "stories260K");
  assert.equal(model.maxContext, 512);
  assert.equal(model.untrained, false);
  assert.equal(model.config.numKvHeads, 4);
});

test('"Once upon a time" encodes to the README ids', () => {
  assert.deepEqual(model.tokenizer.encode("Once upon a time", true), [1, 403, 407, 261, 378]);
});

test("greedy decoding from BOS alone: README ids and text", async () => {
  const ids = [1, ...(await greedy(1, [1], 29))];
  assert.deepEqual(ids, GREEDY);
  assert.equal(model.tokenizer.decode(ids, true), GREEDY_TEXT);
  const d = model.tokenizer.detokenizer([1]);
  const text = ids.slice(1).map((id) => d.push(id)).join("") + d.flush();
  assert.equal(text, GREEDY_TEXT);
  assert.ok(text.startsWith("Once upon a time"));
});

test("greedy continuation of 'Once upon a time' as the README lists", async () => {
  const prompt = model.tokenizer.encode("Once upon a time", true);
  const gen: number[] = [];
  const d = model.tokenizer.detokenizer(prompt);
  let text = "";
  // the README text is a prefix of what greedy produces; stop once it is covered
  for (const id of await greedy(2, prompt, 60)) {
    gen.push(id);
    text += d.push(id);
    if (text.length >= CONTINUATION.length) break;
  }
  assert.equal(text.slice(0, CONTINUATION.length), CONTINUATION);
});

test("the chat template path gives the same prompt tokens (BOS once)", async () => {
  const ids = encodeChat(model, [{ role: "user", content: "Once upon a time" }]);
  assert.deepEqual(ids, [1, 403, 407, 261, 378]);
  const gen = await greedy(3, ids, 5);
  assert.deepEqual(gen, GREEDY.slice(5, 10));
});
