// Tensor parallelism (native/src/rank.h) against one rank, up to fp32 rounding (only the
// all-reduce's summation order differs): logits of random checkpoints of every layout and
// of stories260K, greedy decoding token for token, continuous batching, LoRA adapters per
// sequence and merged; training to the same gradients and weights (LoRA and full, dropout,
// value head, checkpointing). Sizes that do not divide the heads are refused. The commands
// are in tensor-parallel-cli.test.ts.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native, type NativeModel, type TrainableSet, type TrainBatch } from "../native/index.js";
import { loadModel } from "../engine/model.js";
import { assertClose, freshSeed, Rng } from "./reference/check.js";
import { llamaForwardRef } from "./reference/llama.js";
import { buildTiny, type Built, type Tiny } from "./tiny-model.js";
import { storiesDir } from "./test-model.js";

const seq = (...a: number[]) => Int32Array.from(a);
type Coded = Error & { code?: string };
const hasCode = (code: string) => (e: unknown) => (e as Coded).code === code;

// head counts and MLP width divisible by 2; C and I large enough that the kernels split work
const base: Tiny = { C: 64, I: 96, L: 2, NH: 8, NKV: 4, HD: 8, V: 101, dtype: "f32", bias: false, qkNorm: false, tied: true, ropeScaling: 1 };
const variants: [string, Tiny][] = [
  ["llama gqa tied f32", base],
  ["qwen2 biases bf16, one kv head per rank", { ...base, dtype: "bf16", bias: true, NKV: 2, HD: 16, C: 48 }],
  ["qwen3 qk-norm f16 untied", { ...base, dtype: "f16", qkNorm: true, tied: false, L: 3 }],
  // o and down are row-split: their biases are added once, not once per rank
  ["llama attention + mlp biases, sliding windows 6 and 3", { ...base, bias: true, oBias: true, mlpBias: true, windows: [6, 3] }],
];

const argmax = (a: Float32Array, off: number, V: number) => {
  let best = 0;
  for (let i = 1; i < V; i++) if (a[off + i]! > a[off + best]!) best = i;
  return best;
};

