// The native training boundary (native/index.ts: adapters, trainForward/trainBackward,
// step, parameters, merge) on tiny random models against the float64 reference, and a
// short LoRA fine-tune of stories260K.
//
// Gradients are read through the optimizer: a step with lr = 0, beta1 = 0 leaves the
// weights alone and sets expAvg = grad exactly, so optimizerState() exposes them.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native, type AdapterSpec, type NativeModel, type OptimizerStep, type TrainBatch } from "../native/index.js";
import { loadModel } from "../engine/model.js";
import { assertClose, centralDiff, freshSeed, Rng } from "./reference/check.js";
import { llamaForwardRef, type RefLora, type RefWeights } from "./reference/llama.js";
import { logprobRef, trainForwardRef, upstreamLoss } from "./reference/train.js";
import { storiesDir } from "./test-model.js";
import { buildTiny, type Built, type Tiny } from "./tiny-model.js";

const TARGETS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
const base: Tiny = { C: 24, I: 40, L: 2, NH: 4, NKV: 2, HD: 6, V: 37, dtype: "f32", bias: false, qkNorm: false, tied: true, ropeScaling: 1 };
const variants: [string, Tiny][] = [
  ["llama gqa tied", base],
  ["llama mha untied, odd sizes", { ...base, C: 21, I: 33, NH: 3, NKV: 3, HD: 8, V: 29, tied: false }],
  ["qwen2 biases, bf16 base", { ...base, dtype: "bf16", bias: true, NH: 4, NKV: 1, HD: 8, C: 20 }],
  ["qwen3 qk-norm untied, rope scaling", { ...base, qkNorm: true, tied: false, ropeScaling: 0.9 }],
  // every bias gets a gradient in full fine-tuning; windows shorter than the 5- and 4-token sequences
  ["llama attention + mlp biases, sliding windows 3 and 2", { ...base, bias: true, oBias: true, mlpBias: true, windows: [3, 2] }],
];

const PROBE: OptimizerStep = { lr: 0, beta1: 0, beta2: 0, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 };
type Coded = Error & { code?: string };
const hasCode = (code: string) => (e: unknown) => (e as Coded).code === code;
const i32 = (a: readonly number[]) => Int32Array.from(a);

/** The trainable set's gradients by name (consumes them: the probe step zeroes them). */
async function grads(m: NativeModel): Promise<Map<string, Float32Array>> {
  await m.step(PROBE);
  return new Map(m.optimizerState().tensors.map((t) => [t.name, t.expAvg]));
}

function loraSpec(seed: number, dropout = 0): AdapterSpec {
  return { lora: { rank: 3, alpha: 5, dropout, targets: [...TARGETS], seed }, valueHead: true };
}

/** Random nonzero B (and value head) so every LoRA path carries signal. */
function randomiseAdapter(m: NativeModel, name: string, rng: Rng): void {
  for (const p of m.parameters(name))
    if (!p.name.endsWith("lora_A")) m.writeParameter(name, p.name, rng.f32(p.shape.reduce((a, b) => a * b, 1), -0.3, 0.3));
}

/** The adapter's tensors in float64, as the reference takes them. */
function refAdapter(m: NativeModel, name: string, rank: number, scale: number): { lora: RefLora; vh: Float64Array } {
  const lora: RefLora = { rank, scale, A: new Map(), B: new Map() };
  let vh = new Float64Array(0);
  for (const p of m.parameters(name)) {
    const data = Float64Array.from(m.readParameter(name, p.name));
    if (p.name === "value_head") vh = data;
    else (p.name.endsWith("lora_A") ? lora.A : lora.B).set(p.name.replace(/\.lora_[AB]$/, ""), data);
  }
  return { lora, vh };
}

interface Batch {
  tokens: number[];
  counts: number[];
  targets: number[];
}

function randomBatch(rng: Rng, V: number, counts: number[]): Batch {
  const T = counts.reduce((a, b) => a + b, 0);
  const tokens = Array.from({ length: T }, () => rng.int(V));
  const targets = Array.from({ length: T }, () => rng.int(V));
  targets[1] = -1; // one masked position
  return { tokens, counts, targets };
}

function trainBatch(b: Batch, adapter: string | null, extra: Partial<TrainBatch> = {}): TrainBatch {
  return { tokens: i32(b.tokens), counts: i32(b.counts), targets: i32(b.targets), adapter, values: false, grad: true, checkpoint: false, ...extra };
}

