// `npm run gpu-check`: the one check to run on a machine with an NVIDIA GPU (see
// docs/deployment.md). It builds the CUDA library with nvcc (node-gyp, binding.gyp's
// nvcc action), runs the CUDA test subset on the real device (the op tests against the
// CPU kernels and test/cuda-engine: the device engine token for token against the CPU
// engine), then greedy-decodes the model on both devices and prints a short summary:
// device name, tokens equal y/n, decode tok/s cpu vs cuda at batch 1, 8, 64, prefill tok/s
// of one long prompt (2,048 tokens, or the model's context). Where two devices are present,
// a tensor-parallel step: greedy decoding at batch 1 with --tensor-parallel 2 (rank r on
// device r, NCCL between them), tokens equal to the CPU's, tok/s; with one device it is
// skipped and the summary says so. On a GPU, decode with CUDA graphs on (the default) vs off
// (--cuda-graphs off: every kernel launched from the host) at each batch, tokens equal and
// tok/s of both; on the emulator skipped with the reason (its launches cost nothing a graph
// saves). It writes the same as JSON.
// Without nvcc or without a device it fails at once, saying which.
//
// --emulator: the same steps on the host emulator (native/tools/cuda-emu) for a machine
// without a GPU; the nvcc build is skipped and says so, and the tok/s of the emulated
// device measure the emulator, not a GPU. The emulator presents two devices, with the
// stand-in libnccl.so.2 its build writes beside it, so the tensor-parallel step runs too.
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

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const DEVICE_TESTS = ["cuda-build", "native-ops", "native-backward", "cuda-engine", "cuda-kv", "cuda-quant", "cuda-train", "cuda-train-cli", "cuda-tensor-parallel", "cuda-graphs", "lora-batched"].map((t) => join(root, "dist", "test", `${t}.test.js`));

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
      (skipped.length ? `  skipped:       ${skipped.join("; ")}\n` : "") +
      `  results:       ${resolve(values.out!)}\n`,
  );
  if (tests.status !== 0 || !tokensEqual) process.exit(1);
}

await main();
