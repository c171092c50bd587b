// `npm run gpu-check`: the one check to run on a machine with an NVIDIA GPU (see
// docs/deployment.md). It builds the CUDA library with nvcc (node-gyp, binding.gyp's
// nvcc action), runs the CUDA test subset on the real device (the op tests against the
// CPU kernels and test/cuda-engine: the device engine token for token against the CPU
// engine), then greedy-decodes the model on both devices and prints a short summary:
// device name, tokens equal y/n, decode tok/s cpu vs cuda at batch 1, 8, 64, prefill tok/s
// of one long prompt (2,048 tokens, or the model's context). Where two devices are present,
// a tensor-parallel step: greedy decoding at batch 1 with --tensor-parallel 2 (rank r on
// device r, NCCL between them), tokens equal to the CPU's, tok/s; with one device it is
// skipped and the summary says so. Likewise a data-parallel step: one LoRA SFT step with
// ZeRO-2 at --data-parallel 2 (rank r on device r, the reduce-scatter and all-gather over
// NCCL on device buffers) against the same step on one device: losses and gradient norms
// equal within 1e-3, ms per step; and the same LoRA SFT step at --tensor-parallel 2 (each
// device its shards, its mirror of the adapter and its gradients; the step's all-reduce and
// broadcast over NCCL) against one device, the same numbers.
// On a GPU, decode with CUDA graphs on (the default) vs off
// (--cuda-graphs off: every kernel launched from the host) at each batch, tokens equal and
// tok/s of both; on the emulator skipped with the reason (its launches cost nothing a graph
// saves). It writes the same as JSON.
// Without nvcc or without a device it fails at once, saying which.
//
// --emulator: the same steps on the host emulator (native/tools/cuda-emu) for a machine
// without a GPU; the nvcc build is skipped and says so, and the tok/s of the emulated
// device measure the emulator, not a GPU. The emulator presents two devices, with the
// stand-in libnccl.so.2 its build writes beside it, so the tensor-parallel and
// data-parallel steps (serving and training) run too.
//
// It also says which GEMM served (cuBLASLt, or the builtin kernel when no libcublasLt was
// found: with every path searched) and the cuda runs' KV cache type.
//
// Options: --model DIR (default the bundled stories260K, as `serve` finds it), --tokens N (default 64),
// --batches 1,8,64 (the emulator's default 1,8), --prefill-tokens N (default 2048),
// --kv-dtype f32|bf16 (the cuda runs' KV cache; default f32, so that greedy tokens can be held
// equal to the CPU's: a bf16 cache may swap a near-tie), --out FILE (default gpu-check.json),
// --skip-build (use the library already built).
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { findDefaultModel } from "../engine/default-model.js";
import type { AdapterSpec } from "../native/index.js";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const DEVICE_TESTS = ["cuda-build", "native-ops", "native-backward", "cuda-engine", "cuda-kv", "cuda-quant", "cuda-train", "cuda-train-cli", "cuda-tensor-parallel", "cuda-tensor-parallel-train", "cuda-zero", "paged-attention", "cuda-graphs", "lora-batched"].map((t) => join(root, "dist", "test", `${t}.test.js`));

interface DecodeRun {
  device: "cpu" | "cuda";
  batch: number;
  tokensPerSecond: number;
  tokens: number[][];
}

/** One prompt of `length` tokens (capped by the context), logits of its last token: prefill tok/s. */
async function prefill(dir: string, device: "cpu" | "cuda", length: number, kvDtype: "f32" | "bf16"): Promise<{ tokens: number; tokensPerSecond: number }> {
  const { loadModel } = await import("../engine/model.js");
  const m = await loadModel(dir, { device, kvBlockSize: 16, kvDtype: device === "cuda" ? kvDtype : "f32" });
  try {
    const T = Math.min(length, m.maxContext);
    const tokens = Int32Array.from({ length: T }, (_, i) => 1 + (i * 7919) % (m.config.vocabSize - 1));
    const batch = { seqIds: Int32Array.from([1]), tokens, counts: Int32Array.from([T]), logits: "last" as const };
    await m.native.forward(batch); // warm: scratch grown, weights touched
    m.native.freeSeq(1);
    const t0 = process.hrtime.bigint();
    await m.native.forward(batch);
    return { tokens: T, tokensPerSecond: T / (Number(process.hrtime.bigint() - t0) / 1e9) };
  } finally {
    m.dispose();
  }
}