/** Indices checked per tensor: all of a small one, a random subset of a large one. */
function sample(n: number, rng: Rng, k = 5): number[] {
  if (n <= 2 * k) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: k }, () => rng.int(n));
}

// |native − reference| ≤ 2e-4·max|reference over the tensor's checked elements| + 2e-3·|reference|
function assertGrad(got: Float32Array, idx: number[], want: number[], what: string): void {
  const scale = Math.max(1e-3, ...want.map(Math.abs));
  idx.forEach((i, j) => {
    const err = Math.abs(got[i]! - want[j]!);
    assert.ok(err <= 2e-4 * scale + 2e-3 * Math.abs(want[j]!), `${what}[${i}]: native ${got[i]}, reference ${want[j]} (scale ${scale})`);
  });
}

describe("native training on tiny random models", () => {
  let dir = "";
  const seed = freshSeed();
  const rng = new Rng(seed);
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "hc-native-train-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const open = (b: Built): NativeModel => native().createModel({ ...b.spec, maxPositions: 32 }, b.tensors, { threads: 2, kvBlockSize: 4, kvBlocks: 32 });

  for (const [label, cfg] of variants) {
    it(`gradients match central differences of the float64 reference: ${label}`, async () => {
      const b = buildTiny(dir, "grad_" + label.replace(/\W+/g, "_"), cfg, rng);
      const m = open(b);
      try {
        m.addAdapter("a", loraSpec(rng.int(1000)));
        randomiseAdapter(m, "a", rng);
        const scale = 5 / 3;
        const ad = refAdapter(m, "a", 3, scale);
        const batch = randomBatch(rng, cfg.V, [5, 4]);
        const T = batch.tokens.length;
        const dlogp = rng.f32(T, -1, 1), dvalues = rng.f32(T, -1, 1);
        const loss = () => upstreamLoss(trainForwardRef(b.ref, b.weights, batch.tokens, batch.counts, batch.targets, ad.lora, ad.vh), dlogp, dvalues);

        // forward values first
        const fwd = await m.trainForward(trainBatch(batch, "a", { values: true }));
        const want = trainForwardRef(b.ref, b.weights, batch.tokens, batch.counts, batch.targets, ad.lora, ad.vh);
        assertClose(fwd.logp, want.logp, 1e-4, 1e-4, `${label} logp seed=${seed}`);
        assertClose(fwd.values!, want.values, 1e-4, 1e-4, `${label} values seed=${seed}`);
        assert.equal(fwd.logp[1], 0, "masked position");

        // adapter tensors
        m.setTrainable({ adapter: "a" });
        await m.trainForward(trainBatch(batch, "a", { values: true }));
        await m.trainBackward(dlogp, dvalues);
        for (const [name, g] of await grads(m)) {
          const key = name.replace(/\.lora_[AB]$/, "");
          const t = name === "value_head" ? ad.vh : (name.endsWith("lora_A") ? ad.lora.A : ad.lora.B).get(key)!;
          const idx = sample(t.length, rng);
          assertGrad(g, idx, idx.map((i) => centralDiff(t, i, loss)), `${label} ${name} seed=${seed}`);
        }

        // every base tensor (full fine-tuning), the adapter's LoRA still applied
        m.setTrainable({ base: true });
        await m.trainForward(trainBatch(batch, "a", { values: true }));
        await m.trainBackward(dlogp, dvalues);
        const g = await grads(m);
        assert.deepEqual([...g.keys()].sort(), m.parameters(null).map((p) => p.name).sort());
        for (const [name, gt] of g) {
          const t = b.weights.get(name)!;
          const idx = sample(t.length, rng);
          assertGrad(gt, idx, idx.map((i) => centralDiff(t, i, loss)), `${label} base ${name} seed=${seed}`);
        }
      } finally {
        m.dispose();
      }
    });
  }

  it("trainForward logp equals log_softmax of the serving forward's logits", async () => {
    const b = buildTiny(dir, "logp", base, rng);
    const m = open(b);
    try {
      m.addAdapter("a", loraSpec(7));
      randomiseAdapter(m, "a", rng);
      const batch = randomBatch(rng, base.V, [6, 3, 7]);
      for (const adapter of [null, "a"]) {
        const got = await m.trainForward(trainBatch(batch, adapter, { grad: false }));
        let t0 = 0;
        for (const [s, n] of batch.counts.entries()) {
          const logits = await m.forward({ seqIds: i32([100 + s]), tokens: i32(batch.tokens.slice(t0, t0 + n)), counts: i32([n]), logits: "all", adapters: [adapter] });
          m.freeSeq(100 + s);
          const want = logprobRef(Float64Array.from(logits), batch.targets.slice(t0, t0 + n), n, base.V);
          assertClose(got.logp.subarray(t0, t0 + n), want, 1e-5, 1e-5, `adapter ${adapter} sequence ${s} seed=${seed}`);
          t0 += n;
        }
      }
    } finally {
      m.dispose();
    }
  });

  it("checkpointing gives the same gradients; micro-batches accumulate; masked targets contribute nothing", async () => {
    const b = buildTiny(dir, "accumulate", { ...base, qkNorm: true, bias: true }, rng);
    const m = open(b);
    try {
      m.addAdapter("a", loraSpec(11, 0.25));
      randomiseAdapter(m, "a", rng);
      // a twin of "a" (same seed, same tensors): its first grad forward draws the same dropout masks
      m.addAdapter("twin", loraSpec(11, 0.25));
      for (const p of m.parameters("a")) m.writeParameter("twin", p.name, m.readParameter("a", p.name));
      const one = randomBatch(rng, base.V, [6, 5]);
      const two = randomBatch(rng, base.V, [7]);
      const both: Batch = { tokens: [...one.tokens, ...two.tokens], counts: [...one.counts, ...two.counts], targets: [...one.targets, ...two.targets] };
      const d1 = rng.f32(11), d2 = rng.f32(7);
      const dBoth = Float32Array.from([...d1, ...d2]);
      for (const set of [{ adapter: "a" }, { base: true as const }]) {
        m.setTrainable(set);
        // no dropout here: one batch vs two micro-batches draw different masks
        const run = async (bt: Batch, d: Float32Array, checkpoint: boolean, adapter: string | null) => {
          await m.trainForward(trainBatch(bt, adapter, { checkpoint }));
          await m.trainBackward(d, null);
        };
        await run(both, dBoth, false, null);
        const plain = await grads(m);
        await run(both, dBoth, true, null);
        const ckpt = await grads(m);
        await run(one, d1, false, null);
        await run(two, d2, true, null);
        const accumulated = await grads(m);
        for (const [name, g] of plain) {
          assertClose(ckpt.get(name)!, g, 1e-7, 1e-6, `checkpoint ${name} seed=${seed}`);
          // summation order differs (one GEMM over 18 rows vs two): fp32 rounding relative to the tensor's scale
          const scale = g.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
          assertClose(accumulated.get(name)!, g, 1e-3 * scale + 1e-7, 1e-3, `micro-batches ${name} seed=${seed}`);
        }
        // masked targets: dlogp there changes nothing
        const masked = { ...one, targets: one.targets.map((t, i) => (i % 2 ? -1 : t)) };
        const dm = Float32Array.from(d1, (v, i) => (i % 2 ? 0 : v));
        await run(masked, d1, false, null);
        const withNoise = await grads(m);
        await run(masked, dm, false, null);
        const clean = await grads(m);
        for (const [name, g] of clean) assertClose(withNoise.get(name)!, g, 0, 0, `masked ${name}`);
      }
      // with dropout: a checkpointed backward recomputes the forward's masks
      const runOn = async (adapter: string, checkpoint: boolean) => {
        m.setTrainable({ adapter });
        await m.trainForward(trainBatch(both, adapter, { checkpoint }));
        await m.trainBackward(dBoth, null);
        return grads(m);
      };
      const plain = await runOn("a", false);
      const ckpt = await runOn("twin", true);
      for (const [name, g] of plain) assertClose(ckpt.get(name)!, g, 1e-7, 1e-6, `dropout checkpoint ${name} seed=${seed}`);
      const again = await runOn("a", false); // the next forward draws fresh masks
      assert.ok([...again].some(([name, g]) => g.some((v, i) => v !== plain.get(name)![i])), "fresh dropout masks per forward");
    } finally {
      m.dispose();
    }
  });

  it("AdamW with clipping matches a float64 reference over 3 steps; optimizer state resumes identically", async () => {
    const b = buildTiny(dir, "adamw", base, rng);
    const [P, G, Q] = [open(b), open(b), open(b)]; // trained, gradient probe, resumed
    try {
      const copyAdapter = (from: NativeModel, to: NativeModel) => {
        for (const p of from.parameters("a")) to.writeParameter("a", p.name, from.readParameter("a", p.name));
      };
      for (const m of [P, G, Q]) m.addAdapter("a", loraSpec(5));
      randomiseAdapter(P, "a", rng);
      for (const m of [P, G, Q]) m.setTrainable({ adapter: "a" });
      const names = P.parameters("a").map((p) => p.name);
      const w = new Map(names.map((n) => [n, Float64Array.from(P.readParameter("a", n))]));
      const mom = new Map(names.map((n) => [n, new Float64Array(w.get(n)!.length)]));
      const sq = new Map(names.map((n) => [n, new Float64Array(w.get(n)!.length)]));
      let opt: OptimizerStep | null = null;
      for (let step = 1; step <= 3; step++) {
        const batch = randomBatch(rng, base.V, [5, 6]);
        const d = rng.f32(11), dv = rng.f32(11);
        copyAdapter(P, G); // the probe sees P's current weights, so its gradients are P's
        await G.trainForward(trainBatch(batch, "a", { values: true }));
        await G.trainBackward(d, dv);
        const gp = await grads(G);
        let ss = 0;
        for (const t of gp.values()) for (const v of t) ss += v * v;
        const norm2 = Math.sqrt(ss);
        opt ??= { lr: 2e-2, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, maxGradNorm: norm2 / 2 };
        if (step === 3) {  // Q resumes from P's state after two steps
          copyAdapter(P, Q);
          Q.loadOptimizerState(P.optimizerState());
          await Q.trainForward(trainBatch(batch, "a", { values: true }));
          await Q.trainBackward(d, dv);
        }
        await P.trainForward(trainBatch(batch, "a", { values: true }));
        await P.trainBackward(d, dv);
        const res = await P.step(opt);
        assert.equal(res.step, step);
        assert.ok(Math.abs(res.gradNorm - norm2) <= 1e-5 * norm2, `gradNorm ${res.gradNorm} vs ${norm2}`);
        const clip = opt.maxGradNorm > 0 && norm2 > opt.maxGradNorm ? opt.maxGradNorm / (norm2 + 1e-6) : 1;
        const bc1 = 1 - opt.beta1 ** step, bc2 = 1 - opt.beta2 ** step;
        for (const n of names) {
          const p = w.get(n)!, m1 = mom.get(n)!, m2 = sq.get(n)!, gt = gp.get(n)!;
          for (let i = 0; i < p.length; i++) {
            const gi = gt[i]! * clip;
            m1[i] = opt.beta1 * m1[i]! + (1 - opt.beta1) * gi;
            m2[i] = opt.beta2 * m2[i]! + (1 - opt.beta2) * gi * gi;
            p[i] = p[i]! * (1 - opt.lr * opt.weightDecay) - (opt.lr / bc1) * m1[i]! / (Math.sqrt(m2[i]!) / Math.sqrt(bc2) + opt.eps);
          }
          assertClose(P.readParameter("a", n), p, 1e-6, 1e-4, `step ${step} ${n} seed=${seed}`);
        }
        if (step === 3) {
          const rq = await Q.step(opt);
          assert.equal(rq.step, 3);
          for (const n of names) assert.deepEqual(Q.readParameter("a", n), P.readParameter("a", n), `resumed ${n}`);
        }
      }
    } finally {
      for (const m of [P, G, Q]) m.dispose();
    }
  });

  it("adapters in the serving forward: B = 0 is the base, mixed batches equal each alone, merge and unmerge", async () => {
    const b = buildTiny(dir, "serve", { ...base, dtype: "bf16", bias: true }, rng);
    const m = open(b);
    let id = 0;
    const fwd = async (seqs: number[][], adapters: (string | null)[]) => {
      const ids = seqs.map(() => ++id);
      const out = await m.forward({ seqIds: i32(ids), tokens: i32(seqs.flat()), counts: i32(seqs.map((q) => q.length)), logits: "all", adapters });
      ids.forEach((i) => m.freeSeq(i));
      return out;
    };
    try {
      m.addAdapter("zero", loraSpec(1));
      m.addAdapter("x", loraSpec(2));
      m.addAdapter("y", { lora: { rank: 2, alpha: 3, dropout: 0.5, targets: ["k", "o", "down"], seed: 3 }, valueHead: false });
      randomiseAdapter(m, "x", rng);
      randomiseAdapter(m, "y", rng);
      const seqs = [5, 3, 6].map((n) => Array.from({ length: n }, () => rng.int(base.V)));
      const baseAlone = await fwd([seqs[1]!], [null]);
      assert.deepEqual(await fwd([seqs[1]!], ["zero"]), baseAlone, "B = 0 leaves the base's logits bit for bit");
      const xRef = llamaForwardRef(b.ref, b.weights, seqs[0]!, refAdapter(m, "x", 3, 5 / 3).lora);
      const alone = [await fwd([seqs[0]!], ["x"]), baseAlone, await fwd([seqs[2]!], ["y"])];
      assertClose(alone[0]!, xRef, 1e-4, 1e-3, `adapter x vs float64 reference seed=${seed}`);
      const V = base.V;
      const checkMixed = (mixed: Float32Array, atol: number, what: string) => {
        let r = 0;
        seqs.forEach((q, s) => {
          assertClose(mixed.subarray(r * V, (r + q.length) * V), alone[s]!, atol, atol, `${what} sequence ${s} seed=${seed}`);
          r += q.length;
        });
      };
      checkMixed(await fwd(seqs, ["x", null, "y"]), 1e-5, "mixed batch");
      m.mergeAdapter("x");
      checkMixed(await fwd(seqs, ["x", null, "y"]), 1e-4, "merged x");
      await assert.rejects(m.trainForward(trainBatch(randomBatch(rng, V, [3]), null)), hasCode("adapter_merged"));
      assert.throws(() => m.mergeAdapter("y"), hasCode("adapter_merged"));
      m.unmergeAdapter();
      assert.deepEqual(await fwd([seqs[1]!], [null]), baseAlone, "unmerged: the base bit for bit");
    } finally {
      m.dispose();
    }
  });

  it("full fine-tuning: after a step the serving forward runs the trained weights", async () => {
    for (const cfg of [base, { ...base, tied: false, dtype: "bf16" as const, qkNorm: true }]) {
      const b = buildTiny(dir, `fullft_${cfg.tied}`, cfg, rng);
      const m = open(b);
      try {
        m.setTrainable({ base: true });
        const batch = randomBatch(rng, cfg.V, [7]);
        await m.trainForward(trainBatch(batch, null));
        await m.trainBackward(rng.f32(7), null);
        await m.step({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 });
        const trained: RefWeights = new Map(m.parameters(null).map((p) => [p.name, Float64Array.from(m.readParameter(null, p.name))]));
        assert.notDeepEqual(trained.get("L0.q"), b.weights.get("L0.q"));
        const toks = batch.tokens;
        const got = await m.forward({ seqIds: i32([1]), tokens: i32(toks), counts: i32([toks.length]), logits: "all" });
        assertClose(got, llamaForwardRef(b.ref, trained, toks), 1e-4, 1e-3, `trained logits tied=${cfg.tied} seed=${seed}`);
        assert.throws(() => m.mergeAdapter("nope"), hasCode("adapter_unknown"));
        m.addAdapter("l", loraSpec(1));
        assert.throws(() => m.mergeAdapter("l"), hasCode("merge_unsupported"));
      } finally {
        m.dispose();
      }
    }
  });

  it("reports each misuse with a stable code", async () => {
    const b = buildTiny(dir, "errors", base, rng);
    const m = open(b);
    try {
      const batch = randomBatch(rng, base.V, [4]);
      assert.throws(() => m.addAdapter("bad", { lora: { rank: 0, alpha: 1, dropout: 0, targets: ["q"], seed: 0 }, valueHead: false }), hasCode("invalid_adapter"));
      assert.throws(() => m.addAdapter("bad", { lora: { rank: 2, alpha: 1, dropout: 1, targets: ["q"], seed: 0 }, valueHead: false }), hasCode("invalid_adapter"));
      assert.throws(() => m.addAdapter("bad", { lora: { rank: 2, alpha: 1, dropout: 0, targets: ["q_proj" as "q"], seed: 0 }, valueHead: false }), hasCode("invalid_adapter"));
      m.addAdapter("a", { lora: null, valueHead: true });
      assert.throws(() => m.addAdapter("a", loraSpec(1)), hasCode("adapter_exists"));
      assert.deepEqual(m.adapters(), ["a"]);
      assert.throws(() => m.removeAdapter("nope"), hasCode("adapter_unknown"));
      assert.throws(() => m.setTrainable({ adapter: "nope" }), hasCode("adapter_unknown"));
      await assert.rejects(m.forward({ seqIds: i32([1]), tokens: i32([1]), counts: i32([1]), logits: "last", adapters: ["nope"] }), hasCode("adapter_unknown"));
      await assert.rejects(m.step(PROBE), hasCode("nothing_trainable"));
      await assert.rejects(m.trainBackward(new Float32Array(4), null), hasCode("no_forward"));
      await m.trainForward(trainBatch(batch, null, { grad: false }));
      await assert.rejects(m.trainBackward(new Float32Array(4), null), hasCode("no_forward"));
      await m.trainForward(trainBatch(batch, null));
      await m.trainBackward(new Float32Array(4), null);
      await assert.rejects(m.trainBackward(new Float32Array(4), null), hasCode("no_forward"));
      await assert.rejects(m.trainForward(trainBatch(batch, null, { values: true })), hasCode("no_value_head"));
      await assert.rejects(m.trainForward(trainBatch(batch, "nope")), hasCode("adapter_unknown"));
      await assert.rejects(m.trainForward({ ...trainBatch(batch, null), targets: i32([1]) }), hasCode("invalid_batch"));
      assert.throws(() => m.readParameter("a", "L0.q.lora_A"), hasCode("parameter_unknown"));
      assert.throws(() => m.readParameter(null, "L9.q"), hasCode("parameter_unknown"));
      assert.throws(() => m.writeParameter("a", "value_head", new Float32Array(3)), hasCode("shape_mismatch"));
      assert.throws(() => m.writeParameter(null, "L0.q", new Float32Array(3)), hasCode("shape_mismatch"));
      m.setTrainable({ adapter: "a" });
      assert.throws(() => m.loadOptimizerState({ step: 1, tensors: [{ name: "L0.q", expAvg: new Float32Array(1), expAvgSq: new Float32Array(1) }] }), hasCode("parameter_unknown"));
      assert.throws(() => m.loadOptimizerState({ step: 1, tensors: [{ name: "value_head", expAvg: new Float32Array(1), expAvgSq: new Float32Array(1) }] }), hasCode("shape_mismatch"));
      const pending = m.trainForward(trainBatch(batch, "a", { values: true }));
      await assert.rejects(m.trainForward(trainBatch(batch, null)), hasCode("busy"));
      assert.throws(() => m.addAdapter("b", loraSpec(1)), hasCode("busy"));
      await assert.rejects(m.step(PROBE), hasCode("busy"));
      await pending;
      await assert.rejects(m.trainBackward(new Float32Array(4), new Float32Array(3)), hasCode("invalid_argument"));
      assert.throws(() => m.addAdapter("none", { lora: null, valueHead: false }), hasCode("invalid_adapter"));
      m.addAdapter("l", loraSpec(2));
      m.setTrainable({ adapter: "l" });
      assert.throws(() => m.mergeAdapter("l"), hasCode("adapter_trainable"));
      assert.throws(() => m.mergeAdapter("a"), hasCode("invalid_adapter"));
      const long = randomBatch(rng, base.V, [33]);
      await assert.rejects(m.trainForward(trainBatch(long, null)), hasCode("context_full"));
      m.removeAdapter("l");
      m.removeAdapter("a");
      assert.deepEqual(m.adapters(), []);
      await assert.rejects(m.step(PROBE), hasCode("nothing_trainable"));
    } finally {
      m.dispose();
    }
  });
});

