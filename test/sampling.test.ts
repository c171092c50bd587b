import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../engine/rng.js";
import { Sampler, argmax, parseLogitBias, selectMass, selectTop, sortPrefix } from "../engine/sampling.js";
import type { SamplingParams } from "../engine/types.js";
import { samplingParams } from "./generation-helpers.js";

const V = 32000;
/** distribution tests draw thousands of samples: a small vocabulary keeps them fast */
const SV = 40;

const params = (over: Partial<SamplingParams> = {}): SamplingParams => samplingParams({ temperature: 1, ...over });

const none = { counts: new Map<number, number>() };
const noBias = parseLogitBias({}, V);

/** random logits with a few clear leaders, fixed by seed */
function randomLogits(seed: number, n = V): Float32Array {
  const r = new Rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (r.nextFloat() - 0.5) * 4;
  return x;
}

/** logits whose softmax is exactly `probs` on the first ids and negligible elsewhere */
function logitsFor(probs: number[], n = SV): Float32Array {
  const x = new Float32Array(n).fill(-1e4);
  probs.forEach((p, i) => (x[i] = Math.log(p)));
  return x;
}

function histogram(s: Sampler, logits: Float32Array, p: SamplingParams, draws: number, seed: number): Map<number, number> {
  const rng = new Rng(seed);
  const h = new Map<number, number>();
  for (let i = 0; i < draws; i++) {
    const t = s.sample(logits, p, noBias, none, rng);
    h.set(t, (h.get(t) ?? 0) + 1);
  }
  return h;
}

test("temperature 0 is argmax, lowest id on ties, and draws nothing from the rng", () => {
  const s = new Sampler(V);
  const x = randomLogits(1);
  x[777] = 10;
  const rng = new Rng(5);
  assert.equal(s.sample(x, params({ temperature: 0 }), noBias, none, rng), 777);
  x[12] = 10;
  assert.equal(s.sample(x, params({ temperature: 0 }), noBias, none, rng), 12);
  assert.equal(rng.nextU32(), new Rng(5).nextU32());
});

test("plain sampling follows the softmax (chi-square, fixed seed)", () => {
  const s = new Sampler(SV);
  const probs = [0.5, 0.25, 0.15, 0.1];
  const N = 20_000;
  const h = histogram(s, logitsFor(probs), params(), N, 11);
  let chi2 = 0;
  probs.forEach((p, i) => {
    const o = h.get(i) ?? 0;
    chi2 += (o - p * N) ** 2 / (p * N);
  });
  assert.ok(chi2 < 16.3, `chi2 ${chi2}`); // 3 dof, p = 0.001
  assert.equal([...h.keys()].filter((t) => t >= 4).length, 0);
});

test("temperature sharpens and flattens", () => {
  const s = new Sampler(SV);
  const x = logitsFor([0.6, 0.4]);
  const N = 10_000;
  const cold = (histogram(s, x, params({ temperature: 0.25 }), N, 3).get(0) ?? 0) / N;
  const hot = (histogram(s, x, params({ temperature: 4 }), N, 3).get(0) ?? 0) / N;
  // p0 = 0.6^(1/T) / (0.6^(1/T) + 0.4^(1/T))
  const expect = (T: number): number => 0.6 ** (1 / T) / (0.6 ** (1 / T) + 0.4 ** (1 / T));
  assert.ok(Math.abs(cold - expect(0.25)) < 0.02, `cold ${cold} vs ${expect(0.25)}`);
  assert.ok(Math.abs(hot - expect(4)) < 0.02, `hot ${hot} vs ${expect(4)}`);
});

test("top_k=2 never picks outside the top 2 and keeps their ratio", () => {
  const s = new Sampler(SV);
  const x = randomLogits(2, SV);
  x[10] = 5;
  x[20] = 4.5;
  x[30] = 4.4;
  const h = histogram(s, x, params({ topK: 2 }), 10_000, 4);
  assert.deepEqual([...h.keys()].sort((a, b) => a - b), [10, 20]);
  const ratio = h.get(10)! / h.get(20)!;
  assert.ok(Math.abs(ratio - Math.exp(0.5)) < 0.12, `ratio ${ratio}`);
});

test("top_k=1 is greedy", () => {
  const s = new Sampler(V);
  const x = randomLogits(3);
  const h = histogram(s, x, params({ topK: 1, temperature: 3 }), 500, 4);
  assert.deepEqual([...h.keys()], [argmax(x, V)]);
});

test("top_p keeps the smallest prefix reaching p, renormalised", () => {
  const s = new Sampler(SV);
  const probs = [0.4, 0.3, 0.2, 0.1];
  const x = logitsFor(probs);
  // 0.4 + 0.3 = 0.7 < 0.75 → the third token is needed; the fourth never
  const N = 18_000;
  const h = histogram(s, x, params({ topP: 0.75 }), N, 9);
  assert.deepEqual([...h.keys()].sort(), [0, 1, 2]);
  const z = 0.9;
  [0, 1, 2].forEach((t) => {
    const f = h.get(t)! / N;
    assert.ok(Math.abs(f - probs[t] / z) < 0.015, `token ${t}: ${f} vs ${probs[t] / z}`);
  });
  // 0.4 + 0.3 reaches 0.69: the third is out
  const h2 = histogram(s, x, params({ topP: 0.69 }), 2000, 9);
  assert.deepEqual([...h2.keys()].sort(), [0, 1]);
});

