// The engine with the next step queued before the last one's tokens are taken (overlap,
// engine/engine.ts runAhead) against the serial engine (overlap: false) on the real model:
// the same requests give the same tokens, text and finish reasons — seeded sampling, greedy,
// penalties, stop strings, EOS, max_tokens, several choices of one prompt, LoRA adapters
// mixed in, a cancel — a row computed for a request that already ended is never reported,
// and the KV pool gets every block back.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Engine, type ModelRunner } from "../engine/engine.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { addAdapter } from "../engine/peft.js";
import { Rng } from "../engine/rng.js";
import type { GenerateRequest, Tokenizer } from "../engine/types.js";
import type { ForwardBatch } from "../native/index.js";
import { collect, samplingParams, type Collected } from "./generation-helpers.js";
import { storiesDir } from "./test-model.js";

// stories260K's greedy path from BOS: 1, 403 "Once", 407 " upon", 261 " a", 378 " time", …
// " time" also counts as EOS here, so EOS ends requests often, mid-batch
const EXTRA_EOS = 378;

let model: LoadedModel;
let tokenizer: Tokenizer;

before(async () => {
  model = await loadModel(storiesDir, { threads: 2, kvBlocks: 256 });
  tokenizer = Object.create(model.tokenizer, { eosIds: { value: [...model.tokenizer.eosIds, EXTRA_EOS] } });
  addAdapter(model.native, "a", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v", "up", "down"], seed: 7 }, valueHead: false });
  const rng = Rng.stream(11, "overlap-test");
  for (const p of model.native.parameters("a")) {
    if (!p.name.endsWith("lora_B")) continue;
    const n = p.shape.reduce((x, y) => x * y, 1);
    model.native.writeParameter("a", p.name, Float32Array.from({ length: n }, () => 0.4 * rng.normal()));
  }
});
after(() => model.dispose());

/**
 * The native model, counting the steps queued before the last one settled and those fed from
 * it (on this tiny model a step may well be done before the next is queued: fed all the same).
 */
class Counting implements ModelRunner {
  readonly queuesForwards = true;
  unsettled = 0;
  queuedBehind = 0;
  fed = 0;
  /** sequence rows computed, all steps together */
  rows = 0;
  constructor(private readonly m: ModelRunner) {}
  forward(batch: ForwardBatch): Promise<Float32Array> {
    if (this.unsettled > 0) this.queuedBehind++;
    if (batch.feed && batch.feed.length > 0) this.fed++;
    this.unsettled++;
    this.rows += batch.seqIds.length;
    return this.m.forward(batch).finally(() => this.unsettled--);
  }
  freeSeq(id: number): void {
    this.m.freeSeq(id);
  }
  kvStats() {
    return this.m.kvStats();
  }
}

const encode = (s: string): number[] => model.tokenizer.encode(s, true);

/** Every kind of request the overlap must not change, submitted together. */
function workload(): GenerateRequest[] {
  const p = samplingParams;
  const story = encode("Once upon a time");
  const reqs: GenerateRequest[] = [
    { promptTokens: [1], params: p({ maxTokens: 30 }) }, // greedy: EOS at " time" (4th token)
    { promptTokens: encode("Tom had a dog"), params: p({ maxTokens: 40 }) },
    { promptTokens: story, params: p({ maxTokens: 1 }) },
    { promptTokens: story, params: p({ maxTokens: 2, ignoreEos: true }) },
    { promptTokens: encode("The sun was"), params: p({ temperature: 0.9, topP: 0.95, seed: 5, maxTokens: 50 }) },
    { promptTokens: encode("The sun was"), params: p({ temperature: 0.9, topP: 0.95, seed: 6, maxTokens: 50 }) }, // a second choice
    // penalties count the token before: the steps it is in run serially, so it is kept short
    { promptTokens: encode("Lily and Ben"), params: p({ temperature: 1.2, topK: 40, minP: 0.05, seed: 9, maxTokens: 8, presencePenalty: 0.6, frequencyPenalty: 0.4 }) },
    { promptTokens: story, params: p({ maxTokens: 60, stop: ["Lily"] }) },
    { promptTokens: story, params: p({ maxTokens: 60, stop: [". "], temperature: 0.7, seed: 3 }) },
    { promptTokens: encode("One day"), params: p({ temperature: 0.8, seed: 21, maxTokens: 35, logitBias: { "261": 2.5 } }) },
    { promptTokens: encode("Tom had a dog"), params: p({ temperature: 0.8, seed: 2, maxTokens: 40 }), adapter: "a" },
    { promptTokens: [1], params: p({ maxTokens: 25, ignoreEos: true }), adapter: "a" },
  ];
  // long prompts: prefill chunks that sample later share steps with decodes
  const long = encode("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.");
  reqs.push({ promptTokens: long, params: p({ temperature: 0.6, seed: 8, maxTokens: 30 }) });
  return reqs;
}

async function runAll(overlap: boolean): Promise<{ results: Collected[]; runner: Counting; cancelled: number[] }> {
  const runner = new Counting(model.native);
  const engine = new Engine({ native: runner, tokenizer, maxContext: model.maxContext }, { maxBatch: 8, maxQueue: 64, maxBatchTokens: 24, overlap });
  const free0 = model.native.kvStats().freeBlocks;
  try {
    // one request cancelled by its consumer after three deltas, mid-batch
    const cancelling = (async () => {
      const got: number[] = [];
      for await (const ev of engine.generate({ promptTokens: encode("A cat"), params: samplingParams({ maxTokens: 50, ignoreEos: true }) })) {
        if (ev.type === "delta") got.push(...ev.tokenIds);
        if (got.length >= 3) break;
      }
      return got;
    })();
    const results = await Promise.all(workload().map((r) => collect(engine.generate(r))));
    const cancelled = await cancelling;
    assert.equal(engine.stats().running, 0);
    // the loop may still await a step computing rows that are dropped: once it is idle, every block is back
    await engine.close();
    assert.equal(model.native.kvStats().freeBlocks, free0, "the KV pool got every block back");
    return { results, runner, cancelled };
  } finally {
    await engine.close();
  }
}

test("overlapped steps give the serial engine's tokens, text and finish reasons; ended rows are never reported", async () => {
  const serial = await runAll(false);
  const overlapped = await runAll(true);
  assert.equal(serial.runner.queuedBehind, 0, "the serial engine queues no step behind another");
  assert.ok(overlapped.runner.fed > 10, `steps fed from the step before: ${overlapped.runner.fed}`);
  const reasons = new Set<string>();
  overlapped.results.forEach((r, i) => {
    const s = serial.results[i]!;
    assert.deepEqual(r.tokens, s.tokens, `request ${i}'s tokens`);
    assert.equal(r.text, s.text, `request ${i}'s text`);
    assert.equal(r.done.finishReason, s.done.finishReason, `request ${i}'s finish reason`);
    assert.equal(r.done.eosTokenId, s.done.eosTokenId, `request ${i}'s EOS`);
    assert.deepEqual(r.done.usage, s.done.usage, `request ${i}'s usage`);
    reasons.add(`${r.done.finishReason}${r.done.eosTokenId === null ? "" : "/eos"}`);
    // nothing reported past the end: an EOS is counted, never reported; length ends at max_tokens
    const extra = r.done.eosTokenId === null ? 0 : 1;
    assert.ok(r.tokens.length + extra <= r.done.usage.completionTokens, `request ${i} reported a dropped row`);
  });
  assert.deepEqual([...reasons].sort(), ["length", "stop", "stop/eos"], "the workload ends requests every way");
  assert.equal(overlapped.results[0]!.done.eosTokenId, EXTRA_EOS);
  assert.deepEqual(overlapped.cancelled, serial.cancelled, "the cancelled request's tokens before its cancel");
});

test("a request is never scheduled past its max_tokens: overlapped, it computes the serial engine's rows", async () => {
  for (const overlap of [false, true]) {
    const runner = new Counting(model.native);
    const engine = new Engine({ native: runner, tokenizer, maxContext: model.maxContext }, { maxBatch: 4, maxQueue: 8, maxBatchTokens: 32, overlap });
    try {
      const reqs = [encode("Tom had a dog"), encode("The sun was")].map((promptTokens, i) =>
        collect(engine.generate({ promptTokens, params: samplingParams({ maxTokens: 6 + 3 * i, ignoreEos: true, temperature: 0.5, seed: i }) })),
      );
      const got = await Promise.all(reqs);
      assert.deepEqual(got.map((r) => r.tokens.length), [6, 9]);
      // a prefill row each, then a decode row per token after the first
      assert.equal(runner.rows, 2 + 5 + 8, `rows computed with overlap ${overlap}`);
      if (overlap) assert.ok(runner.fed >= 7, `steps fed: ${runner.fed}`);
    } finally {
      await engine.close();
    }
  }
});
