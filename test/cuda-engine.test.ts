// The serving forward on a CUDA device, checked without a GPU: the .cu sources built for
// the host emulator (native/tools/cuda-emu, g++ -O1) are loaded through
// HYBRIDCHAT_CUDA_LIB with HYBRIDCHAT_EMU_DEVICES=1, and a model created with
// device "cuda" runs its whole forward through the library's device-pointer ops
// (weights, paged KV pool and activations in "device" memory) — the same code path
// (native/src/model.cc through exec.h) as the CPU model it is compared with:
// stories260K greedy token for token over a batch of 3 with prompts spanning several KV
// blocks, with and without a LoRA adapter (merged too); random tiny GQA models (bf16/f16,
// biases, q/k norms, sliding windows) logit for logit; serve --device cuda's /health and
// /metrics; and --device cuda refused at start-up when no device is present. The GEMMs go
// through cuBLASLt (the emulator's stand-in, built beside the library by build.sh): fp32
// weights in fp32 (the 1e-4 above), bf16/f16 weights with the activations rounded to the
// weight's type (tensor-core inputs), held to a few units of that rounding (cuda-compare.ts deviceDiff).
// With HYBRIDCHAT_CUDA_LIB already set (npm run gpu-check sets it to the nvcc build on a
// GPU machine), the same checks run on that library's device 0 instead of the emulator.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native, type NativeModel } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { resolveDevice } from "../engine/device.js";
import { freshSeed, Rng } from "./reference/check.js";
import { buildTiny, type Tiny } from "./tiny-model.js";
import { argmaxRows, ATOL, buildEmulator, deviceDiff, excess, greedyBoth, prefillDecodeWithin, RTOL } from "./cuda-compare.js";
import { repoRoot, storiesDir } from "./test-model.js";

const given = process.env.HYBRIDCHAT_CUDA_LIB || null;
const gxx = spawnSync("g++", ["--version"]).status === 0;
const skip = given || gxx ? false : "g++ absent: cannot build the emulated device";

const dir = mkdtempSync(join(tmpdir(), "hc-cuda-engine-"));
const lib = given ?? join(dir, "libhybridchat_cuda_emu.so");
let built = !!given;
// the device's name as the library reports it ("host emulation" under the emulator)
const deviceName = () => native().cudaStatus().deviceName;