test("top_p with a nucleus of half a 32000-token vocabulary", () => {
  const s = new Sampler(V);
  const x = new Float32Array(V); // uniform: the nucleus for p=0.5 is 16000 tokens
  const N = 2000;
  const h = histogram(s, x, params({ topP: 0.5 }), N, 10);
  // ties rank by lower id, so the nucleus is ids [0, 16000)
  assert.ok([...h.keys()].every((t) => t < 16000));
  assert.ok(h.size > 1700, `only ${h.size} distinct tokens`);
});

test("top_k then top_p: p is measured within the top k", () => {
  const s = new Sampler(SV);
  const x = logitsFor([0.3, 0.3, 0.2, 0.2]);
  // within top 2 each has 0.5: p = 0.5 keeps just the first
  const h = histogram(s, x, params({ topK: 2, topP: 0.5 }), 500, 12);
  assert.deepEqual([...h.keys()], [0]);
});

test("min_p excludes tokens below min_p * p_max", () => {
  const s = new Sampler(SV);
  const probs = [0.5, 0.3, 0.12, 0.08];
  const x = logitsFor(probs);
  // bar = 0.2 * 0.5 = 0.1: token 3 (0.08) and the tail are out
  const N = 15_000;
  const h = histogram(s, x, params({ minP: 0.2 }), N, 13);
  assert.deepEqual([...h.keys()].sort(), [0, 1, 2]);
  const z = 0.92;
  [0, 1, 2].forEach((t) => assert.ok(Math.abs(h.get(t)! / N - probs[t] / z) < 0.015));
  // combined with top_p, the tighter one wins
  const h2 = histogram(s, x, params({ minP: 0.2, topP: 0.6 }), 2000, 13);
  assert.deepEqual([...h2.keys()].sort(), [0, 1]);
});

test("penalties change exactly the generated tokens' logits, by OpenAI's formula", () => {
  const s = new Sampler(V);
  const x = randomLogits(14);
  const before = x.slice();
  const counts = new Map([
    [5, 1],
    [9, 3],
  ]);
  const out = s.process(x, params({ presencePenalty: 0.5, frequencyPenalty: 0.25 }), noBias, { counts });
  assert.deepEqual(x, before, "the model's row is not modified");
  for (let i = 0; i < V; i++) {
    const c = counts.get(i) ?? 0;
    const want = Math.fround(before[i] - (c * 0.25 + (c > 0 ? 0.5 : 0)));
    assert.equal(out[i], want, `logit ${i}`);
  }
  // negative penalties encourage repetition
  const out2 = s.process(x, params({ presencePenalty: -1 }), noBias, { counts });
  assert.equal(out2[5], Math.fround(before[5] + 1));
  assert.equal(out2[6], before[6]);
  // nothing to change: the row itself comes back (no copy)
  assert.equal(s.process(x, params(), noBias, { counts }), x);
});

test("logit_bias: -100 bans, +100 forces, others shift exactly", () => {
  const s = new Sampler(V);
  const x = randomLogits(15);
  const top = argmax(x, V);
  const ban = parseLogitBias({ [top]: -100 }, V);
  for (let i = 0; i < 200; i++) {
    assert.notEqual(s.sample(x, params({ temperature: 0 }), ban, none, new Rng(i)), top);
  }
  const force = parseLogitBias({ 31999: 100 }, V);
  const rng = new Rng(1);
  for (let i = 0; i < 200; i++) assert.equal(s.sample(x, params({ temperature: 1.5 }), force, none, rng), 31999);
  const shift = parseLogitBias({ 3: 2.5, 999999: 1 }, V); // out-of-vocab ids are dropped
  assert.deepEqual([...shift.ids], [3]);
  const out = s.process(x, params(), shift, none);
  assert.equal(out[3], Math.fround(x[3] + 2.5));
  assert.equal(out[4], x[4]);
});

test("logprobs are the raw log-softmax: normalised, exact, top sorted", () => {
  const s = new Sampler(V);
  const x = randomLogits(16);
  x[42] = 6;
  const lp = s.logprobs(x, 42, 5);
  // float64 reference
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let z = 0;
  for (const v of x) z += Math.exp(v - m);
  const lse = m + Math.log(z);
  assert.ok(Math.abs(lp.logprob - (x[42] - lse)) < 1e-9);
  assert.equal(lp.top.length, 5);
  assert.equal(lp.top[0].tokenId, 42);
  for (let i = 1; i < 5; i++) assert.ok(lp.top[i - 1].logprob >= lp.top[i].logprob);
  const sorted = Array.from(x.keys()).sort((a, b) => x[b] - x[a] || a - b);
  assert.deepEqual(lp.top.map((t) => t.tokenId), sorted.slice(0, 5));
  const all = s.logprobs(x, 0, V).top;
  assert.equal(all.length, V);
  let total = 0;
  for (const t of all) total += Math.exp(t.logprob);
  assert.ok(Math.abs(total - 1) < 1e-6, `sum of probabilities ${total}`);
  assert.deepEqual(s.logprobs(x, 0, 0).top, []);
});