describe("tensor parallelism on random checkpoints", () => {
  let dir = "";
  const seed = freshSeed();
  const rng = new Rng(seed);
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "hc-tp-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const tokens = (n: number, V: number) => Array.from({ length: n }, () => rng.int(V));
  const open = (b: Built, tp: number): NativeModel =>
    native().createModel(b.spec, b.tensors, { threads: 2, kvBlockSize: 4, kvBlocks: 64, tensorParallel: tp });

  for (const [label, cfg] of variants) {
    it(`TP=2 prefill and decode logits equal TP=1 and the float64 reference: ${label}`, async () => {
      const b = buildTiny(dir, label.replace(/\W+/g, "_"), cfg, rng);
      const one = open(b, 1), two = open(b, 2);
      try {
        const toks = tokens(13, cfg.V);
        const batch = { seqIds: seq(4), tokens: Int32Array.from(toks), counts: seq(13), logits: "all" as const };
        const [l1, l2] = [await one.forward(batch), await two.forward(batch)];
        assertClose(l2, l1, 2e-5, 2e-4, `${label} prefill TP=2 vs TP=1 seed=${seed}`);
        assertClose(l2, llamaForwardRef(b.ref, b.weights, toks), 1e-4, 1e-3, `${label} prefill vs reference seed=${seed}`);
        for (const t of tokens(5, cfg.V)) {  // decode reads the keys/values each rank wrote for its heads
          const step = { seqIds: seq(4), tokens: seq(t), counts: seq(1), logits: "last" as const };
          assertClose(await two.forward(step), await one.forward(step), 2e-5, 2e-4, `${label} decode seed=${seed}`);
        }
      } finally {
        one.dispose();
        two.dispose();
      }
    });
  }

  it("continuous batching under TP=2: mixed prefill/decode steps equal TP=1, freed sequences too", async () => {
    const b = buildTiny(dir, "batching", base, rng);
    const one = open(b, 1), two = open(b, 2);
    try {
      const a = tokens(7, base.V), c = tokens(5, base.V), d = tokens(9, base.V);
      const steps = [
        { seqIds: seq(1, 2), tokens: Int32Array.from([...a, ...c]), counts: seq(7, 5), logits: "last" as const },
        { seqIds: seq(2, 3, 1), tokens: Int32Array.from([c[0]!, ...d, a[1]!]), counts: seq(1, 9, 1), logits: "all" as const },
        { seqIds: seq(3, 1), tokens: seq(d[2]!, a[3]!), counts: seq(1, 1), logits: "last" as const },
      ];
      for (const [i, s] of steps.entries()) {
        assertClose(await two.forward(s), await one.forward(s), 2e-5, 2e-4, `step ${i} seed=${seed}`);
        if (i === 0) {
          one.freeSeq(2);
          two.freeSeq(2);
        }
      }
      assert.deepEqual(two.kvStats(), one.kvStats());
    } finally {
      one.dispose();
      two.dispose();
    }
  });

  it("LoRA adapters per sequence (two of different ranks and targets, and the base in one batch) and merged give the same logits at TP=2 as at TP=1", async () => {
    const b = buildTiny(dir, "lora", base, rng);
    const one = open(b, 1), two = open(b, 2);
    try {
      for (const m of [one, two]) {
        m.addAdapter("x", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "k", "v", "o", "gate", "up", "down"], seed: 7 }, valueHead: false });
        // y: another rank, on both kinds of split (q, up column-parallel; o, down row-parallel)
        m.addAdapter("y", { lora: { rank: 2, alpha: 6, dropout: 0, targets: ["q", "o", "up", "down"], seed: 9 }, valueHead: false });
      }
      // B starts at zero: give it random values so every LoRA path shows in the logits
      for (const ad of ["x", "y"])
        for (const p of one.parameters(ad).filter((p) => p.name.endsWith("lora_B"))) {
          const data = Float32Array.from(rng.f32(p.shape[0]! * p.shape[1]!, -0.3, 0.3));
          one.writeParameter(ad, p.name, data);
          two.writeParameter(ad, p.name, data);
        }
      const toks = tokens(6, base.V), other = tokens(4, base.V), third = tokens(5, base.V);
      const batch = { seqIds: seq(1, 2, 7), tokens: Int32Array.from([...toks, ...other, ...third]), counts: seq(6, 4, 5), logits: "all" as const, adapters: ["x", null, "y"] };
      const want = await one.forward(batch);
      assertClose(await two.forward(batch), want, 2e-5, 2e-4, `adapters per sequence seed=${seed}`);
      const plain = await one.forward({ ...batch, seqIds: seq(5, 6, 8), adapters: [null, null, null] });
      for (const [r0, r1, ad] of [[0, 6, "x"], [10, 15, "y"]] as const)
        assert.ok(want.slice(r0 * base.V, r1 * base.V).some((v, i) => Math.abs(v - plain[r0 * base.V + i]!) > 1e-3), `adapter ${ad} changes its rows' logits`);
      assertClose(want.slice(6 * base.V, 10 * base.V), plain.slice(6 * base.V, 10 * base.V), 0, 0, "the base row is the base's");
      // x merged at TP=2 only: its rows read the merged weights, the base's and y's undo it
      two.mergeAdapter("x");
      assertClose(await two.forward({ ...batch, seqIds: seq(3, 4, 9) }), want, 2e-5, 2e-4, `merged adapter seed=${seed}`);
    } finally {
      one.dispose();
      two.dispose();
    }
  });

  it("a size that does not divide the heads is refused", () => {
    const b = buildTiny(dir, "bad", { ...base, NKV: 2, NH: 6, I: 90 }, rng);
    assert.throws(() => open(b, 4), (e: Coded) => e.code === "bad_tensor_parallel" && /must divide the key\/value heads \(2\)/.test(e.message));
    assert.throws(() => open(b, 0), hasCode("bad_tensor_parallel"));
  });
});

