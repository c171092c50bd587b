// Issue 16 item 10: the RLHF gate promotes only what the held-out pairs show to be better.
// The paired comparison on fixed margins (a clearly better candidate, a tie, a gain lost in
// noise, a worse one), the t quantiles against published values, and on the real model: a
// candidate identical to the served base (a LoRA whose B is zero) is not promoted — the old
// "mean margin ≥ served" rule passed every tie — and margins are per answer token.
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../engine/model.js";
import { betterThanServed, pairedImprovement, t95 } from "../server/rlhf/gate.js";
import { storiesDir } from "./test-model.js";

test("t quantiles (one-sided 95 %) match the published table", () => {
  for (const [df, q] of [[1, 6.314], [5, 2.015], [30, 1.697], [40, 1.684], [60, 1.671], [120, 1.658], [1e9, 1.645]] as const)
    assert.ok(Math.abs(t95(df) - q) < 1.5e-3, `df ${df}: ${t95(df)} vs ${q}`);
});

test("a clearly better candidate is promoted; a tie, noise and a worse one are not", () => {
  const served = Array.from({ length: 20 }, (_, i) => Math.sin(i) * 0.3);
  const better = pairedImprovement(served.map((m, i) => m + 0.5 + 0.1 * Math.cos(i * 7)), served);
  assert.ok(better.better && better.lower > 0.4, JSON.stringify(better));
  const tie = pairedImprovement(served, served);
  assert.equal(tie.better, false);
  assert.equal(tie.lower, 0);
  // +0.02 on average, but each pair moves by ±1: not distinguishable from noise
  const noisy = pairedImprovement(served.map((m, i) => m + 0.02 + (i % 2 ? 1 : -1)), served);
  assert.ok(noisy.meanDiff > 0 && !noisy.better, JSON.stringify(noisy));
  assert.equal(pairedImprovement(served.map((m) => m - 0.1), served).better, false);
  // one pair has no variance to judge by
  assert.equal(pairedImprovement([5], [0]).better, false);
  // the bound by hand: d = [1, 2, 3], mean 2, sd 1, t(2) = 2.920
  const c = pairedImprovement([1, 2, 3], [0, 0, 0]);
  assert.ok(Math.abs(c.lower - (2 - 2.92 / Math.sqrt(3))) < 1e-9);
});

test("on stories260K: a candidate equal to the served base is not promoted, and margins are per token", async () => {
  const model = await loadModel(storiesDir, { threads: 2 });
  try {
    // a LoRA with B = 0 (PEFT's init) computes exactly the base
    model.native.addAdapter("same-as-base", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v"], seed: 1 }, valueHead: false });
    const lines = [
      { prompt: "Once upon a time", chosen: " there was a little girl named Lily.", rejected: " dog." },
      { prompt: "Tom had a ball.", chosen: " He played with it every day in the park.", rejected: " No." },
      { prompt: "The sun was", chosen: " big and warm.", rejected: " a cat that liked to sleep on the mat all day long." },
    ];
    const held = lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
    const training = model.native;
    const v = await betterThanServed(model, training, "same-as-base", { id: "stories260K", adapter: null }, held);
    assert.equal(v.pass, false, v.message);
    assert.equal(v.comparison.meanDiff, 0);
    assert.match(v.message, /not shown better, not published/);
  } finally {
    model.dispose();
  }
});
