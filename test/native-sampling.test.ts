// The forward step's own sampler (native/src/cpu/sample.cc) against the JS sampler
// (engine/sampling.ts): the same token for the same logits, settings and draw, bit for bit,
// so a seeded request's output does not depend on which side sampled it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { native, SAMPLE_FIELDS, type ForwardBatch } from "../native/index.js";
import { Engine, type ModelRunner } from "../engine/engine.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { Rng } from "../engine/rng.js";
import { Sampler, logitEdits, parseLogitBias } from "../engine/sampling.js";
import type { SamplingParams } from "../engine/types.js";
import { collect, samplingParams } from "./generation-helpers.js";
import { storiesDir } from "./test-model.js";

const bits = (x: number): bigint => new BigUint64Array(new Float64Array([x]).buffer)[0]!;

test("the native exp is V8's Math.exp bit for bit", () => {
  const r = new Rng(7);
  const xs: number[] = [0, -0, 1, -1, 0.5, -0.5, Infinity, -Infinity, NaN, 709.78, 709.79, -745.13, -745.14, -708.5, 2 ** -29, -(2 ** -29), 0.3465735902799726, 1.0397207708399179];
  // what the sampler feeds it: (logit - max) / T, mostly in [-60, 0], and the whole range besides
  for (let i = 0; i < 200_000; i++) xs.push(-60 * r.nextFloat());
  for (let i = 0; i < 100_000; i++) xs.push((r.nextFloat() - 0.5) * 1500);
  for (let i = 0; i < 50_000; i++) xs.push((r.nextFloat() - 0.5) * 2 ** -20);
  for (let i = 0; i < 50_000; i++) xs.push((r.nextFloat() - 0.5) * 3);
  // every region of fdlibm's in every vector lane, next to each other
  const edges = [0.34657359027997264, 0.3465735902799727, 1.0397207708399179, 1.039720770839918, 2 ** -28, 3.725290298461914e-9, 704, 703.99, 707.5, -707.5, -708.4, 709.7, 1, -1];
  for (let i = 0; i < 4000; i++) xs.push(edges[Math.floor(r.nextFloat() * edges.length)]! * (r.nextFloat() < 0.5 ? -1 : 1) * (r.nextFloat() < 0.5 ? 1 : 1 + (r.nextFloat() - 0.5) * 1e-9));
  for (const batched of [false, true]) {
    const got = native().samplingExp(Float64Array.from(xs), batched);
    let bad = 0;
    let first = "";
    xs.forEach((x, i) => {
      const want = Math.exp(x);
      if (Number.isNaN(want) ? !Number.isNaN(got[i]!) : bits(want) !== bits(got[i]!)) {
        if (bad++ === 0) first = `${batched ? "batched" : "scalar"} exp(${x}): native ${got[i]}, Math.exp ${want}`;
      }
    });
    assert.equal(bad, 0, first);
  }
});

/** one random case: logits with ties and masked-out ids, settings across every branch, penalties and bias */
function randomCase(r: Rng, V: number): { logits: Float32Array; p: SamplingParams; u: number; counts: Map<number, number> } {
  const logits = new Float32Array(V);
  const coarse = r.nextFloat() < 0.3; // few distinct values: ties everywhere
  for (let i = 0; i < V; i++) logits[i] = coarse ? Math.floor(r.nextFloat() * 6) : (r.nextFloat() - 0.5) * 20;
  if (r.nextFloat() < 0.2) for (let i = 0; i < V; i += 3) logits[i] = -Infinity;
  const pick = <T>(a: T[]): T => a[Math.floor(r.nextFloat() * a.length)]!;
  const p = samplingParams({
    temperature: pick([0, 0.05, 0.7, 0.8, 1, 1.5]),
    topK: pick([0, 0, 1, 5, 40, V - 1, V, V + 5]),
    topP: pick([1, 1, 0.9, 0.5, 0.1, 1e-8]),
    minP: pick([0, 0, 0.05, 0.5]),
    presencePenalty: pick([0, 0, 0.5, -1.25]),
    frequencyPenalty: pick([0, 0, 0.3, 2]),
  });
  const counts = new Map<number, number>();
  if (r.nextFloat() < 0.5) for (let i = 0; i < 6; i++) counts.set(Math.floor(r.nextFloat() * V), 1 + Math.floor(r.nextFloat() * 3));
  if (r.nextFloat() < 0.4) {
    // some on penalised ids, some past the vocabulary, one that makes its token certain
    const ids = [...counts.keys(), Math.floor(r.nextFloat() * V), V + 3, Math.floor(r.nextFloat() * V)];
    for (const id of ids) p.logitBias[id] = pick([-100, -2.5, 0.7, 3, 100]);
  }
  return { logits, p, u: r.nextFloat(), counts };
}