// k optimizer steps of a mean-NLL loss (plus a value loss when there is a value head) on
// the same batches: the returned log-probs of every step and the final parameters.
// First the gradients of one batch, read through a step with lr 0 and beta1 0 (expAvg =
// grad); then a fresh trainable set trains for k steps.
async function train(m: NativeModel, set: TrainableSet, opts: { steps: number; checkpoint: boolean; values: boolean; batches: TrainBatch[] }) {
  const adapter = "adapter" in (set ?? {}) ? (set as { adapter: string }).adapter : null;
  const grads = new Map<string, Float32Array>();
  const logps: Float32Array[] = [];
  for (let i = -1; i < opts.steps; i++) {
    if (i === 0) for (const t of m.optimizerState().tensors) grads.set(t.name, t.expAvg);
    if (i <= 0) m.setTrainable(set);
    const b = { ...opts.batches[(i + opts.batches.length) % opts.batches.length]!, adapter, values: opts.values, grad: true, checkpoint: opts.checkpoint };
    const f = await m.trainForward(b);
    // a no-grad forward (the reference model) between forward and backward must not disturb the tape
    await m.trainForward({ ...b, adapter: null, values: false, grad: false });
    if (i >= 0) logps.push(f.logp);
    const n = b.targets.filter((t) => t >= 0).length;
    const dlogp = Float32Array.from(b.targets, (t) => (t >= 0 ? -1 / n : 0));
    const dvalues = opts.values ? Float32Array.from(f.values!, (v) => (v - 0.5) / b.tokens.length) : null;
    await m.trainBackward(dlogp, dvalues);
    if (i < 0) await m.step({ lr: 0, beta1: 0, beta2: 0, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 });
    // eps 1e-2 keeps AdamW's update smooth in the gradient: with eps 1e-8 its first step is
    // lr·sign(g), which turns rounding-level differences of near-zero gradients into ±lr
    else await m.step({ lr: 0.02, beta1: 0.9, beta2: 0.99, eps: 1e-2, weightDecay: 0.01, maxGradNorm: 1 });
  }
  const params = new Map(m.parameters(adapter).map((p) => [p.name, m.readParameter(adapter, p.name)]));
  return { grads, logps, params };
}

function batchesOf(rng: Rng, V: number): TrainBatch[] {
  const mk = (counts: number[]): TrainBatch => {
    const T = counts.reduce((a, b) => a + b, 0);
    const tokens = Int32Array.from({ length: T }, () => rng.int(V));
    const targets = Int32Array.from({ length: T }, (_, i) => (i % 5 === 4 ? -1 : rng.int(V)));
    return { tokens, counts: Int32Array.from(counts), targets, adapter: null, values: false, grad: true, checkpoint: false };
  };
  return [mk([9, 6]), mk([12]), mk([4, 5, 7])];
}

