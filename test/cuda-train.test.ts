// Training on a CUDA device, checked without a GPU: the emulated library (as in
// cuda-engine.test.ts) runs trainForward/trainBackward/step of a model created with device
// "cuda" — the same code path (native/src/model_train.cc over exec_train.h) as the CPU
// model it is compared with, but with the tape, the LoRA A/B, the gradients, the AdamW
// moments and the fp32 masters in device memory and the optimizer as device kernels.
// Each case runs the same steps on both and compares log-probs, values, gradients and the
// updated parameters: a LoRA SFT step (dropout masks drawn on the device, clipping active),
// a PPO-shaped step (policy log-probs and the value head's values, both with gradients,
// activation checkpointing) and a full-parameter step on a tiny random model; and a
// hybrid switch (serving forwards between training steps) that moves no weight bytes.
// With HYBRIDCHAT_CUDA_LIB already set, the same checks run on that library's device 0.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native, type AdapterSpec, type NativeModel, type OptimizerStep, type TrainBatch } from "../native/index.js";
import { freshSeed, Rng } from "./reference/check.js";
import { buildTiny, type Tiny } from "./tiny-model.js";
import { excessOfScale, maxAbs } from "./train-tolerance.js";
import { buildEmulator } from "./cuda-compare.js";

const given = process.env.HYBRIDCHAT_CUDA_LIB || null;
const gxx = spawnSync("g++", ["--version"]).status === 0;
const skip = given || gxx ? false : "g++ absent: cannot build the emulated device";
// |cuda − cpu| ≤ ATOL·scale + RTOL·|cpu|, scale = the largest |cpu| of the tensor: the same
// fp32 math with sums in another order (GEMM tiles, block reductions)
const ATOL = 2e-4, RTOL = 1e-3;

const dir = mkdtempSync(join(tmpdir(), "hc-cuda-train-"));
const lib = given ?? join(dir, "libhybridchat_cuda_emu.so");

