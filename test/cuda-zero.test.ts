// ZeRO over data-parallel ranks on two emulated CUDA devices: rank r is a model on device r,
// its gradients, the reduce-scatter / all-reduce / all-gather (NCCL: the emulator's stand-in
// libnccl.so.2, through the same dlopen code as on GPUs), the AdamW shard update and the
// stage-3 fp32 master shards all in device memory. The same ZeroRank code path as the CPU's
// (native/src/train/zero.cc over exec_train.h), so: DP=2 reaches DP=1's weights on a device,
// and the CPU's DP=2 with the same stage; a rank that fails mid-step leaves the params as
// they were; and `train sft --device cuda --data-parallel 2` runs. On a micro random
// checkpoint (hybridchat init, 1 layer, 2 heads): the emulator runs a block's threads as
// fibers, and stories260K's 5 layers of 8 heads take ~18 s a step there.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { native, type ZeroStage } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { DataParallelModel } from "../engine/train/loop/data-parallel.js";
import { freshSeed, Rng } from "./reference/check.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { emulatedDevices, emulatorSkip } from "./cuda-compare.js";
import { repoRoot } from "./test-model.js";
import { assertSameParams, params, randomBatch, setTrainable, trainStep } from "./zero-helpers.js";

// with HYBRIDCHAT_CUDA_LIB set (npm run gpu-check on a GPU machine) its devices, if two
const emu = emulatedDevices(2, "hc-cuda-zero-", true);
const skip = emu.given ? (native().cudaStatus().devices < 2 ? "fewer than two CUDA devices" : false) : emulatorSkip;
const modelDir = join(emu.dir, "micro");
before(async () => {
  if (skip) return;
  const config = { ...preset("tiny"), hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
  await initCheckpoint({ config, out: modelDir, seed: 3, std: 0.2 });
  // the library's own fp32 GEMM, not the stand-in cuBLASLt: the device is held to the CPU's
  // fp32 math (as cuda-train.test.ts does), so only summation order separates them
  process.env.HYBRIDCHAT_CUBLASLT_LIB = "none";
});

const STEPS = 3;
// device vs CPU, and DP=2 vs DP=1: the same fp32 arithmetic with sums in another order
// (GEMM tiles, block reductions, the gradient sum over ranks); after 3 AdamW steps with
// eps 1e-4 that moves a parameter by a few 1e-6 (zero.test.ts holds the CPU's DP to the same)
const ATOL = 2e-5, RTOL = 1e-3;

describe("ZeRO data parallelism on two emulated CUDA devices", { skip }, () => {
  const models: LoadedModel[] = [];
  async function load(device: "cpu" | "cuda", deviceIndex = 0): Promise<LoadedModel> {
    const m = await loadModel(modelDir, { threads: 1, kvBlocks: 4, device, deviceIndex });
    models.push(m);
    setTrainable(m.native, "lora");
    return m;
  }
  after(() => {
    for (const m of models) m.dispose();
  });

  for (const stage of [2, 1, 3] as ZeroStage[])
    it(`LoRA, ZeRO-${stage} at DP=2 (devices 0 and 1) equals DP=1 on a device${stage === 2 ? " and the CPU's ZeRO-2" : ""}`, async () => {
      const seed = freshSeed();
      const one = await load("cuda", 0);
      const ranks = [await load("cuda", 0), await load("cuda", 1)];
      const dp = new DataParallelModel(ranks.map((r) => r.native), stage);
      const cpu = stage === 2 ? new DataParallelModel([(await load("cpu")).native, (await load("cpu")).native], stage) : null;
      const rng = new Rng(seed);
      const V = one.config.vocabSize;
      for (let k = 0; k < STEPS; k++) {
        const batches = [randomBatch(rng, V, "a"), randomBatch(rng, V, "a")];
        const s1 = await trainStep(one.native, batches);
        const s2 = await trainStep(dp, batches);
        const what = `seed ${seed} step ${k}`;
        assert.ok(Math.abs(s1.loss - s2.loss) <= 1e-5 * s1.loss, `${what}: loss ${s2.loss} at DP=2 vs ${s1.loss}`);
        assert.ok(Math.abs(s1.gradNorm - s2.gradNorm) <= 1e-4 * s1.gradNorm, `${what}: grad norm ${s2.gradNorm} vs ${s1.gradNorm}`);
        if (cpu) {
          const sc = await trainStep(cpu, batches);
          assert.ok(Math.abs(sc.loss - s2.loss) <= 1e-5 * sc.loss, `${what}: loss ${s2.loss} on devices vs ${sc.loss} on the CPU`);
          assert.ok(Math.abs(sc.gradNorm - s2.gradNorm) <= 1e-3 * sc.gradNorm, `${what}: grad norm ${s2.gradNorm} vs the CPU's ${sc.gradNorm}`);
        }
      }
      if (stage === 3) {
        // between steps the whole tensors hold nothing usable (TrainOps::discard) until gathered
        const released = params(ranks[1].native, "lora");
        assert.ok([...released.values()].every((p) => p.every((x) => Number.isNaN(x))), "a released ZeRO-3 tensor is NaN-filled");
      }
      const want = params(one.native, "lora");
      const whole = 4 * [...want.values()].reduce((a, p) => a + p.length, 0);
      await dp.withWholeParameters(() => {
        for (const [r, m] of ranks.entries()) assertSameParams(params(m.native, "lora"), want, `seed ${seed} device rank ${r}`, ATOL, RTOL);
      });
      if (cpu) await cpu.withWholeParameters(() => assertSameParams(params(dp.ranks[0], "lora"), params(cpu.ranks[0], "lora"), `seed ${seed} devices vs CPU`, ATOL, RTOL));
      // the partitions, counted as on the CPU; a device keeps a released stage-3 whole tensor
      // allocated (the resident copy the forward reads), so it counts it
      const mem = dp.group.trainingMemory();
      assert.equal(mem.reduce((a, m) => a + m.optimizer, 0), 2 * whole, "the moment shards cover every element once");
      for (const [r, m] of mem.entries()) {
        const what = `rank ${r}: ${JSON.stringify(m)}`;
        assert.ok(m.optimizer < 2 * whole, what);
        assert.equal(m.grads, stage >= 2 ? m.optimizer / 2 : whole, what);
        assert.equal(m.params, stage === 3 ? whole + m.optimizer / 2 : whole, what);
      }
    });

  it("ZeRO-2: a rank that fails halfway through its reductions leaves every rank's params as they were, and the batch redone matches DP=1", async () => {
    const one = await load("cuda", 0);
    const ranks = [await load("cuda", 0), await load("cuda", 1)];
    const dp = new DataParallelModel(ranks.map((r) => r.native), 2);
    const rng = new Rng(31);
    const V = one.config.vocabSize;
    let batches = [randomBatch(rng, V, "a"), randomBatch(rng, V, "a")];
    await trainStep(one.native, batches);
    await trainStep(dp, batches);
    const before = ranks.map((r) => params(r.native, "lora"));
    batches = [randomBatch(rng, V, "a"), randomBatch(rng, V, "a")];
    process.env.HYBRIDCHAT_TEST_FAIL_STEP_RANK = "1";
    try {
      await assert.rejects(trainStep(dp, batches), (e: unknown) => (e as { code?: string }).code === "injected_failure");
    } finally {
      delete process.env.HYBRIDCHAT_TEST_FAIL_STEP_RANK;
    }
    for (const [r, m] of ranks.entries()) assert.deepEqual(params(m.native, "lora"), before[r], `rank ${r} changed by a failed step`);
    await trainStep(one.native, batches);
    await trainStep(dp, batches);
    const want = params(one.native, "lora");
    for (const [r, m] of ranks.entries()) assertSameParams(params(m.native, "lora"), want, `rank ${r} after the redone step`, ATOL, RTOL);
  });

  it("refuses ranks that are not on devices 0..N-1 in order, and a mix of CPU and device ranks", async () => {
    const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;
    const [a, b] = [await load("cuda", 1), await load("cuda", 0)];
    assert.throws(() => new DataParallelModel([a.native, b.native], 2), code("invalid_argument"));
    const c = await load("cpu");
    assert.throws(() => new DataParallelModel([b.native, c.native], 2), code("invalid_argument"));
  });

  it("hybridchat train sft --device cuda --data-parallel 2 --zero-stage 2 runs", async () => {
    const data = join(emu.dir, "sft.jsonl");
    const lines = Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `Once upon a time ${i}`, completion: ` there was a cat number ${i}.` }));
    writeFileSync(data, lines.join("\n") + "\n");
    const out = join(emu.dir, "cli");
    const CLI = join(repoRoot, "dist", "cli", "main.js");
    const r = spawnSync(
      process.execPath,
      [CLI, "train", "sft", "--model", modelDir, "--data", data, "--out", out, "--epochs", "1", "--batch-size", "4", "--lora-rank", "4",
        "--device", "cuda", "--data-parallel", "2", "--zero-stage", "2", "--threads", "1"],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(out, "adapter_model.safetensors")), r.stderr);
    rmSync(out, { recursive: true, force: true });
  });
});
