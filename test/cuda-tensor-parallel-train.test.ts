// Tensor-parallel training on two CUDA devices, checked without a GPU: the host emulator's
// library with two emulated devices and the stand-in libnccl.so.2 (native/tools/cuda-emu).
// A model created with device "cuda" and tensorParallel 2 trains with rank r on device r
// (native/src/rank_train.cc: its tape, its shards of the base, its mirror of the LoRA tensors
// and their gradients on its device; the step: gradients all-reduced over NCCL, device 0's
// optimizer, the tensors broadcast back). Held against TP=1 on a device and TP=2 on the CPU:
// a LoRA SFT step with dropout (log-probs, every gradient, the updated A/B), a PPO-shaped step
// with a value head (checkpointed, a no-grad reference forward between); after training,
// TP=2 serving of the trained adapter equals TP=1's greedy token for token with no weight
// byte moved between steps and serving; a rank failing in the step's reductions leaves every
// parameter bit-identical and the redone step equals the group that never failed; full-
// parameter training is refused by name; `train sft --device cuda --tensor-parallel 2` runs.
// With HYBRIDCHAT_CUDA_LIB already set (npm run gpu-check on a GPU machine) the same checks
// run on that library's devices 0 and 1, or are skipped, saying why, with fewer.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { native, type AdapterSpec, type NativeModel, type OptimizerStep, type TrainBatch } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { readF32Tensors } from "../engine/safetensors-writer.js";
import { TRAIN_LOG } from "../engine/train/sft/sft-run.js";
import { freshSeed, Rng } from "./reference/check.js";
import { buildTiny, type Tiny } from "./tiny-model.js";
import { excessOfScale, maxAbs } from "./train-tolerance.js";
import { CLI } from "./serve-process.js";
import { storiesDir } from "./test-model.js";
import { argmaxRows, emulatedDevices, excess as logitExcess, greedyBoth } from "./cuda-compare.js";

const { dir, given } = emulatedDevices(2, "hc-cuda-tp-train-", true);
const skip = given && native().cudaStatus().devices < 2 ? `${native().cudaStatus().devices} CUDA device(s) at ${given}: tensor parallelism needs 2` : false;
before(() => {
  // the library's own fp32 GEMM, not cuBLASLt: the device is held to the CPU's fp32 math
  // (cuBLASLt rounds bf16 weights' activations; cuda-engine covers that path)
  process.env.HYBRIDCHAT_CUBLASLT_LIB = "none";
});

// |got − ref| ≤ ATOL·scale + RTOL·|ref| (+ slack), scale = the largest |ref| of the tensor: the
// same fp32 math with sums in another order (as cuda-train.test.ts)
const ATOL = 2e-4, RTOL = 1e-3;
const excess = (a: Float32Array, b: Float32Array, slack = 0) => excessOfScale(a, b, ATOL, RTOL, slack);
// lr = 0, beta1 = 0: the weights stay and expAvg is the gradient
const PROBE: OptimizerStep = { lr: 0, beta1: 0, beta2: 0, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 };
// a real step with clipping active; eps above the rounding noise of near-zero gradients
const STEP: OptimizerStep = { lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-4, weightDecay: 0.01, maxGradNorm: 0.05 };
// AdamW's update is steepest (lr/(4·eps)) where |g| ≈ eps: the gradients' allowed difference
// moves it by ≈ lr·5e-3 at most; a missing or stale update differs by ≈ lr
const UPDATE_SLACK = STEP.lr * 5e-3;

// a GQA model with q/k norms and biases: every split (q/k/v/gate/up by rows, o/down by columns)
const tiny: Tiny = { C: 24, I: 40, L: 2, NH: 4, NKV: 2, HD: 6, V: 37, dtype: "f32", bias: true, oBias: true, qkNorm: true, tied: false, ropeScaling: 1 };

