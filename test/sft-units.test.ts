// Batching, learning-rate schedules and "auto" hyperparameters against their formulas.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { epochOrder, lossTokens, microBatches, optimizerBatches, stepsPerEpoch, trainBatch } from "../engine/train/loop/batches.js";
import { learningRate, type Schedule } from "../engine/train/loop/lr-schedule.js";
import { autoBatchSize, autoEpochs, autoWarmupSteps, defaultLearningRate } from "../engine/train/loop/hyperparams.js";
import type { EncodedExample } from "../engine/train/data/sft-encode.js";

function ex(tokens: number[], mask: number[]): EncodedExample {
  return { line: 0, tokens: Int32Array.from(tokens), mask: Uint8Array.from(mask) };
}

describe("batches", () => {
  test("epoch order: a permutation, the same for the same (seed, epoch), different across epochs and seeds", () => {
    const a = epochOrder(50, 7, 0);
    assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    assert.deepEqual(epochOrder(50, 7, 0), a);
    assert.notDeepEqual(epochOrder(50, 7, 1), a);
    assert.notDeepEqual(epochOrder(50, 8, 0), a);
    assert.deepEqual(epochOrder(1, 7, 3), [0]);
    assert.deepEqual(epochOrder(0, 7, 3), []);
  });

  test("optimizer batches of batchSize sequences; the last one may be short", () => {
    assert.deepEqual(optimizerBatches([4, 3, 2, 1, 0], 2), [[4, 3], [2, 1], [0]]);
    assert.equal(stepsPerEpoch(5, 2), 3);
    assert.equal(stepsPerEpoch(4, 2), 2);
  });

  test("micro-batches stay under the token budget; a longer sequence runs alone", () => {
    const data = [ex([1, 2, 3], [0, 1, 1]), ex([1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 1, 1]), ex([1, 2], [0, 1]), ex([1, 2], [0, 1])];
    assert.deepEqual(microBatches(data, [0, 1, 2, 3], 5), [[0], [1], [2, 3]]);
    assert.deepEqual(microBatches(data, [0, 2, 3], 7), [[0, 2, 3]]);
    assert.deepEqual(microBatches(data, [3, 2, 0], 4), [[3, 2], [0]]);
    assert.equal(lossTokens(data, [0, 1]), 5);
  });

  test("trainBatch packs sequences; the target at t is token t+1 when it is learned, else −1", () => {
    const data = [ex([1, 10, 11, 12], [0, 0, 1, 1]), ex([1, 20, 21], [0, 1, 0])];
    const b = trainBatch(data, [1, 0], "a", true);
    assert.deepEqual([...b.tokens], [1, 20, 21, 1, 10, 11, 12]);
    assert.deepEqual([...b.counts], [3, 4]);
    assert.deepEqual([...b.targets], [20, -1, -1, -1, 11, 12, -1]);
    assert.equal(b.adapter, "a");
    assert.equal(b.grad, true);
    assert.equal(b.values, false);
  });
});

describe("learning-rate schedules (transformers' formulas)", () => {
  const s = (kind: Schedule["kind"], warmupSteps: number): Schedule => ({ kind, lr: 0.1, warmupSteps, totalSteps: 10 });
  const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

  test("warm-up: lr · step / warmup, from 0", () => {
    for (const kind of ["constant", "linear", "cosine"] as const) {
      close(learningRate(s(kind, 4), 0), 0);
      close(learningRate(s(kind, 4), 1), 0.025);
      close(learningRate(s(kind, 4), 3), 0.075);
      close(learningRate(s(kind, 4), 4), 0.1);
    }
  });

  test("constant, linear to 0, half cosine to 0", () => {
    for (let step = 0; step < 10; step++) {
      close(learningRate(s("constant", 0), step), 0.1);
      close(learningRate(s("linear", 0), step), 0.1 * (1 - step / 10));
      close(learningRate(s("cosine", 0), step), 0.1 * 0.5 * (1 + Math.cos((Math.PI * step) / 10)));
      if (step >= 2) {
        close(learningRate(s("linear", 2), step), 0.1 * (10 - step) / 8);
        close(learningRate(s("cosine", 2), step), 0.05 * (1 + Math.cos((Math.PI * (step - 2)) / 8)));
      }
    }
    close(learningRate(s("linear", 0), 10), 0);
    close(learningRate(s("cosine", 0), 12), 0.1 * 0.5 * (1 + Math.cos((Math.PI * 12) / 10)));
    assert.equal(learningRate(s("linear", 0), 12), 0);
  });
});

describe("auto hyperparameters", () => {
  test("epochs: 3, raised so epochs × examples ≥ 100 (≤ 25), lowered so ≤ 25 000 (≥ 1)", () => {
    assert.equal(autoEpochs(1), 25);
    assert.equal(autoEpochs(3), 25);
    assert.equal(autoEpochs(4), 25);
    assert.equal(autoEpochs(5), 20);
    assert.equal(autoEpochs(30), 4);
    assert.equal(autoEpochs(32), 4);
    assert.equal(autoEpochs(34), 3);
    assert.equal(autoEpochs(1000), 3);
    assert.equal(autoEpochs(8333), 3);
    assert.equal(autoEpochs(8334), 2);
    assert.equal(autoEpochs(8400), 2);
    assert.equal(autoEpochs(20_000), 1);
    assert.equal(autoEpochs(1_000_000), 1);
    for (let n = 1; n < 40_000; n += 37) {
      const e = autoEpochs(n);
      assert.ok(e >= 1 && e <= 25);
      assert.ok(e * n >= 100 || e === 25, `n=${n}: at least 100 examples seen unless capped`);
      assert.ok(e * n <= 25_000 || e === 1, `n=${n}: at most 25 000 examples seen unless at 1 epoch`);
      if (n * 3 >= 100 && n * 3 <= 25_000) assert.equal(e, 3);
    }
  });

  test("batch size ≈ 0.2 % of the examples in [1, 256]; warm-up 3 %; LoRA lr above full fine-tuning", () => {
    assert.equal(autoBatchSize(10), 1);
    assert.equal(autoBatchSize(1000), 2);
    assert.equal(autoBatchSize(50_000), 100);
    assert.equal(autoBatchSize(10_000_000), 256);
    assert.equal(autoWarmupSteps(10), 0);
    assert.equal(autoWarmupSteps(100), 3);
    assert.ok(defaultLearningRate(8) > defaultLearningRate(0));
  });
});
