// Tensor parallelism on N CUDA devices, checked without a GPU: the host emulator's CUDA
// library with two emulated devices and the stand-in libnccl.so.2 built beside it
// (native/tools/cuda-emu). A model created with device "cuda" and tensorParallel 2 runs
// rank r on device r — its shards of the weights, its KV heads' block pool, its copy of the
// residual stream — with the two all-reduces per layer through NCCL on device buffers;
// compared with the CPU engine (one rank): stories260K greedy token for token with and
// without LoRA adapters (two and the base in one batch, one of them merged too), a random GQA model logit for logit (biases on the
// row-parallel layers, q/k norms, sliding windows), and serve's HTTP answers on 2 devices.
// Training at TP=2 on devices: cuda-tensor-parallel-train.test.ts.
// With HYBRIDCHAT_CUDA_LIB already set (npm run gpu-check on a GPU machine) the same checks
// run on that library's devices 0 and 1, or are skipped, saying why, with fewer.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { native, type LinearName } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { freshSeed, Rng } from "./reference/check.js";
import { buildTiny, type Tiny } from "./tiny-model.js";
import { repoRoot, storiesDir } from "./test-model.js";
import { deviceDiff, emulatedDevices, excess, greedyBoth, prefillDecodeWithin } from "./cuda-compare.js";

const { dir, given } = emulatedDevices(2, "hc-cuda-tp-", true);
// on a given library (gpu-check on a GPU machine): its devices, if it has two
const skip = given && native().cudaStatus().devices < 2 ? `${native().cudaStatus().devices} CUDA device(s) at ${given}: tensor parallelism needs 2` : false;

describe("tensor parallel serving on two emulated CUDA devices", { skip }, () => {
  let cpu: LoadedModel, tp: LoadedModel;
  before(async () => {
    assert.ok(native().cudaStatus().devices >= 2, native().cudaStatus().error ?? "");
    // 4-token KV blocks: the long prompt spans several of them
    cpu = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 64, device: "cpu" });
    tp = await loadModel(storiesDir, { threads: 2, kvBlockSize: 4, kvBlocks: 64, device: "cuda", tensorParallel: 2, kvDtype: "f32" });
  });
  after(() => {
    cpu?.dispose();
    tp?.dispose();
  });

  it("says it serves on two devices, its collectives through NCCL", () => {
    assert.deepEqual(tp.native.device(), { kind: "cuda", name: native().cudaStatus().deviceName, devices: 2, gemm: native().cudaStatus().gemm, kvDtype: "f32" });
    if (!given) assert.equal(native().cudaStatus().deviceName, "host emulation");
    if (!given) assert.equal(native().ncclStatus().path, join(dir, "libnccl.so.2"));
  });

  it("stories260K: greedy tokens equal to the CPU engine's, batch 3, prompts over several KV blocks", async () => {
    const enc = (t: string) => cpu.tokenizer.encode(t, true);
    const prompts = [enc("Once upon a time, there was a little girl named Lily who loved to play in the park with her dog"), enc("The cat"), enc("One day, Tom went to the store")];
    const r = await greedyBoth(cpu.native, tp.native, prompts, 12, cpu.config.vocabSize);
    assert.deepEqual(r.cuda, r.cpu);
    assert.ok(r.worst <= 0, `logits differ beyond the tolerance by ${r.worst}`);
    assert.equal(tp.native.kvStats().freeBlocks, tp.native.kvStats().totalBlocks);
  });

  it("two LoRA adapters and the base in one batch, then one merged: each device applies its shard of every row's adapter", async () => {
    const seed = freshSeed();
    const rng = new Rng(seed);
    // b: another rank, on both kinds of split (q, up column-parallel; o, down row-parallel)
    const specs: Record<string, { rank: number; alpha: number; targets: LinearName[] }> = {
      a: { rank: 4, alpha: 8, targets: ["q", "k", "v", "o", "gate", "up", "down"] },
      b: { rank: 2, alpha: 6, targets: ["q", "o", "up", "down"] },
    };
    for (const [name, sp] of Object.entries(specs)) {
      for (const m of [cpu, tp]) m.native.addAdapter(name, { lora: { ...sp, dropout: 0, seed: 7 }, valueHead: false });
      for (const p of cpu.native.parameters(name)) {
        const data = Float32Array.from({ length: p.shape.reduce((x, y) => x * y, 1) }, () => (rng.next() - 0.5) * 0.3);
        for (const m of [cpu, tp]) m.native.writeParameter(name, p.name, data);
      }
    }
    const enc = (t: string) => cpu.tokenizer.encode(t, true);
    const prompts = [enc("Once upon a time, there was a big red ball"), enc("The dog ran"), enc("Lily liked to play")];
    const adapters = ["a", null, "b"];
    try {
      const mixed = await greedyBoth(cpu.native, tp.native, prompts, 6, cpu.config.vocabSize, adapters);
      assert.deepEqual(mixed.cuda, mixed.cpu, `seed ${seed}`);
      assert.ok(mixed.worst <= 0, `adapter rows: logits differ by ${mixed.worst} (seed ${seed})`);
      // each adapter moves its row's logits (else this would test nothing). Not its greedy tokens:
      // adapter b left all 6 unchanged for 15 of 300 seeds, and larger random weights make the
      // devices' logits drift past the tolerance instead
      for (const i of [0, 2]) {
        const one = (a: string | null, id: number) => cpu.native.forward({ seqIds: Int32Array.of(id), tokens: Int32Array.from(prompts[i]!), counts: Int32Array.of(prompts[i]!.length), logits: "last", adapters: [a] });
        const moved = excess(await one(adapters[i]!, 90), await one(null, 91), 1e-3, 0);
        for (const id of [90, 91]) cpu.native.freeSeq(id);
        assert.ok(moved > 0, `adapter ${adapters[i]} moved no logit by 1e-3 (seed ${seed}): this would test nothing`);
      }
      for (const m of [cpu, tp]) m.native.mergeAdapter("a");
      const merged = await greedyBoth(cpu.native, tp.native, prompts, 6, cpu.config.vocabSize, adapters);
      assert.deepEqual(merged.cuda, merged.cpu, `seed ${seed}`);
      assert.ok(merged.worst <= 0, `merged: logits differ by ${merged.worst} (seed ${seed})`);
      for (const m of [cpu, tp]) m.native.unmergeAdapter();
    } finally {
      for (const m of [cpu, tp]) for (const name of Object.keys(specs)) m.native.removeAdapter(name);
    }
  });

  it("a rank failing mid-step fails the step with its own error, not a hang; the group is joined afresh and the next steps are the CPU's", { timeout: 120_000 }, async () => {
    const prompt = cpu.tokenizer.encode("Once upon a time", true);
    const batch = { seqIds: Int32Array.from([7]), tokens: Int32Array.from(prompt), counts: Int32Array.from([prompt.length]), logits: "last" as const };
    process.env.HYBRIDCHAT_TEST_FAIL_TP_RANK = "1"; // read by rank.cc at each step
    try {
      // rank 0 waits in the NCCL all-reduce rank 1 never joins: only the abort releases it
      await assert.rejects(tp.native.forward(batch), (e: Error & { code?: string }) => e.code === "injected_failure" && /rank 1/.test(e.message));
    } finally {
      delete process.env.HYBRIDCHAT_TEST_FAIL_TP_RANK;
    }
    assert.equal(tp.native.seqLength(7), 0, "the failed step wrote nothing");
    const r = await greedyBoth(cpu.native, tp.native, [prompt], 6, cpu.config.vocabSize);
    assert.deepEqual(r.cuda, r.cpu);
    assert.ok(r.worst <= 0, `after the failure: logits differ by ${r.worst}`);
  });

  const t: Tiny = { C: 48, I: 80, L: 2, NH: 6, NKV: 2, HD: 8, V: 97, dtype: "bf16", bias: true, oBias: true, mlpBias: true, qkNorm: true, tied: false, ropeScaling: 0.9, windows: [5, 0] };
  it("random GQA bf16 model (biases on every linear, q/k norms, a sliding window): logits within 1e-4 of the CPU's (a few units of bf16 rounding through cuBLASLt)", async () => {
    const seed = freshSeed();
    const rng = new Rng(seed);
    const b = buildTiny(mkdtempSync(join(dir, "tiny-")), "m", t, rng);
    const opts = { threads: 2, kvBlockSize: 4, kvBlocks: 32 };
    const a = native().createModel(b.spec, b.tensors, { ...opts, device: "cpu" });
    const c = native().createModel(b.spec, b.tensors, { ...opts, device: "cuda", tensorParallel: 2 });
    try {
      await prefillDecodeWithin(a, c, t.V, rng, seed, deviceDiff(native().cudaStatus().gemm, t.dtype, t.V));
    } finally {
      a.dispose();
      c.dispose();
    }
  });
});