interface Trio {
  models: { cpu2: NativeModel; dev1: NativeModel; dev2: NativeModel };
  rng: Rng;
  seed: number;
}
function trio(): Trio {
  const seed = freshSeed();
  const rng = new Rng(seed);
  const b = buildTiny(mkdtempSync(join(dir, "tiny-")), "m", tiny, rng);
  const open = (device: "cpu" | "cuda", tensorParallel: number) => native().createModel(b.spec, b.tensors, { threads: 2, kvBlockSize: 4, kvBlocks: 32, device, tensorParallel });
  return { models: { cpu2: open("cpu", 2), dev1: open("cuda", 1), dev2: open("cuda", 2) }, rng, seed };
}
const all = (t: Trio) => Object.values(t.models);
const dispose = (t: Trio) => all(t).forEach((m) => m.dispose());

/** the same adapter on every model, its B (and value head) random so every path carries signal */
function addAdapter(t: Trio, name: string, spec: AdapterSpec): void {
  for (const m of all(t)) m.addAdapter(name, spec);
  for (const p of t.models.cpu2.parameters(name))
    if (!p.name.endsWith("lora_A")) {
      const data = t.rng.f32(p.shape.reduce((a, b) => a * b, 1), -0.3, 0.3);
      for (const m of all(t)) m.writeParameter(name, p.name, data);
    }
  for (const m of all(t)) m.setTrainable({ adapter: name });
}

function batch(rng: Rng, counts: number[], adapter: string | null, extra: Partial<TrainBatch> = {}): TrainBatch {
  const T = counts.reduce((a, b) => a + b, 0);
  const targets = Array.from({ length: T }, () => rng.int(tiny.V));
  targets[1] = -1;
  return { tokens: Int32Array.from({ length: T }, () => rng.int(tiny.V)), counts: Int32Array.from(counts), targets: Int32Array.from(targets), adapter, values: false, grad: true, checkpoint: false, ...extra };
}

/** One forward and backward on every model; log-probs (the SFT loss within 1e-5) and values compared with the CPU's TP=2. */
async function forwardBackward(t: Trio, b: TrainBatch): Promise<void> {
  const T = b.tokens.length;
  const dlogp = t.rng.f32(T, -1, 1);
  const dvalues = b.values ? t.rng.f32(T, -1, 1) : null;
  const ref = await t.models.cpu2.trainForward(b);
  const loss = (lp: Float32Array) => -lp.reduce((s, x, i) => s + (b.targets[i]! >= 0 ? x : 0), 0) / T;
  for (const [name, m] of Object.entries(t.models)) {
    const r = name === "cpu2" ? ref : await m.trainForward(b);
    const w = excess(r.logp, ref.logp);
    assert.ok(w <= 0, `${name}: log-probs differ by ${w} (seed ${t.seed})`);
    assert.ok(Math.abs(loss(r.logp) - loss(ref.logp)) <= 1e-5 * Math.max(1, Math.abs(loss(ref.logp))), `${name}: loss ${loss(r.logp)} vs ${loss(ref.logp)} (seed ${t.seed})`);
    if (b.values) {
      const wv = excess(r.values!, ref.values!);
      assert.ok(wv <= 0, `${name}: values differ by ${wv} (seed ${t.seed})`);
    }
    await m.trainBackward(dlogp, dvalues);
  }
}

/** Every model's gradients (through the probe step) against the CPU's TP=2; returns how many are nonzero. */
async function sameGradients(t: Trio): Promise<number> {
  const grads = new Map<string, Map<string, Float32Array>>();
  for (const [name, m] of Object.entries(t.models)) {
    await m.step(PROBE);
    grads.set(name, new Map(m.optimizerState().tensors.map((x) => [x.name, x.expAvg])));
  }
  const ref = grads.get("cpu2")!;
  let nonzero = 0;
  for (const [name, g] of grads) {
    assert.deepEqual([...g.keys()], [...ref.keys()]);
    for (const [tensor, want] of ref) {
      const w = excess(g.get(tensor)!, want);
      assert.ok(w <= 0, `${name}: gradient of ${tensor} differs by ${w} (seed ${t.seed})`);
    }
  }
  for (const g of ref.values()) if (maxAbs(g) > 0) nonzero++;
  return nonzero;
}