describe("tensor-parallel training equals TP=1", () => {
  let dir = "";
  const seed = freshSeed();
  const rng = new Rng(seed);
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "hc-tp-train-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const open = (b: Built, tp: number): NativeModel =>
    native().createModel(b.spec, b.tensors, { threads: 2, kvBlockSize: 4, kvBlocks: 16, tensorParallel: tp });

  const cases: { label: string; cfg: Tiny; set: "lora" | "full"; checkpoint: boolean; values: boolean }[] = [
    { label: "LoRA on every linear with dropout and a value head", cfg: base, set: "lora", checkpoint: false, values: true },
    { label: "LoRA, qwen3 qk-norm, activation checkpointing", cfg: { ...base, qkNorm: true, tied: false, NKV: 2 }, set: "lora", checkpoint: true, values: false },
    { label: "full fine-tuning, qwen2 biases and qk-norm, bf16 base", cfg: { ...base, dtype: "bf16", bias: true, qkNorm: true, tied: false }, set: "full", checkpoint: false, values: false },
    { label: "full fine-tuning, o/mlp biases, sliding windows", cfg: { ...base, bias: true, oBias: true, mlpBias: true, windows: [5, 3] }, set: "full", checkpoint: false, values: false },
  ];
  for (const c of cases) {
    it(`${c.label}: 4 steps reach the same log-probs and weights`, async () => {
      const b = buildTiny(dir, c.label.replace(/\W+/g, "_"), c.cfg, rng);
      const batches = batchesOf(rng, c.cfg.V);
      const bInit = new Map<string, Float32Array>();  // nonzero B, so A has a gradient from the start
      const results = [];
      for (const tp of [1, 2]) {
        const m = open(b, tp);
        try {
          let set: TrainableSet = { base: true };
          if (c.set === "lora") {
            m.addAdapter("a", { lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ["q", "k", "v", "o", "gate", "up", "down"], seed: 11 }, valueHead: c.values });
            set = { adapter: "a" };
            for (const p of m.parameters("a").filter((p) => p.name.endsWith("lora_B"))) {
              if (!bInit.has(p.name)) bInit.set(p.name, Float32Array.from(rng.f32(p.shape[0]! * p.shape[1]!, -0.1, 0.1)));
              m.writeParameter("a", p.name, bInit.get(p.name)!);
            }
          }
          results.push(await train(m, set, { steps: 4, checkpoint: c.checkpoint, values: c.values, batches }));
        } finally {
          m.dispose();
        }
      }
      const [one, two] = results as [Awaited<ReturnType<typeof train>>, Awaited<ReturnType<typeof train>>];
      assert.deepEqual([...two.grads.keys()], [...one.grads.keys()]);
      for (const [name, g] of two.grads) {
        const ref = one.grads.get(name)!;
        const scale = ref.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
        assert.ok(scale > 0, `${name} has a gradient`);
        assertClose(g, ref, 1e-5 * scale, 1e-4, `${name} gradient seed=${seed}`);
      }
      for (const [i, lp] of two.logps.entries()) assertClose(lp, one.logps[i]!, 2e-5, 2e-4, `step ${i} log-probs seed=${seed}`);
      assert.deepEqual([...two.params.keys()], [...one.params.keys()]);
      for (const [name, w] of two.params) {
        assertClose(w, one.params.get(name)!, 2e-5, 2e-4, `${name} after 4 steps seed=${seed}`);
      }
    });
  }
});

describe("tensor parallelism on stories260K", () => {
  it("TP=2 greedy decoding equals TP=1 token for token, two sequences batched", async () => {
    const one = await loadModel(storiesDir, { threads: 2, kvBlocks: 16 });
    const two = await loadModel(storiesDir, { threads: 2, kvBlocks: 16, tensorParallel: 2 });
    const V = one.config.vocabSize;
    try {
      const run = async (m: NativeModel) => {
        const a = [1], c = [1, 403, 407, 261];  // from BOS, and from a 4-token prefill
        const logits: Float32Array[] = [];
        let lg = await m.forward({ seqIds: seq(0, 1), tokens: Int32Array.from([...a, ...c]), counts: seq(1, 4), logits: "last" });
        for (let i = 0; i < 30; i++) {
          logits.push(lg);
          a.push(argmax(lg, 0, V));
          c.push(argmax(lg, V, V));
          lg = await m.forward({ seqIds: seq(0, 1), tokens: seq(a.at(-1)!, c.at(-1)!), counts: seq(1, 1), logits: "last" });
        }
        return { a, c, logits };
      };
      const r1 = await run(one.native), r2 = await run(two.native);
      assert.deepEqual(r2.a, r1.a);
      assert.deepEqual(r2.c, r1.c);
      for (const [i, l] of r2.logits.entries()) assertClose(l, r1.logits[i]!, 2e-5, 2e-4, `step ${i}`);
      // and TP=4 (8 heads, 4 kv heads, MLP 172 all divide by 4)
      const four = await loadModel(storiesDir, { threads: 2, kvBlocks: 16, tensorParallel: 4 });
      try {
        assert.deepEqual((await run(four.native)).a, r1.a);
      } finally {
        four.dispose();
      }
    } finally {
      one.dispose();
      two.dispose();
    }
  });
});