describe("hybridchat serve --device cuda --tensor-parallel 2", { skip }, () => {
  it("/health, /metrics name two devices and the README's curl is answered as the CPU engine answers it", async () => {
    const { createServer } = await import("../server/server.js");
    const server = createServer({ model: storiesDir, threads: 2, device: "cuda", tensorParallel: 2, kvDtype: "f32", store: false, logger: false });
    try {
      await server.ready;
      const health = await server.app.inject({ method: "GET", url: "/health" });
      assert.equal(health.statusCode, 200);
      assert.deepEqual({ status: health.json().status, device: health.json().device, devices: health.json().devices }, { status: "ok", device: "cuda", devices: 2 });
      const metrics = await server.app.inject({ method: "GET", url: "/metrics" });
      assert.match(metrics.body, /^hybridchat_devices 2$/m);
      // README: {"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":32}, greedy here
      const payload = { model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 32, temperature: 0 };
      const r = await server.app.inject({ method: "POST", url: "/v1/chat/completions", payload });
      assert.equal(r.statusCode, 200, r.body);
      const ref = createServer({ model: storiesDir, threads: 2, device: "cpu", store: false, logger: false });
      try {
        await ref.ready;
        const want = await ref.app.inject({ method: "POST", url: "/v1/chat/completions", payload });
        assert.equal(r.json().choices[0].message.content, want.json().choices[0].message.content);
        assert.ok(r.json().usage.completion_tokens > 0);
      } finally {
        await ref.close();
      }
    } finally {
      await server.close();
    }
  });

  it("the start-up line names both devices", async () => {
    const cli = join(repoRoot, "dist", "cli", "main.js");
    const child = spawn(process.execPath, [cli, "serve", "--model", storiesDir, "--no-store", "--port", "0", "--threads", "2", "--device", "cuda", "--tensor-parallel", "2", "--kv-dtype", "f32"], { env: process.env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    try {
      await new Promise<void>((done, failed) => {
        const timer = setTimeout(() => failed(new Error(`no ready line in 90 s: ${err}`)), 90_000);
        child.stderr.on("data", (d: Buffer) => {
          err += d.toString();
          if (/ready: serving/.test(err) && err.includes("\n", err.indexOf("ready: serving"))) clearTimeout(timer), done();
        });
        child.on("exit", (code) => (clearTimeout(timer), failed(new Error(`serve exited with ${code}: ${err}`))));
      });
      assert.match(err, /on CUDA devices 0-1 \(.*; 2 tensor-parallel ranks/);
    } finally {
      child.kill();
    }
  });
});