interface GpuCheckResult {
  mode: "gpu" | "emulator";
  library: string;
  device: string | null;
  /** the GEMM behind the cuda linears: "cublaslt" or "builtin" */
  gemm: string | null;
  /** the cuBLASLt loaded, or why none was and every path searched */
  cublasLt: { path: string | null; version: number; error: string | null; searched: string[] };
  /** the cuda runs' KV cache type */
  kvDtype: "f32" | "bf16";
  skipped: string[];
  tests: { passed: boolean; seconds: number };
  model: string;
  tokensEqual: boolean;
  decode: { batch: number; cpuTokensPerSecond: number; cudaTokensPerSecond: number }[];
  prefill: { tokens: number; cpuTokensPerSecond: number; cudaTokensPerSecond: number };
  /** cuda decode with CUDA graphs on vs off (serve --cuda-graphs) per batch; null on the emulator (in skipped) */
  cudaGraphs: { batch: number; tokensEqual: boolean; onTokensPerSecond: number; offTokensPerSecond: number }[] | null;
  /** greedy decoding at batch 1 on devices 0 and 1 (--tensor-parallel 2); null when fewer than two devices */
  tensorParallel: { ranks: number; tokensEqual: boolean; tokensPerSecond: number } | null;
  /** a LoRA SFT step with ZeRO-2 on devices 0 and 1 against one device; null when fewer than two devices */
  dataParallel: { ranks: number; zeroStage: number; lossesEqual: boolean; oneDeviceMs: number; twoDevicesMs: number } | null;
  /** the same LoRA SFT step at --tensor-parallel 2 on devices 0 and 1 against one device; null when fewer than two devices */
  tensorParallelTrain: { ranks: number; lossesEqual: boolean; oneDeviceMs: number; twoDevicesMs: number } | null;
}

function fail(message: string): never {
  process.stderr.write(`gpu-check: FAILED: ${message}\n`);
  process.exit(1);
}

function step(what: string): void {
  process.stderr.write(`gpu-check: ${what}\n`);
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd: root, env: { ...process.env, ...env }, encoding: "utf8", stdio: ["ignore", "inherit", "inherit"] });
}