before(() => {
  if (given || !gxx) return;
  buildEmulator(lib);
  // read once per process, on the first CUDA call (none has happened yet in this file)
  process.env.HYBRIDCHAT_CUDA_LIB = lib;
  process.env.HYBRIDCHAT_EMU_DEVICES = "1";
  built = true;
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("the serving forward on an emulated CUDA device", { skip }, () => {
  let cpu: LoadedModel, cuda: LoadedModel;
  before(async () => {
    assert.ok(built);
    assert.ok(native().cudaStatus().devices >= 1, native().cudaStatus().error ?? "");
    if (!given) assert.equal(native().cudaStatus().devices, 1, "HYBRIDCHAT_EMU_DEVICES=1");
    // 4-token KV blocks: the 23-token prompt spans 6 of them, the batch holds 3 sequences
    cpu = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 64, device: "cpu" });
    // an f32 KV pool: the 1e-4 comparisons (bf16's: cuda-kv.test.ts)
    cuda = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 64, device: "cuda", kvDtype: "f32" });
  });
  after(() => {
    cpu?.dispose();
    cuda?.dispose();
  });

  it("says where it runs", () => {
    assert.deepEqual(cpu.native.device(), { kind: "cpu", name: "cpu", devices: 0, repackedBytes: 0, kvDtype: "f32" });
    assert.deepEqual(cuda.native.device(), { kind: "cuda", name: given ? deviceName() : "host emulation", devices: 1, gemm: native().cudaStatus().gemm, kvDtype: "f32" });
    // the emulated device's GEMMs go through the stand-in cuBLASLt beside the library
    if (!given) assert.deepEqual({ gemm: native().cudaStatus().gemm, path: native().cudaStatus().cublasLt.path }, { gemm: "cublaslt", path: join(dir, "libcublasLt.so.12") });
    // --device auto takes the device that is present
    assert.equal(resolveDevice("auto"), "cuda");
    // --kv-cache-memory FRACTION sizes the pool from the device's memory
    const mem = native().cudaMemory(0);
    assert.ok(mem.totalBytes > 0 && mem.freeBytes > 0 && mem.freeBytes <= mem.totalBytes, JSON.stringify(mem));
  });

  it("stories260K: greedy tokens equal to the CPU's at TP=1, batch 3, prompts over several KV blocks", async () => {
    const enc = (t: string) => cpu.tokenizer.encode(t, true);
    const prompts = [enc("Once upon a time, there was a little girl named Lily who loved to play in the park with her dog"), enc("The cat"), enc("One day, Tom went to the store")];
    assert.ok(prompts[0].length > 16, `the long prompt spans several 4-token blocks (${prompts[0].length} tokens)`);
    const r = await greedyBoth(cpu.native, cuda.native, prompts, 12, cpu.config.vocabSize);
    assert.deepEqual(r.cuda, r.cpu);
    assert.ok(r.worst <= 0, `logits differ beyond ${ATOL} + ${RTOL}·|x| by ${r.worst}`);
    // the pool's blocks were given back on both sides
    assert.equal(cuda.native.kvStats().freeBlocks, cuda.native.kvStats().totalBlocks);
  });

  it("a LoRA adapter per sequence, then merged: the device follows the host's rewritten weights", async () => {
    const seed = freshSeed();
    const rng = new Rng(seed);
    for (const m of [cpu, cuda]) m.native.addAdapter("a", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v", "o", "down"], seed: 7 }, valueHead: false });
    for (const p of cpu.native.parameters("a")) {
      const data = Float32Array.from({ length: p.shape.reduce((x, y) => x * y, 1) }, () => (rng.next() - 0.5) * 0.2);
      for (const m of [cpu, cuda]) m.native.writeParameter("a", p.name, data);
    }
    const enc = (t: string) => cpu.tokenizer.encode(t, true);
    const prompts = [enc("Once upon a time, there was a big red ball"), enc("The dog ran")];
    const mixed = await greedyBoth(cpu.native, cuda.native, prompts, 6, cpu.config.vocabSize, ["a", null]);
    assert.deepEqual(mixed.cuda, mixed.cpu, `seed ${seed}`);
    assert.ok(mixed.worst <= 0, `adapter rows: logits differ by ${mixed.worst} (seed ${seed})`);
    for (const m of [cpu, cuda]) m.native.mergeAdapter("a");
    const merged = await greedyBoth(cpu.native, cuda.native, prompts, 6, cpu.config.vocabSize, ["a", null]);
    assert.deepEqual(merged.cuda, merged.cpu, `seed ${seed}`);
    assert.ok(merged.worst <= 0, `merged: logits differ by ${merged.worst} (seed ${seed})`);
    // the adapter changes what the model computes (else this would test nothing)
    const one = (a: string | null, id: number) => cpu.native.forward({ seqIds: Int32Array.from([id]), tokens: Int32Array.from(prompts[1]), counts: Int32Array.from([prompts[1].length]), logits: "last", adapters: [a] });
    for (const m of [cpu]) m.native.unmergeAdapter();
    assert.ok(excess(await one("a", 90), await one(null, 91)) > 1e-3, "the adapter moved no logit");
    for (const id of [90, 91]) cpu.native.freeSeq(id);
    cpu.native.mergeAdapter("a");
    for (const m of [cpu, cuda]) m.native.unmergeAdapter(), m.native.removeAdapter("a");
  });

  it("training a cuda model (on the device) then serving: the device serves what the steps rewrote", async () => {
    const enc = (t: string) => cpu.tokenizer.encode(t, true);
    const text = enc("Once upon a time, there was a little dog who liked to run");
    const prompts = [enc("The little dog"), enc("Once upon a time")];
    // eps above the rounding noise of near-zero gradient elements: with 1e-8 Adam's first
    // step turns their last-bit cpu/device differences into whole ±lr updates
    const opt = { lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-3, weightDecay: 0, maxGradNorm: 1 };
    const trainStep = async (m: NativeModel, adapter: string | null) => {
      m.setTrainable(adapter ? { adapter } : { base: true });
      const r = await m.trainForward({ tokens: Int32Array.from(text), counts: Int32Array.from([text.length]), targets: Int32Array.from([...text.slice(1), -1]), adapter, values: false, grad: true, checkpoint: false });
      await m.trainBackward(r.logp.map(() => -1), null);
      await m.step(opt);
      m.setTrainable(null);
    };
    const before = await greedyBoth(cpu.native, cpu.native, prompts, 4, cpu.config.vocabSize);
    // an adapter's LoRA B starts at zero: one step makes it count, A and B rewritten in place
    for (const m of [cpu, cuda]) m.native.addAdapter("t", { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "v", "up"], seed: 3 }, valueHead: false });
    for (const m of [cpu, cuda]) await trainStep(m.native, "t");
    const lora = await greedyBoth(cpu.native, cuda.native, prompts, 4, cpu.config.vocabSize, ["t", "t"]);
    assert.deepEqual(lora.cuda, lora.cpu);
    assert.ok(lora.worst <= 0, `after a LoRA step: logits differ by ${lora.worst}`);
    // full fine-tuning: the norms are rewritten in place, the linears become fp32 masters
    for (const m of [cpu, cuda]) await trainStep(m.native, null), await trainStep(m.native, null);
    const full = await greedyBoth(cpu.native, cuda.native, prompts, 4, cpu.config.vocabSize);
    assert.deepEqual(full.cuda, full.cpu);
    // every weight trained by two engines (sums in another order: ~1e-5 apart after two
    // steps), so 1e-3 more than a forward's tolerance; stale weights would be ~0.1 off
    assert.ok(full.worst <= 1e-3, `after full fine-tuning steps: logits differ by ${full.worst}`);
    assert.notDeepEqual(full.cpu, before.cpu, "the steps changed nothing: this would test nothing");
  });

  const variants: [string, Tiny][] = [
    ["gqa bf16, q/k/v biases", { C: 48, I: 80, L: 2, NH: 6, NKV: 2, HD: 8, V: 97, dtype: "bf16", bias: true, qkNorm: false, tied: true, ropeScaling: 1 }],
    ["f16 untied, q/k norms, head_dim 40 (two registers per lane)", { C: 40, I: 64, L: 2, NH: 2, NKV: 1, HD: 40, V: 61, dtype: "f16", bias: false, qkNorm: true, tied: false, ropeScaling: 0.9 }],
    ["f32, o/mlp biases, sliding windows 5 and 3", { C: 48, I: 80, L: 2, NH: 6, NKV: 2, HD: 8, V: 97, dtype: "f32", bias: true, oBias: true, mlpBias: true, qkNorm: false, tied: true, ropeScaling: 1, windows: [5, 3] }],
  ];
  for (const [name, t] of variants)
    it(`random ${name}: every logit of prefill and decode within tolerance of the CPU's`, async () => {
      const seed = freshSeed();
      const rng = new Rng(seed);
      const d = mkdtempSync(join(dir, "tiny-"));
      const b = buildTiny(d, "m", t, rng);
      const opts = { threads: 2, kvBlockSize: 4, kvBlocks: 32 };
      const a = native().createModel(b.spec, b.tensors, { ...opts, device: "cpu" });
      const c = native().createModel(b.spec, b.tensors, { ...opts, device: "cuda" });
      try {
        // through cuBLASLt, bf16/f16 weights take rounded activations: a tolerance in units of that rounding
        await prefillDecodeWithin(a, c, t.V, rng, seed, deviceDiff(native().cudaStatus().gemm, t.dtype, t.V));
      } finally {
        a.dispose();
        c.dispose();
      }
    });

  it("the device block pool keeps the CPU's admission rules: kv_full changes nothing, freed blocks are reused", async () => {
    const m = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 5, device: "cuda", kvDtype: "f32" });
    const ref = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 5, device: "cpu" });
    try {
      const step = (model: LoadedModel, id: number, tokens: number[]) =>
        model.native.forward({ seqIds: Int32Array.from([id]), tokens: Int32Array.from(tokens), counts: Int32Array.from([tokens.length]), logits: "last" });
      const twelve = Array.from({ length: 12 }, (_, i) => 10 + i);
      await step(m, 1, twelve); // 3 of the 5 blocks
      await assert.rejects(step(m, 2, twelve), (e: Error & { code?: string }) => e.code === "kv_full");
      assert.deepEqual({ free: m.native.kvStats().freeBlocks, len: m.native.seqLength(2) }, { free: 2, len: 0 }, "a refused step takes nothing");
      m.native.freeSeq(1);
      await step(ref, 2, twelve);
      // the blocks sequence 1 wrote are reused by sequence 2 and read back as its own
      await step(m, 2, twelve);
      const b = await step(ref, 2, [7]), c = await step(m, 2, [7]);
      assert.ok(excess(c, b) <= 0, `after reusing freed blocks: logits differ by ${excess(c, b)}`);
    } finally {
      m.dispose();
      ref.dispose();
    }
  });

  it("tensor parallelism over more ranks than devices is refused, naming both", { skip: given ? "a given library: its device count is its own" : false }, async () => {
    await assert.rejects(loadModel(storiesDir, { threads: 2, tensorParallel: 2, device: "cuda" }), /2 ranks need 2 CUDA devices; 1 present/);
  });
});