before(() => {
  // the library's own fp32 GEMM, not cuBLASLt: these cases hold the device to the CPU's fp32
  // math, and cuBLASLt rounds the activations of bf16 weights (cuda-engine covers that path)
  process.env.HYBRIDCHAT_CUBLASLT_LIB = "none";
  if (given || !gxx) return;
  buildEmulator(lib);
  process.env.HYBRIDCHAT_CUDA_LIB = lib; // read once per process, on the first CUDA call
  process.env.HYBRIDCHAT_EMU_DEVICES = "1";
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** worst excess of |a − b| over the tolerance, plus `slack` (≤ 0: within); b is the CPU's */
const excess = (a: Float32Array, b: Float32Array, slack = 0) => excessOfScale(a, b, ATOL, RTOL, slack);

// lr = 0, beta1 = 0: the weights stay, expAvg = the gradient (native-train.test.ts's probe)
const PROBE: OptimizerStep = { lr: 0, beta1: 0, beta2: 0, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 };
// a real step, clipping active (the global norm is well above 0.05); eps well above the
// rounding noise of a near-zero gradient element, whose m/√v would otherwise turn a sum's
// last-bit difference into a whole ±lr update
const STEP: OptimizerStep = { lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-4, weightDecay: 0.01, maxGradNorm: 0.05 };
// AdamW's first step maps a clipped gradient element g to ≈ lr·g/(|g| + eps), whose slope
// peaks at lr/(4·eps) where |g| ≈ eps: the gradients' allowed difference (ATOL of the
// largest, a few 1e-6 after clipping) can move such an update by ≈ lr·5e-3 (seen: 6e-5 with
// lr 0.02). A stale or unapplied update differs by ≈ lr, 200× more.
const UPDATE_SLACK = STEP.lr * 5e-3;

async function gradients(m: NativeModel): Promise<Map<string, Float32Array>> {
  await m.step(PROBE);
  return new Map(m.optimizerState().tensors.map((t) => [t.name, t.expAvg]));
}

const base: Tiny = { C: 24, I: 40, L: 2, NH: 4, NKV: 2, HD: 6, V: 37, dtype: "f32", bias: false, qkNorm: false, tied: true, ropeScaling: 1 };

interface Pair {
  cpu: NativeModel;
  cuda: NativeModel;
  rng: Rng;
  seed: number;
}
function pair(t: Tiny): Pair {
  const seed = freshSeed();
  const rng = new Rng(seed);
  const b = buildTiny(mkdtempSync(join(dir, "tiny-")), "m", t, rng);
  const opts = { threads: 2, kvBlockSize: 4, kvBlocks: 32 };
  return { cpu: native().createModel(b.spec, b.tensors, { ...opts, device: "cpu" }), cuda: native().createModel(b.spec, b.tensors, { ...opts, device: "cuda" }), rng, seed };
}

function batch(rng: Rng, V: number, counts: number[], adapter: string | null, extra: Partial<TrainBatch> = {}): TrainBatch {
  const T = counts.reduce((a, b) => a + b, 0);
  const targets = Array.from({ length: T }, () => rng.int(V));
  targets[1] = -1; // one masked position
  return { tokens: Int32Array.from({ length: T }, () => rng.int(V)), counts: Int32Array.from(counts), targets: Int32Array.from(targets), adapter, values: false, grad: true, checkpoint: false, ...extra };
}

/** The same forward, backward (dL/dlogp, and dL/dvalue when values) on both; returns what to compare. */
async function forwardBackward(p: Pair, b: TrainBatch): Promise<Float32Array | null> {
  const T = b.tokens.length;
  const dlogp = p.rng.f32(T, -1, 1);
  const dvalues = b.values ? p.rng.f32(T, -1, 1) : null;
  const [rc, rg] = [await p.cpu.trainForward(b), await p.cuda.trainForward(b)];
  const w = excess(rg.logp, rc.logp);
  assert.ok(w <= 0, `logp differs by ${w} (seed ${p.seed})`);
  if (b.values) {
    assert.ok(rc.values && rg.values, "values computed");
    const wv = excess(rg.values, rc.values);
    assert.ok(wv <= 0, `values differ by ${wv} (seed ${p.seed})`);
  }
  await p.cpu.trainBackward(dlogp, dvalues);
  await p.cuda.trainBackward(dlogp, dvalues);
  return rc.values;
}

async function sameGradients(p: Pair): Promise<number> {
  const [gc, gg] = [await gradients(p.cpu), await gradients(p.cuda)];
  assert.deepEqual([...gg.keys()], [...gc.keys()]);
  let nonzero = 0;
  for (const [name, g] of gc) {
    const w = excess(gg.get(name)!, g);
    assert.ok(w <= 0, `gradient of ${name} differs by ${w} (seed ${p.seed})`);
    if (maxAbs(g) > 0) nonzero++;
  }
  return nonzero;
}

function sameParameters(p: Pair, adapter: string | null, names?: string[]): void {
  for (const info of p.cpu.parameters(adapter)) {
    if (names && !names.includes(info.name)) continue;
    const w = excess(p.cuda.readParameter(adapter, info.name), p.cpu.readParameter(adapter, info.name), UPDATE_SLACK);
    assert.ok(w <= 0, `${info.name} after the step differs by ${w} (seed ${p.seed})`);
  }
}

describe("training on an emulated CUDA device", { skip }, () => {
  before(() => assert.ok(native().cudaStatus().devices >= 1, native().cudaStatus().error ?? ""));

  it("LoRA SFT with dropout: log-probs, gradients and the updated A/B as the CPU's", async () => {
    const p = pair({ ...base, qkNorm: true, tied: false });
    try {
      const spec: AdapterSpec = { lora: { rank: 3, alpha: 6, dropout: 0.2, targets: ["q", "k", "v", "o", "gate", "up", "down"], seed: 11 }, valueHead: false };
      for (const m of [p.cpu, p.cuda]) m.addAdapter("a", spec), m.setTrainable({ adapter: "a" });
      // B starts at zero; one real step first, so that every LoRA path carries signal
      const warm = batch(p.rng, base.V, [6, 4], "a");
      await forwardBackward(p, warm);
      for (const m of [p.cpu, p.cuda]) await m.step(STEP);
      await forwardBackward(p, batch(p.rng, base.V, [7, 3], "a"));
      const nonzero = await sameGradients(p);
      assert.ok(nonzero >= 28, `only ${nonzero} LoRA tensors got a gradient`);
      await forwardBackward(p, batch(p.rng, base.V, [5, 5], "a"));
      const [sc, sg] = [await p.cpu.step(STEP), await p.cuda.step(STEP)];
      assert.ok(Math.abs(sg.gradNorm - sc.gradNorm) <= 1e-3 * sc.gradNorm, `grad norm ${sg.gradNorm} vs ${sc.gradNorm}`);
      assert.equal(sg.step, sc.step);
      sameParameters(p, "a");
      // AdamW moments too (read back from the device explicitly)
      const [oc, og] = [p.cpu.optimizerState(), p.cuda.optimizerState()];
      for (let i = 0; i < oc.tensors.length; i++) {
        const w = excess(og.tensors[i].expAvgSq, oc.tensors[i].expAvgSq);
        assert.ok(w <= 0, `exp_avg_sq of ${oc.tensors[i].name} differs by ${w}`);
      }
    } finally {
      p.cpu.dispose(), p.cuda.dispose();
    }
  });

  it("a PPO-shaped step: policy log-probs and value-head values with both gradients, checkpointed", async () => {
    const p = pair({ ...base, dtype: "bf16", bias: true, NH: 4, NKV: 1, HD: 8, C: 20 });
    try {
      const spec: AdapterSpec = { lora: { rank: 2, alpha: 4, dropout: 0, targets: ["q", "v", "up", "down"], seed: 5 }, valueHead: true };
      for (const m of [p.cpu, p.cuda]) m.addAdapter("actor", spec), m.setTrainable({ adapter: "actor" });
      for (const info of p.cpu.parameters("actor"))
        if (!info.name.endsWith("lora_A")) {
          const data = p.rng.f32(info.shape.reduce((a, b) => a * b, 1), -0.3, 0.3);
          for (const m of [p.cpu, p.cuda]) m.writeParameter("actor", info.name, data);
        }
      const values = await forwardBackward(p, batch(p.rng, base.V, [6, 5], "actor", { values: true, checkpoint: true }));
      assert.ok(values && maxAbs(values) > 0, "the value head is random: its values are not all 0");
      assert.ok((await sameGradients(p)) >= 9, "LoRA and value head gradients");
      await forwardBackward(p, batch(p.rng, base.V, [6, 5], "actor", { values: true, checkpoint: true }));
      for (const m of [p.cpu, p.cuda]) await m.step(STEP);
      sameParameters(p, "actor");
      // a no-grad reference forward (the base alone) in between leaves nothing pending
      const ref = batch(p.rng, base.V, [4], null, { grad: false });
      const w = excess((await p.cuda.trainForward(ref)).logp, (await p.cpu.trainForward(ref)).logp);
      assert.ok(w <= 0, `reference log-probs differ by ${w}`);
    } finally {
      p.cpu.dispose(), p.cuda.dispose();
    }
  });

  it("full-parameter step on a tiny random model: every base tensor's gradient and update", async () => {
    const p = pair({ ...base, bias: true, oBias: true, mlpBias: true, windows: [3, 0] });
    try {
      for (const m of [p.cpu, p.cuda]) m.setTrainable({ base: true });
      await forwardBackward(p, batch(p.rng, base.V, [5, 4], null));
      const nonzero = await sameGradients(p);
      assert.ok(nonzero >= 30, `only ${nonzero} base tensors got a gradient`);
      await forwardBackward(p, batch(p.rng, base.V, [5, 4], null));
      for (const m of [p.cpu, p.cuda]) await m.step(STEP);
      sameParameters(p, null);
      // and the served model is the trained one
      const fwd = { seqIds: Int32Array.from([1]), tokens: Int32Array.from([3, 1, 4, 1, 5]), counts: Int32Array.from([5]), logits: "all" as const };
      const wf = excess(await p.cuda.forward(fwd), await p.cpu.forward(fwd));
      assert.ok(wf <= 0, `served logits after the step differ by ${wf}`);
    } finally {
      p.cpu.dispose(), p.cuda.dispose();
    }
  });

  it("the hybrid switch: serving forwards between training steps move no weight bytes", async () => {
    const p = pair(base);
    try {
      const spec: AdapterSpec = { lora: { rank: 2, alpha: 4, dropout: 0, targets: ["q", "v", "down"], seed: 9 }, valueHead: true };
      for (const m of [p.cpu, p.cuda]) m.addAdapter("a", spec), m.setTrainable({ adapter: "a" });
      let seq = 1;
      const serve = async (m: NativeModel, id: number) => {
        const r = await m.forward({ seqIds: Int32Array.from([id]), tokens: Int32Array.from([2, 7, 1, 8]), counts: Int32Array.from([4]), logits: "last", adapters: ["a"] });
        m.freeSeq(id);
        return r;
      };
      const trainStep = async () => {
        await forwardBackward(p, batch(p.rng, base.V, [5, 3], "a", { values: true }));
        for (const m of [p.cpu, p.cuda]) await m.step(STEP);
      };
      await serve(p.cuda, seq++); // everything the switch touches is resident from here on
      const moved0 = p.cuda.weightBytesMoved();
      for (let round = 0; round < 3; round++) {
        await trainStep();
        const id = seq++;
        const w = excess(await serve(p.cuda, id), await serve(p.cpu, id));
        assert.ok(w <= 0, `round ${round}: served logits differ by ${w} (the device serves the trained A/B)`);
      }
      const moved = p.cuda.weightBytesMoved() - moved0;
      console.log(`# hybrid switch: ${moved} weight bytes moved over 3 train ⇄ serve rounds`);
      assert.equal(moved, 0, "weights moved between host and device");
      // reading the trained tensors back is an explicit download, and counted
      sameParameters(p, "a", ["L0.q.lora_B"]);
      assert.ok(p.cuda.weightBytesMoved() > moved0);
      assert.equal(p.cpu.weightBytesMoved(), 0);
    } finally {
      p.cpu.dispose(), p.cuda.dispose();
    }
  });
});