function sameParameters(t: Trio, adapter: string): void {
  for (const info of t.models.cpu2.parameters(adapter)) {
    const want = t.models.cpu2.readParameter(adapter, info.name);
    for (const [name, m] of Object.entries(t.models)) {
      const w = excess(m.readParameter(adapter, info.name), want, UPDATE_SLACK);
      assert.ok(w <= 0, `${name}: ${info.name} after the step differs by ${w} (seed ${t.seed})`);
    }
  }
}

async function step(t: Trio): Promise<void> {
  const ref = await t.models.cpu2.step(STEP);
  for (const m of [t.models.dev1, t.models.dev2]) {
    const s = await m.step(STEP);
    assert.ok(Math.abs(s.gradNorm - ref.gradNorm) <= 1e-3 * ref.gradNorm, `grad norm ${s.gradNorm} vs ${ref.gradNorm} (seed ${t.seed})`);
    assert.equal(s.step, ref.step);
  }
}

describe("tensor-parallel training on two emulated CUDA devices", { skip }, () => {
  before(() => assert.ok(native().cudaStatus().devices >= 2, native().cudaStatus().error ?? ""));

  it("LoRA SFT with dropout: TP=2 on devices equals TP=1 on a device and TP=2 on the CPU (log-probs, gradients, updated A/B)", async () => {
    const t = trio();
    try {
      addAdapter(t, "a", { lora: { rank: 3, alpha: 6, dropout: 0.2, targets: ["q", "k", "v", "o", "gate", "up", "down"], seed: 11 }, valueHead: false });
      await forwardBackward(t, batch(t.rng, [7, 4], "a"));
      assert.ok((await sameGradients(t)) >= 28, "every LoRA tensor got a gradient");
      await forwardBackward(t, batch(t.rng, [5, 6], "a"));
      await step(t);
      sameParameters(t, "a");
    } finally {
      dispose(t);
    }
  });

  it("a PPO-shaped step: log-probs and value-head values with both gradients, checkpointed, a no-grad reference forward between", async () => {
    const t = trio();
    try {
      addAdapter(t, "actor", { lora: { rank: 2, alpha: 4, dropout: 0, targets: ["q", "v", "o", "up", "down"], seed: 5 }, valueHead: true });
      await forwardBackward(t, batch(t.rng, [6, 5], "actor", { values: true, checkpoint: true }));
      // the reference model (the base alone), as PPO asks between its forward and backward passes
      const ref = batch(t.rng, [4, 3], null, { grad: false });
      const want = (await t.models.cpu2.trainForward(ref)).logp;
      for (const m of [t.models.dev1, t.models.dev2]) assert.ok(excess((await m.trainForward(ref)).logp, want) <= 0, "reference log-probs");
      assert.ok((await sameGradients(t)) >= 11, "LoRA and value head gradients");
      await forwardBackward(t, batch(t.rng, [6, 5], "actor", { values: true, checkpoint: true }));
      await step(t);
      sameParameters(t, "actor");
    } finally {
      dispose(t);
    }
  });

  it("a rank failing in the step's reductions leaves every parameter bit-identical; the redone step equals TP=1's", { timeout: 120_000 }, async () => {
    const t = trio();
    try {
      addAdapter(t, "a", { lora: { rank: 2, alpha: 4, dropout: 0, targets: ["q", "k", "o", "gate", "down"], seed: 3 }, valueHead: true });
      const dev2 = t.models.dev2;
      const before = new Map(dev2.parameters("a").map((p) => [p.name, dev2.readParameter("a", p.name)]));
      const b = batch(t.rng, [6, 4], "a", { values: true });
      await forwardBackward(t, b);
      process.env.HYBRIDCHAT_TEST_FAIL_STEP_RANK = "1"; // read by TensorParallel::step
      try {
        // rank 0 waits in the NCCL all-reduce rank 1 never joins: only the abort releases it
        await assert.rejects(dev2.step(STEP), (e: Error & { code?: string }) => e.code === "injected_failure" && /rank 1/.test(e.message));
      } finally {
        delete process.env.HYBRIDCHAT_TEST_FAIL_STEP_RANK;
      }
      for (const [name, w] of before) assert.deepEqual(dev2.readParameter("a", name), w, `${name} changed by the failed step`);
      assert.equal(dev2.optimizerState().step, 0);
      // the failed step's gradients were dropped on both devices: the batch redone trains as the others did
      const dlogp = t.rng.f32(10, -1, 1), dv = t.rng.f32(10, -1, 1);
      await dev2.trainForward(b);
      await dev2.trainBackward(dlogp, dv);
      for (const m of [t.models.cpu2, t.models.dev1]) {
        m.zeroGrad();
        await m.trainForward(b);
        await m.trainBackward(dlogp, dv);
      }
      await step(t);
      sameParameters(t, "a");
    } finally {
      dispose(t);
    }
  });

  it("full-parameter training at TP=2 on devices is refused by name", () => {
    const t = trio();
    try {
      assert.throws(() => t.models.dev2.setTrainable({ base: true }), (e: Error & { code?: string }) => e.code === "unsupported" && /full-parameter training with --tensor-parallel > 1 on CUDA devices/.test(e.message));
    } finally {
      dispose(t);
    }
  });
});