test("selectMass finds the smallest best-first set reaching the mass", () => {
  for (const seed of [4, 5, 6]) {
    const n = 3000;
    const r = new Rng(seed);
    const w = Float64Array.from({ length: n }, () => r.nextFloat() ** 4);
    w[7] = w[8]; // a tie
    const total = w.reduce((a, b) => a + b, 0);
    const ref = Array.from({ length: n }, (_, i) => i).sort((a, b) => w[b] - w[a] || a - b);
    for (const p of [0.01, 0.3, 0.9, 0.999]) {
      const idx = Int32Array.from({ length: n }, (_, i) => i);
      const k = selectMass(idx, w, n, p * total);
      let cum = 0;
      let want = 0;
      while (cum < p * total) cum += w[ref[want++]];
      assert.equal(k, want, `p=${p}`);
      assert.deepEqual([...idx.subarray(0, k)].sort((a, b) => a - b), ref.slice(0, k).sort((a, b) => a - b));
    }
  }
});

test("selectTop + sortPrefix equal a full sort's prefix", () => {
  for (const seed of [1, 2, 3]) {
    const n = 5000;
    const key = randomLogits(seed, n);
    key[10] = key[20]; // a tie
    for (const k of [1, 7, 40, 100, n]) {
      const idx = Int32Array.from({ length: n }, (_, i) => i);
      selectTop(idx, key, n, k);
      sortPrefix(idx, key, k);
      const ref = Array.from({ length: n }, (_, i) => i).sort((a, b) => key[b] - key[a] || a - b);
      assert.deepEqual([...idx.subarray(0, k)], ref.slice(0, k));
    }
  }
});

test("same seed, same tokens; the sampler's buffers carry nothing between rows", () => {
  const s = new Sampler(V);
  const rows = [randomLogits(20), randomLogits(21), randomLogits(22)];
  const p = params({ topP: 0.9, topK: 50, temperature: 0.8 });
  const run = (interleave: boolean): number[] => {
    const rng = new Rng(99);
    const other = new Rng(100);
    return rows.map((r) => {
      if (interleave) s.sample(rows[2], params({ presencePenalty: 1 }), noBias, { counts: new Map([[1, 1]]) }, other);
      return s.sample(r, p, noBias, none, rng);
    });
  };
  assert.deepEqual(run(false), run(true));
});

test("a grammar mask: only allowed tokens, greedy is the best allowed, draws follow the renormalised softmax", () => {
  // allowed: ids 1, 2, 3 and 37 of 40 (bits across two mask words); the best logits are forbidden
  const mask = new Int32Array(2);
  for (const id of [1, 2, 3, 37]) mask[id >> 5] |= 1 << (id & 31);
  const x = logitsFor([0.6, 0.2, 0.1, 0.05, 0.05]);
  const s = new Sampler(SV);
  assert.equal(s.sample(x, params({ temperature: 0 }), noBias, none, new Rng(1), mask), 1);
  // a +100 bias cannot bring a forbidden token back
  assert.equal(s.sample(x, params({ temperature: 0 }), parseLogitBias({ 0: 100 }, SV), none, new Rng(1), mask), 1);
  for (const p of [params(), params({ topK: 2 }), params({ topP: 0.9 }), params({ minP: 0.01 }), params({ topK: 30, topP: 0.999 })]) {
    const rng = new Rng(3);
    for (let i = 0; i < 2000; i++) {
      const t = s.sample(x, p, noBias, none, rng, mask);
      assert.ok([1, 2, 3, 37].includes(t), `token ${t} is masked out`);
    }
  }
  // among the allowed: 0.2 : 0.1 : 0.05 : ~0 (id 37 has logit -1e4)
  const N = 20_000;
  const rng = new Rng(7);
  const h = new Map<number, number>();
  for (let i = 0; i < N; i++) {
    const t = s.sample(x, params(), noBias, none, rng, mask);
    h.set(t, (h.get(t) ?? 0) + 1);
  }
  const probs = [0.2 / 0.35, 0.1 / 0.35, 0.05 / 0.35];
  let chi2 = 0;
  probs.forEach((p, i) => (chi2 += ((h.get(i + 1) ?? 0) - p * N) ** 2 / (p * N)));
  assert.ok(chi2 < 13.8, `chi2 ${chi2}`); // 2 dof, p = 0.001
  // a mask shorter than the vocabulary forbids the ids past its end
  assert.equal(s.sample(x, params({ temperature: 0 }), noBias, none, new Rng(1), Int32Array.of(0b1000)), 3);
});