describe("hybridchat serve --device", { skip }, () => {
  const cli = join(repoRoot, "dist", "cli", "main.js");
  const serve = (env: NodeJS.ProcessEnv, ...args: string[]) =>
    spawnSync(process.execPath, [cli, "serve", "--model", storiesDir, "--no-store", "--port", "0", ...args], { env: { ...process.env, HYBRIDCHAT_CUDA_LIB: lib, ...env }, encoding: "utf8", timeout: 60_000 });

  it("cuda without a device is a start-up error naming the library paths searched", { skip: given ? "a given library: HYBRIDCHAT_EMU_DEVICES=0 may mean nothing to it" : false }, () => {
    const r = serve({ HYBRIDCHAT_EMU_DEVICES: "0" }, "--device", "cuda");
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--device cuda: no usable CUDA device/);
    assert.ok(r.stderr.includes(`library paths searched: ${lib}`), r.stderr);
    assert.doesNotMatch(r.stderr, /listening/, "refused before anything listens");
  });

  it("cuda on the emulated device: /health and /metrics name it, a completion is served", async () => {
    assert.ok(built);
    const { createServer } = await import("../server/server.js");
    const server = createServer({ model: storiesDir, threads: 2, device: "cuda", store: false, logger: false });
    try {
      await server.ready;
      const health = await server.app.inject({ method: "GET", url: "/health" });
      assert.equal(health.statusCode, 200);
      assert.deepEqual(
        { device: health.json().device, deviceName: health.json().deviceName, devices: health.json().devices, gemm: health.json().gemm, kvDtype: health.json().kvDtype },
        { device: "cuda", deviceName: deviceName(), devices: 1, gemm: given ? native().cudaStatus().gemm : "cublaslt", kvDtype: "bf16" },
      );
      const metrics = await server.app.inject({ method: "GET", url: "/metrics" });
      assert.ok(metrics.body.includes(`hybridchat_device_info{device="cuda",name="${deviceName()}"} 1`), metrics.body);
      const r = await server.app.inject({ method: "POST", url: "/v1/completions", payload: { model: "stories260K", prompt: "Once upon a time", max_tokens: 8, temperature: 0 } });
      assert.equal(r.statusCode, 200, r.body);
      const ref = await loadModel(storiesDir, { threads: 1 });
      try {
        // the same 8 greedy tokens as the CPU model (through the default bf16 KV cache)
        let ids = ref.tokenizer.encode("Once upon a time", true);
        const out: number[] = [];
        for (let s = 0; s < 8; s++) {
          const l = await ref.native.forward({ seqIds: Int32Array.from([1]), tokens: Int32Array.from(ids), counts: Int32Array.from([ids.length]), logits: "last" });
          const t = argmaxRows(l, ref.config.vocabSize)[0];
          out.push(t);
          ids = [t];
        }
        assert.equal(r.json().choices[0].text, ref.tokenizer.decode(out, true));
      } finally {
        ref.dispose();
      }
    } finally {
      await server.close();
    }
  });
});