/** Greedy decoding of `batch` copies of one prompt (distinct sequences), timed over the decode steps only. */
async function decode(dir: string, device: "cpu" | "cuda", batch: number, tokens: number, kvDtype: "f32" | "bf16", tensorParallel = 1, cudaGraphs = true): Promise<DecodeRun> {
  const { loadModel } = await import("../engine/model.js");
  // room for every sequence's prompt and tokens, whatever the default pool would hold
  const m = await loadModel(dir, { device, tensorParallel, kvBlockSize: 16, kvBlocks: batch * Math.ceil((tokens + 32) / 16) + 1, kvDtype: device === "cuda" ? kvDtype : "f32", cudaGraphs });
  try {
    const V = m.config.vocabSize;
    const prompt = m.tokenizer.encode("Once upon a time", true);
    const seqIds = Int32Array.from({ length: batch }, (_, i) => i + 1);
    const argmax = (l: Float32Array, r: number) => {
      let best = 0;
      for (let j = 1; j < V; j++) if (l[r * V + j] > l[r * V + best]) best = j;
      return best;
    };
    const out: number[][] = Array.from({ length: batch }, () => []);
    let logits = await m.native.forward({ seqIds, tokens: Int32Array.from(Array.from({ length: batch }, () => prompt).flat()), counts: Int32Array.from(seqIds, () => prompt.length), logits: "last" });
    const t0 = process.hrtime.bigint();
    for (let s = 0; s < tokens; s++) {
      const next = Array.from(seqIds, (_, r) => argmax(logits, r));
      next.forEach((t, r) => out[r].push(t));
      logits = await m.native.forward({ seqIds, tokens: Int32Array.from(next), counts: Int32Array.from(seqIds, () => 1), logits: "last" });
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { device, batch, tokensPerSecond: (tokens * batch) / seconds, tokens: out };
  } finally {
    m.dispose();
  }
}

/**
 * One LoRA SFT step (rank 8, the attention and MLP linears) on 4 sequences of `T` tokens, on
 * device 0 alone and with ZeRO-2 over devices 0 and 1 (each rank half the sequences, the
 * loss normalised over all): losses and gradient norms equal within 1e-3, ms per step
 * (after one warm step each).
 */
async function twoDeviceSteps(dir: string, length: number): Promise<Pick<GpuCheckResult, "dataParallel" | "tensorParallelTrain">> {
  const { loadModel } = await import("../engine/model.js");
  const { DataParallelModel } = await import("../engine/train/loop/data-parallel.js");
  const models = await Promise.all([0, 0, 1].map((deviceIndex) => loadModel(dir, { device: "cuda", deviceIndex, kvBlocks: 4 })));
  // the tensor-parallel model: rank r on device r
  models.push(await loadModel(dir, { device: "cuda", tensorParallel: 2, kvBlocks: 4 }));
  try {
    const spec: AdapterSpec = { lora: { rank: 8, alpha: 16, dropout: 0, targets: ["q", "k", "v", "o", "gate", "up", "down"], seed: 1 }, valueHead: false };
    for (const m of models) {
      m.native.addAdapter("a", spec);
      m.native.setTrainable({ adapter: "a" });
    }
    const one = models[0].native;
    const dp = new DataParallelModel([models[1].native, models[2].native], 2);
    const tp = models[3].native;
    const V = models[0].config.vocabSize;
    const T = Math.min(length, models[0].maxContext);
    const counts = Int32Array.from([T, T, T, T]);
    const tokens = Int32Array.from({ length: 4 * T }, (_, i) => 1 + ((i * 7919) % (V - 1)));
    const targets = Int32Array.from({ length: 4 * T }, (_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
    const batch = { tokens, counts, targets, adapter: "a", values: false, grad: true, checkpoint: false };
    const N = targets.filter((t) => t >= 0).length;
    const opt = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };
    type Calls = Pick<typeof one, "trainForward" | "trainBackward" | "step">;
    const stepOn = async (m: Calls) => {
      const t0 = process.hrtime.bigint();
      const { logp } = await m.trainForward(batch);
      let loss = 0;
      const dlogp = new Float32Array(logp.length);
      for (let t = 0; t < logp.length; t++) if (targets[t] >= 0) (dlogp[t] = -1 / N), (loss -= logp[t] / N);
      await m.trainBackward(dlogp, null);
      const { gradNorm } = await m.step(opt);
      return { loss, gradNorm, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
    };
    let dpEqual = true, tpEqual = true;
    const close = (a: number, b: number) => Math.abs(a - b) <= 1e-3 * Math.abs(b);
    let last = { one: 0, dp: 0, tp: 0 };
    for (let k = 0; k < 2; k++) {
      const a = await stepOn(one);
      const b = await stepOn(dp);
      const c = await stepOn(tp);
      dpEqual &&= close(b.loss, a.loss) && close(b.gradNorm, a.gradNorm);
      tpEqual &&= close(c.loss, a.loss) && close(c.gradNorm, a.gradNorm);
      last = { one: a.ms, dp: b.ms, tp: c.ms };
    }
    return {
      dataParallel: { ranks: 2, zeroStage: 2, lossesEqual: dpEqual, oneDeviceMs: last.one, twoDevicesMs: last.dp },
      tensorParallelTrain: { ranks: 2, lossesEqual: tpEqual, oneDeviceMs: last.one, twoDevicesMs: last.tp },
    };
  } finally {
    for (const m of models) m.dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      emulator: { type: "boolean", default: false },
      "skip-build": { type: "boolean", default: false },
      model: { type: "string" },
      tokens: { type: "string", default: "64" },
      batches: { type: "string" },
      "prefill-tokens": { type: "string", default: "2048" },
      "kv-dtype": { type: "string", default: "f32" },
      out: { type: "string", default: "gpu-check.json" },
    },
  });
  const mode = values.emulator ? "emulator" : "gpu";
  const skipped: string[] = [];
  let library: string;
  const env: NodeJS.ProcessEnv = {};
  if (mode === "gpu") {
    const nvcc = spawnSync("sh", [join(root, "native", "tools", "find-nvcc.sh")], { encoding: "utf8" }).stdout.trim();
    if (!nvcc) fail("no nvcc on PATH or in $CUDA_HOME/bin: this check needs the CUDA toolkit and an NVIDIA GPU (on a machine without one, `npm run gpu-check -- --emulator`)");
    if (values["skip-build"]) skipped.push("build (--skip-build)");
    else {
      step(`building the addon and libhybridchat_cuda.so with ${nvcc}`);
      if (run("npx", ["node-gyp", "rebuild", "-C", "native"], { JOBS: "max" }).status !== 0) fail("the native build failed (see above)");
    }
    library = join(root, "native", "build", "Release", "libhybridchat_cuda.so");
    if (!existsSync(library)) fail(`the build made no ${library}`);
  } else {
    skipped.push("nvcc build of libhybridchat_cuda.so (--emulator: no GPU)");
    library = join(mkdtempSync(join(tmpdir(), "hc-gpu-check-")), "libhybridchat_cuda_emu.so");
    step("building the host emulation of the CUDA library (native/tools/cuda-emu)");
    if (run("sh", [join(root, "native", "tools", "cuda-emu", "build.sh"), library]).status !== 0) fail("the emulator build failed");
    env.HYBRIDCHAT_EMU_DEVICES = "2"; // so the tensor-parallel step runs too
  }
  env.HYBRIDCHAT_CUDA_LIB = library;
  const def = findDefaultModel();
  const given = values.model ?? process.env.HYBRIDCHAT_TEST_MODEL;
  const model = given !== undefined ? resolve(given) : def.dir;
  if (model === null || !existsSync(join(model, "config.json")))
    fail(`no checkpoint at ${model ?? def.looked.join(" or ")} (pass --model DIR)`);
  const tokens = Number(values.tokens);
  if (!Number.isInteger(tokens) || tokens < 1) fail(`--tokens must be a positive integer, got ${values.tokens}`);
  // batch 64 is a GPU's case; on the emulator (one core of fibers) it would take an hour
  const batches = (values.batches ?? (mode === "gpu" ? "1,8,64" : "1,8")).split(",").map(Number);
  if (batches.some((b) => !Number.isInteger(b) || b < 1)) fail(`--batches must list positive integers, got ${values.batches}`);
  const kvDtype = values["kv-dtype"];
  if (kvDtype !== "f32" && kvDtype !== "bf16") fail(`--kv-dtype must be f32 or bf16, got ${kvDtype}`);
  const prefillTokens = Number(values["prefill-tokens"]);
  if (!Number.isInteger(prefillTokens) || prefillTokens < 1) fail(`--prefill-tokens must be a positive integer`);
  Object.assign(process.env, env); // read by the addon at its first CUDA call, below
  const { native } = await import("../native/index.js");
  const status = native().cudaStatus();
  if (status.devices < 1) fail(`no CUDA device: ${status.error ?? "none found"} (library ${library})`);
  step(`device 0: ${status.deviceName} (${status.devices} present)`);
  step(status.gemm === "cublaslt" ? `GEMM: cuBLASLt ${status.cublasLt.version} (${status.cublasLt.path})` : `GEMM: builtin (${status.cublasLt.error}; searched ${status.cublasLt.searched.join(", ")})`);

  step(`running the device tests: ${DEVICE_TESTS.map((t) => t.split("/").pop()).join(", ")}`);
  const t0 = Date.now();
  const tests = run(process.execPath, ["--test", "--test-concurrency=1", ...DEVICE_TESTS], { ...env, HYBRIDCHAT_TEST_MODEL: model });
  const testSeconds = (Date.now() - t0) / 1000;

  step(`greedy decoding of ${model} on cpu and cuda, ${tokens} tokens`);
  const decodes: GpuCheckResult["decode"] = [];
  const graphs: NonNullable<GpuCheckResult["cudaGraphs"]> = [];
  let tokensEqual = true;
  let cpuOne: DecodeRun | null = null;
  for (const batch of batches) {
    const cpu = await decode(model, "cpu", batch, tokens, kvDtype);
    const cuda = await decode(model, "cuda", batch, tokens, kvDtype);
    if (mode === "gpu") {
      const eager = await decode(model, "cuda", batch, tokens, kvDtype, 1, false);
      const equal = JSON.stringify(eager.tokens) === JSON.stringify(cuda.tokens);
      tokensEqual &&= equal;
      graphs.push({ batch, tokensEqual: equal, onTokensPerSecond: cuda.tokensPerSecond, offTokensPerSecond: eager.tokensPerSecond });
    }
    if (batch === 1) cpuOne = cpu;
    tokensEqual &&= JSON.stringify(cpu.tokens) === JSON.stringify(cuda.tokens);
    decodes.push({ batch, cpuTokensPerSecond: cpu.tokensPerSecond, cudaTokensPerSecond: cuda.tokensPerSecond });
  }
  if (mode !== "gpu") skipped.push("CUDA graphs on vs off: the emulator runs a launch in no time a graph could save; measured on a GPU only");
  let tensorParallel: GpuCheckResult["tensorParallel"] = null;
  if (status.devices >= 2) {
    step(`tensor parallel: greedy decoding at batch 1 over devices 0 and 1 (NCCL ${native().ncclStatus().path ?? "not loaded"})`);
    cpuOne ??= await decode(model, "cpu", 1, tokens, kvDtype);
    const tp = await decode(model, "cuda", 1, tokens, kvDtype, 2);
    tensorParallel = { ranks: 2, tokensEqual: JSON.stringify(tp.tokens) === JSON.stringify(cpuOne.tokens), tokensPerSecond: tp.tokensPerSecond };
    tokensEqual &&= tensorParallel.tokensEqual;
  } else {
    skipped.push(`tensor parallel step (--tensor-parallel 2): ${status.devices} device present, it needs 2`);
  }
  let dataParallel: GpuCheckResult["dataParallel"] = null;
  let tensorParallelTrain: GpuCheckResult["tensorParallelTrain"] = null;
  if (status.devices >= 2) {
    step("data and tensor parallel training: a LoRA SFT step with ZeRO-2 at --data-parallel 2, and at --tensor-parallel 2, over devices 0 and 1 against one device");
    // 64-token sequences on a GPU; 16 on the emulator, whose fibers take ~10 s a step even so
    ({ dataParallel, tensorParallelTrain } = await twoDeviceSteps(model, mode === "gpu" ? 64 : 16));
  } else {
    skipped.push(`data parallel step (--data-parallel 2 --zero-stage 2): ${status.devices} device present, it needs 2`);
    skipped.push(`tensor parallel training step (--tensor-parallel 2): ${status.devices} device present, it needs 2`);
  }
  const pc = await prefill(model, "cpu", prefillTokens, kvDtype);
  const pg = await prefill(model, "cuda", prefillTokens, kvDtype);
  const result: GpuCheckResult = {
    mode,
    library,
    device: status.deviceName,
    gemm: status.gemm,
    cublasLt: status.cublasLt,
    kvDtype,
    skipped,
    tests: { passed: tests.status === 0, seconds: testSeconds },
    model,
    tokensEqual,
    decode: decodes,
    prefill: { tokens: pc.tokens, cpuTokensPerSecond: pc.tokensPerSecond, cudaTokensPerSecond: pg.tokensPerSecond },
    cudaGraphs: mode === "gpu" ? graphs : null,
    tensorParallel,
    dataParallel,
    tensorParallelTrain,
  };
  writeFileSync(values.out!, JSON.stringify(result, null, 2) + "\n");
  const f = (x: number) => x.toFixed(1);
  process.stdout.write(
    `gpu-check summary (${mode}${mode === "emulator" ? ": tok/s of the emulator, not of a GPU" : ""})\n` +
      `  device:        ${status.deviceName}\n` +
      `  GEMM:          ${status.gemm === "cublaslt" ? `cuBLASLt ${status.cublasLt.version} (${status.cublasLt.path})` : `builtin: ${status.cublasLt.error}`}\n` +
      `  KV cache:      ${kvDtype} on cuda (--kv-dtype), f32 on the CPU\n` +
      `  device tests:  ${tests.status === 0 ? "passed" : "FAILED"} (${testSeconds.toFixed(0)} s)\n` +
      `  tokens equal:  ${tokensEqual ? "y" : "n"} (greedy, cpu vs cuda, batch ${batches.join(", ")})\n` +
      decodes.map((d) => `  decode tok/s:  batch ${d.batch}: cpu ${f(d.cpuTokensPerSecond)}, cuda ${f(d.cudaTokensPerSecond)}\n`).join("") +
      graphs.map((g) => `  cuda graphs:   batch ${g.batch}: on ${f(g.onTokensPerSecond)}, off ${f(g.offTokensPerSecond)} tok/s, tokens equal: ${g.tokensEqual ? "y" : "n"}\n`).join("") +
      `  prefill tok/s: ${pc.tokens}-token prompt: cpu ${f(pc.tokensPerSecond)}, cuda ${f(pg.tokensPerSecond)}\n` +
      (tensorParallel ? `  tp=2 decode:   batch 1: ${f(tensorParallel.tokensPerSecond)} tok/s, tokens equal to the cpu's: ${tensorParallel.tokensEqual ? "y" : "n"}\n` : "") +
      (dataParallel
        ? `  dp=2 ZeRO-2:   LoRA SFT step: ${f(dataParallel.twoDevicesMs)} ms on 2 devices, ${f(dataParallel.oneDeviceMs)} ms on 1; losses equal: ${dataParallel.lossesEqual ? "y" : "n"}\n`
        : "") +
      (tensorParallelTrain
        ? `  tp=2 train:    LoRA SFT step: ${f(tensorParallelTrain.twoDevicesMs)} ms on 2 devices, ${f(tensorParallelTrain.oneDeviceMs)} ms on 1; losses equal: ${tensorParallelTrain.lossesEqual ? "y" : "n"}\n`
        : "") +
      (skipped.length ? `  skipped:       ${skipped.join("; ")}\n` : "") +
      `  results:       ${resolve(values.out!)}\n`,
  );
  if (tests.status !== 0 || !tokensEqual || (dataParallel && !dataParallel.lossesEqual) || (tensorParallelTrain && !tensorParallelTrain.lossesEqual)) process.exit(1);
}

await main();