describe("native training on stories260K", () => {
  it("a LoRA fine-tune of a fixed batch lowers its loss over 20 steps", async () => {
    const lm = await loadModel(storiesDir, { threads: 2 });
    try {
      const m = lm.native;
      m.addAdapter("sft", { lora: { rank: 4, alpha: 8, dropout: 0.05, targets: ["q", "v", "gate"], seed: 3 }, valueHead: false });
      m.setTrainable({ adapter: "sft" });
      const ids = lm.tokenizer.encode("Once upon a time, there was a little girl named Zara. Zara loved her red kite.", true);
      const batch: TrainBatch = { tokens: i32(ids.slice(0, -1)), counts: i32([ids.length - 1]), targets: i32(ids.slice(1)), adapter: "sft", values: false, grad: true, checkpoint: false };
      const T = ids.length - 1;
      const losses: number[] = [];
      for (let i = 0; i < 20; i++) {
        const { logp } = await m.trainForward(batch);
        losses.push(-logp.reduce((a, b) => a + b, 0) / T);
        await m.trainBackward(new Float32Array(T).fill(-1 / T), null);
        await m.step({ lr: 5e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 });
      }
      assert.ok(losses[19]! < 0.5 * losses[0]!, `loss ${losses[0]} → ${losses[19]}`);
    } finally {
      lm.dispose();
    }
  });
});