describe("stories260K: train on two devices, serve the result", { skip }, () => {
  let cpu: LoadedModel, tp: LoadedModel;
  before(async () => {
    cpu = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 64, device: "cpu" });
    tp = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 64, device: "cuda", tensorParallel: 2, kvDtype: "f32" });
  });
  after(() => {
    cpu?.dispose();
    tp?.dispose();
  });

  it("LoRA SFT steps between serving steps move no weight bytes; TP=2 then serves the trained adapter greedy as TP=1 does, during training and after", async () => {
    const seed = freshSeed();
    const rng = new Rng(seed);
    const spec: AdapterSpec = { lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ["q", "k", "v", "o", "gate", "up", "down"], seed: 7 }, valueHead: false };
    tp.native.addAdapter("s", spec);
    cpu.native.addAdapter("s", spec);
    const text = cpu.tokenizer.encode("Once upon a time, there was a little girl named Lily. She loved to play", true);
    const b: TrainBatch = { tokens: Int32Array.from(text), counts: Int32Array.from([text.length]), targets: Int32Array.from([...text.slice(1), -1]), adapter: "s", values: false, grad: true, checkpoint: false };
    const prompts = [cpu.tokenizer.encode("Once upon a time", true), cpu.tokenizer.encode("The dog", true)];
    const sync = () => {
      for (const p of tp.native.parameters("s")) cpu.native.writeParameter("s", p.name, tp.native.readParameter("s", p.name));
    };
    const serveEqual = async (label: string) => {
      const r = await greedyBoth(cpu.native, tp.native, prompts, 6, cpu.config.vocabSize, ["s", "s"]);
      assert.deepEqual(r.cuda, r.cpu, `${label} (seed ${seed})`);
      assert.ok(r.worst <= 0, `${label}: logits differ by ${r.worst} (seed ${seed})`);
      return r.cpu;
    };
    // greedy tokens of one model alone (the CPU's, with or without the adapter)
    const greedyAlone = async (adapters?: string[]) => {
      const ids = Int32Array.from(prompts.map((_, i) => 50 + i));
      const out = prompts.map(() => [] as number[]);
      let next = prompts;
      for (let s = 0; s <= 6; s++) {
        const l = await cpu.native.forward({ seqIds: ids, tokens: Int32Array.from(next.flat()), counts: Int32Array.from(next.map((p) => p.length)), logits: "last", adapters });
        next = argmaxRows(l, cpu.config.vocabSize).map((t, i) => (out[i]!.push(t), [t]));
      }
      for (const id of ids) cpu.native.freeSeq(id);
      return out;
    };
    try {
      tp.native.setTrainable({ adapter: "s" });
      const train = async () => {
        await tp.native.trainForward(b);
        await tp.native.trainBackward(rng.f32(text.length, -1, 0), null);
        await tp.native.step({ ...STEP, lr: 0.05, maxGradNorm: 1 });
      };
      await train(); // B moves off zero: the adapter now changes the answers
      await greedyBoth(cpu.native, tp.native, prompts, 1, cpu.config.vocabSize, ["s", "s"]); // everything serving reads is resident from here on
      const moved0 = tp.native.weightBytesMoved();
      for (let round = 0; round < 2; round++) {
        await train();
        const id = 100 + round; // a serving step on the adapter being trained
        const logits = await tp.native.forward({ seqIds: Int32Array.from([id]), tokens: Int32Array.from(prompts[0]!), counts: Int32Array.from([prompts[0]!.length]), logits: "last", adapters: ["s"] });
        tp.native.freeSeq(id);
        assert.ok(logits.every(Number.isFinite));
      }
      const moved = tp.native.weightBytesMoved() - moved0;
      console.log(`# hybrid switch at TP=2: ${moved} weight bytes moved over 2 train ⇄ serve rounds`);
      assert.equal(moved, 0, "weights moved between host and devices");
      sync(); // an explicit download of the trained tensors (counted), into the CPU model
      const adapted = await serveEqual("while trainable");
      assert.deepEqual(await greedyAlone(["s", "s"]), adapted);
      assert.notDeepEqual(adapted, await greedyAlone(), `the trained adapter changed no token (seed ${seed}): this would test nothing`);
      tp.native.setTrainable(null);
      await serveEqual("after setTrainable(null)");
    } finally {
      tp.native.setTrainable(null);
      for (const m of [cpu, tp]) m.native.removeAdapter("s");
    }
  });

  it("hybridchat train sft --device cuda --tensor-parallel 2: the losses and adapter of --device cpu --tensor-parallel 2", async () => {
    const data = join(dir, "sft.jsonl");
    const lines = ["Once upon a time there was a cat.", "The dog ran to the park.", "Lily liked to play with her ball.", "Tom saw a big red bird."];
    writeFileSync(data, lines.map((l) => JSON.stringify({ prompt: l.slice(0, 12), completion: l.slice(12) })).join("\n") + "\n");
    const outs: Record<string, string> = { cpu: join(dir, "sft-cpu"), cuda: join(dir, "sft-cuda") };
    for (const [device, out] of Object.entries(outs)) {
      const r = spawnSync(process.execPath, [CLI, "train", "sft", "--model", storiesDir, "--data", data, "--out", out, "--epochs", "1", "--batch-size", "2", "--lora-rank", "4", "--lr", "1e-4", "--threads", "2", "--tensor-parallel", "2", "--device", device], { encoding: "utf8", env: { ...process.env } });
      assert.equal(r.status, 0, r.stderr);
      if (device === "cuda") assert.match(r.stderr, /--device cuda: the model on CUDA devices 0-1 \(.*2 tensor-parallel ranks\)/);
    }
    const losses = Object.values(outs).map((o) => readFileSync(join(o, TRAIN_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string; loss?: number }).filter((l) => l.type === "step").map((l) => l.loss!));
    assert.equal(losses[0]!.length, 2);
    for (const [i, l] of losses[1]!.entries()) assert.ok(Math.abs(l - losses[0]![i]!) <= 1e-5 * Math.max(1, Math.abs(losses[0]![i]!)), `step ${i} loss ${l} vs ${losses[0]![i]}`);
    const [a, c] = Object.values(outs).map((o) => readF32Tensors(join(o, "adapter_model.safetensors")).tensors);
    assert.deepEqual([...c!.keys()], [...a!.keys()]);
    for (const [name, x] of c!) {
      const w = logitExcess(x.data, a!.get(name)!.data, 1e-5, 1e-4);
      assert.ok(w <= 0, `${name} differs by ${w}`);
    }
  });
});
