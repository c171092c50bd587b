// PPO's scalar math against hand-computed values: the KL reward, GAE, whitening, and the
// clipped policy and value losses with their per-token gradients (also checked against
// central finite differences of the loss itself); the role switch and the actor's EMA.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { gae, klRewards, whiten } from "../engine/train/ppo/gae.js";
import { policyLoss, valueLoss } from "../engine/train/ppo/ppo-losses.js";
import { AdapterEma, RoleSwitch } from "../engine/train/ppo/ppo.js";
import { directPpoModel } from "../engine/train/ppo/ppo-model.js";
import { parsePromptJsonl } from "../engine/train/data/ppo-prompts.js";
import { SftDataError } from "../engine/train/data/sft-data.js";
import { rollout, rolloutBatch } from "../engine/train/ppo/experience.js";
import { loadModel } from "../engine/model.js";
import { addAdapter } from "../engine/peft.js";
import type { LinearName } from "../native/index.js";
import { storiesDir } from "./test-model.js";

const close = (a: number, b: number, tol = 1e-6): void => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);
const closeAll = (a: ArrayLike<number>, b: number[], tol = 1e-6): void => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < b.length; i++) close(a[i], b[i], tol);
};

describe("KL reward", () => {
  test("−kl_ctl·(logp − logp_ref) per token, the clipped score added at the last token", () => {
    const logp = [-1, -2, -0.5];
    const ref = [-1.5, -1, -0.5];
    closeAll(klRewards(logp, ref, 2, 0.1, 5), [-0.05, 0.1, 2]);
    closeAll(klRewards(logp, ref, 7, 0.1, 5), [-0.05, 0.1, 5]);
    closeAll(klRewards(logp, ref, -7, 0.1, 5), [-0.05, 0.1, -5]);
    assert.equal(klRewards([], [], 3, 0.1, 5).length, 0);
    assert.throws(() => klRewards([1], [1, 2], 0, 0.1, 5), RangeError);
  });
});

describe("GAE", () => {
  test("γ 1, λ 0.95: advantages and returns by hand, value 0 after the last token", () => {
    const { advantages, returns } = gae([1, 0, 2], [0.5, 1, 1.5], 1, 0.95);
    closeAll(advantages, [2.42625, 0.975, 0.5]);
    closeAll(returns, [2.92625, 1.975, 2]);
  });

  test("γ 0.5, λ 0.5", () => {
    const { advantages, returns } = gae([1, 0, 2], [0.5, 1, 1.5], 0.5, 0.5);
    closeAll(advantages, [0.96875, -0.125, 0.5]);
    closeAll(returns, [1.46875, 0.875, 2]);
  });

  test("λ 0 is the one-step TD error; λ 1, γ 1 is the reward-to-go minus the value", () => {
    closeAll(gae([1, 0, 2], [0.5, 1, 1.5], 1, 0).advantages, [1.5, 0.5, 0.5]);
    closeAll(gae([1, 0, 2], [0.5, 1, 1.5], 1, 1).advantages, [3 - 0.5, 2 - 1, 2 - 1.5]);
  });
});

describe("whitening", () => {
  test("one mean and one unbiased variance over every token of the batch", () => {
    const a = [Float64Array.from([1, 2]), Float64Array.from([3])];
    whiten(a);
    closeAll(a[0], [-1, 0]);
    closeAll(a[1], [1]);
    const b = [Float64Array.from([2, 4, 6, 8])];
    whiten(b);
    const sd = Math.sqrt(20 / 3);
    closeAll(b[0], [-3 / sd, -1 / sd, 1 / sd, 3 / sd]);
  });

  test("a single token is left alone", () => {
    const a = [Float64Array.from([5])];
    whiten(a);
    closeAll(a[0], [5]);
  });
});

/** central difference of f at x along coordinate t */
function fd(f: (x: number[]) => number, x: number[], t: number, h = 1e-6): number {
  const p = x.slice();
  const m = x.slice();
  p[t] += h;
  m[t] -= h;
  return (f(p) - f(m)) / (2 * h);
}

describe("clipped policy loss", () => {
  // ratios 1.5, 0.9, 0.5, 1.1, 1.5 against advantages 1, 1, −1, −2, −1, clip 0.2
  const logpOld = [0, 0, 0, 0, 0];
  const logp = [1.5, 0.9, 0.5, 1.1, 1.5].map(Math.log);
  const adv = [1, 1, -1, -2, -1];

  test("max(−A·ρ, −A·clip(ρ)) averaged over the mini-batch's tokens; dL/dlogp = −A·ρ/count where unclipped, else 0", () => {
    const r = policyLoss(logp, logpOld, adv, 0.2, 5);
    // per token: −1.2 (clipped), −0.9, 0.8 (clipped), 2.2, 1.5
    close(r.loss, 2.4 / 5);
    closeAll(r.grad, [0, -0.18, 0, 0.44, 0.3]);
    assert.equal(r.clipped, 2);
  });

  test("the gradient is the loss's finite difference", () => {
    // ratios away from the clip boundaries, where the loss is differentiable
    const lp = [1.5, 0.95, 0.5, 1.1, 1.5, 0.7].map(Math.log);
    const old = lp.map(() => 0.1).map((o, i) => o * i * 0.01);
    const a = [1, 1, -1, -2, -1, 0.5];
    const f = (x: number[]): number => policyLoss(x, old, a, 0.2, 10).loss;
    const g = policyLoss(lp, old, a, 0.2, 10).grad;
    for (let t = 0; t < lp.length; t++) close(g[t], fd(f, lp, t), 1e-5);
  });

  test("a mini-batch split into micro-batches adds up to the whole", () => {
    const whole = policyLoss(logp, logpOld, adv, 0.2, 5);
    const a = policyLoss(logp.slice(0, 2), logpOld.slice(0, 2), adv.slice(0, 2), 0.2, 5);
    const b = policyLoss(logp.slice(2), logpOld.slice(2), adv.slice(2), 0.2, 5);
    close(a.loss + b.loss, whole.loss);
    closeAll([...a.grad, ...b.grad], [...whole.grad]);
  });
});