test("native sampling picks the JS sampler's token: random logits, ties, -Infinity, every setting, penalties, bias", () => {
  const r = new Rng(11);
  for (const V of [1, 2, 37, 512, 32000]) {
    const sampler = new Sampler(V);
    const cases = Array.from({ length: V === 32000 ? 60 : 400 }, () => randomCase(r, V));
    const logits = new Float32Array(cases.length * V);
    const params = new Float64Array(cases.length * SAMPLE_FIELDS);
    const edits: number[] = [];
    cases.forEach((c, i) => {
      logits.set(c.logits, i * V);
      params.set([i, c.p.temperature, c.p.topK, c.p.topP, c.p.minP, c.u], i * SAMPLE_FIELDS);
      // as the engine hands them over: the bias parsed without knowing V
      const ed = logitEdits(c.p, parseLogitBias(c.p.logitBias, Number.MAX_SAFE_INTEGER), { counts: c.counts });
      for (let j = 0; j < ed.length; j += 3) edits.push(i, ed[j]!, ed[j + 1]!, ed[j + 2]!);
    });
    const before = logits.slice();
    const got = native().sampleRows(logits, V, params, Float64Array.from(edits));
    assert.deepEqual(logits, before, "the edits go to a copy: the logits stay as the model made them");
    cases.forEach((c, i) => {
      const want = sampler.sample(c.logits, c.p, parseLogitBias(c.p.logitBias, V), { counts: c.counts }, { nextFloat: () => c.u });
      assert.equal(got[i], want, `V ${V} case ${i}: ${JSON.stringify({ ...c.p, u: c.u, counts: [...c.counts] })}`);
    });
  }
});

let model: LoadedModel;
before(async () => {
  model = await loadModel(storiesDir, { threads: 2 });
});
after(() => model.dispose());

/** the real model, but the step never samples: every token is the JS sampler's */
class JsSampling implements ModelRunner {
  constructor(private readonly m: ModelRunner) {}
  forward(b: ForwardBatch): Promise<Float32Array> {
    return this.m.forward({ ...b, sample: undefined });
  }
  freeSeq(id: number): void {
    this.m.freeSeq(id);
  }
  kvStats() {
    return this.m.kvStats();
  }
}

test("a seeded engine gives the same tokens whether the step or JS samples them", async () => {
  const prompts = ["Once upon a time", "Tom had a dog", "The sun was", "A"].map((s) => model.tokenizer.encode(s, true));
  const settings: Partial<SamplingParams>[] = [
    { temperature: 0.8 },
    { temperature: 1, topK: 20 },
    { temperature: 0.7, topP: 0.9 },
    { temperature: 1.2, minP: 0.05 },
    { temperature: 0 },
    { temperature: 1, presencePenalty: 0.5, frequencyPenalty: 0.3 },
    { temperature: 0.9, logitBias: { 13: 2.5, 400: -100, 9999: 5 } },
    { temperature: 0, frequencyPenalty: 1.5 },
    { temperature: 1, logprobs: true, topLogprobs: 2 }, // JS samples these rows in both engines
  ];
  const run = async (runner: ModelRunner): Promise<number[][]> => {
    const engine = new Engine({ ...model, native: runner }, { maxBatch: 8, maxQueue: 64, maxBatchTokens: 64 });
    try {
      const all = prompts.flatMap((prompt, i) =>
        settings.map((s, j) => collect(engine.generate({ promptTokens: prompt, params: samplingParams({ maxTokens: 24, seed: 1000 * i + j, ...s }) }))),
      );
      return (await Promise.all(all)).map((c) => c.tokens);
    } finally {
      await engine.close();
    }
  };
  const nativeSide = await run(model.native);
  const jsSide = await run(new JsSampling(model.native));
  assert.deepEqual(nativeSide, jsSide);
  // and they are real samples: the seeded streams differ between settings
  assert.ok(new Set(nativeSide.map((t) => t.join())).size > prompts.length * 3);
});

test("forward's out buffer and sample outputs: the logits land in the caller's array, the tokens in sample.tokens", async () => {
  const m = model.native;
  const out = new Float32Array(4 * 512 + 7).fill(NaN);
  const tokens = new Int32Array(2).fill(-1);
  const seqIds = Int32Array.from([901, 902]);
  const logits = await m.forward({
    seqIds,
    tokens: Int32Array.from([1, 403, 1]),
    counts: Int32Array.from([2, 1]),
    logits: "last",
    out,
    sample: { params: Float64Array.from([1, 0, 0, 1, 0, 0, 0, 0.8, 0, 1, 0, 0.25]), tokens },
  });
  assert.equal(logits.buffer, out.buffer);
  assert.equal(logits.length, 2 * 512);
  const V = 512;
  const sampler = new Sampler(V);
  const none = { counts: new Map<number, number>() };
  assert.equal(tokens[0], sampler.sample(logits.subarray(V, 2 * V), samplingParams(), parseLogitBias({}, V), none, { nextFloat: () => 0 }));
  assert.equal(tokens[1], sampler.sample(logits.subarray(0, V), samplingParams({ temperature: 0.8 }), parseLogitBias({}, V), none, { nextFloat: () => 0.25 }));
  assert.ok(Number.isNaN(out[2 * V]!), "nothing written past the step's rows");
  // a buffer too small fails the step by name, before it runs: the KV cache is left as it was
  await assert.rejects(m.forward({ seqIds: Int32Array.from([901]), tokens: Int32Array.from([5]), counts: Int32Array.from([1]), logits: "last", out: new Float32Array(10) }), /batch\.out/);
  assert.equal(m.seqLength(901), 2);
  for (const id of [901, 902]) m.freeSeq(id);
});