describe("clipped value loss", () => {
  test("½·max((V−R)², (clip(V, V_old ± ε) − R)²) averaged; dL/dV = (V−R)/count where unclipped, else 0", () => {
    const r = valueLoss([0.1, 0.5, -0.5], [0, 0, 0], [1, 1, 0], 0.2, 3);
    // per token: ½·0.81, ½·0.64 (clipped), ½·0.25
    close(r.loss, 0.85 / 3);
    closeAll(r.grad, [-0.3, 0, -0.5 / 3]);
    assert.equal(r.clipped, 1);
  });

  test("the gradient is the loss's finite difference", () => {
    const v = [0.1, 0.5, -0.5, 0.05, 2];
    const old = [0, 0, 0, 0.1, 1];
    const ret = [1, 1, 0, -1, 3];
    const f = (x: number[]): number => valueLoss(x, old, ret, 0.2, 7).loss;
    const g = valueLoss(v, old, ret, 0.2, 7).grad;
    for (let t = 0; t < v.length; t++) close(g[t], fd(f, v, t), 1e-5);
  });
});

describe("role switch and EMA on a real model", () => {
  test("each role's AdamW moments and step count survive switching to the other role and back; EMA blends", async () => {
    const lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 16 });
    try {
      const m = lm.native;
      const lora = { rank: 2, alpha: 4, dropout: 0, targets: ["q", "v"] as LinearName[], seed: 1 };
      addAdapter(m, "a", { lora, valueHead: false });
      addAdapter(m, "c", { lora, valueHead: true });
      const r = rollout([1, 403, 407], [261, 378, 300]);
      const opt = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };
      const pm = directPpoModel(m);
      const ema = await AdapterEma.create(pm, "a", 0.9);
      const before = m.readParameter("a", "L0.q.lora_B").slice();
      const sw = new RoleSwitch(pm);
      await sw.use("a");
      await m.trainForward(rolloutBatch([r], [0], "a", true, false));
      await m.trainBackward(Float32Array.from([0, 0, -1, -1, -1, 0]), null);
      await m.step(opt);
      await ema.update();
      const stateA = m.optimizerState();
      assert.equal(stateA.step, 1);
      await sw.use("c");
      assert.equal(m.optimizerState().step, 0);
      await m.trainForward(rolloutBatch([r], [0], "c", true, true));
      await m.trainBackward(new Float32Array(6), Float32Array.from([0, 0, 1, 1, 1, 0]));
      await m.step(opt);
      await sw.use("a");
      assert.deepEqual(m.optimizerState(), stateA);
      await sw.use("c");
      assert.equal(m.optimizerState().step, 1);
      await sw.release();
      const after = m.readParameter("a", "L0.q.lora_B");
      assert.ok(after.some((x, i) => x !== before[i]), "the actor's step moved its LoRA B");
      const e = ema.params.get("L0.q.lora_B")!;
      for (let i = 0; i < e.length; i++) close(e[i], 0.9 * before[i] + 0.1 * after[i], 1e-7);
      assert.ok(sw.ms > 0);
    } finally {
      lm.dispose();
    }
  });
});

describe("prompt files", () => {
  test("training lines give their prompt part: a chat's messages before its answer, a DPO line's input, a prompt/completion's prompt", () => {
    const user = { role: "user", content: "Tell me a story" };
    const lines = [
      { prompt: "Once upon a time" },
      { prompt: "Tom had", completion: " a dog." },
      { messages: [{ role: "system", content: "Be kind." }, user, { role: "assistant", content: "Once…" }] },
      { messages: [user] },
      { input: { messages: [user] }, preferred_output: [{ role: "assistant", content: "A" }], non_preferred_output: [{ role: "assistant", content: "B" }] },
    ];
    assert.deepEqual(parsePromptJsonl(lines.map((l) => JSON.stringify(l)).join("\n")), [
      { line: 1, prompt: "Once upon a time" },
      { line: 2, prompt: "Tom had" },
      { line: 3, messages: [{ role: "system", content: "Be kind." }, user] },
      { line: 4, messages: [user] },
      { line: 5, messages: [user] },
    ]);
    assert.throws(
      () => parsePromptJsonl(`${JSON.stringify({ messages: [{ role: "assistant", content: "hi" }] })}\n{"chosen":"x"}\n`),
      (e: unknown) => e instanceof SftDataError && /line 1: .*only an assistant answer/.test(e.message) && /line 2: expected/.test(e.message),
    );
  });
});
