// What the emulated-device tests share: building the emulated CUDA library (with the
// stand-in cuBLASLt and libnccl.so.2 beside it) for a test file's devices, and comparing a
// cuda model with a cpu one logit for logit and token for token.
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { NativeModel } from "../native/index.js";
import type { Rng } from "./reference/check.js";
import { repoRoot } from "./test-model.js";

/** g++ is what the emulator needs; a reason to skip without it */
export const emulatorSkip = spawnSync("g++", ["--version"]).status === 0 ? false : "g++ absent: cannot build the emulated device";

/** Everything the emulator build reads (its sources, build.sh, the compiler), as one hash. */
function emulatorSourceHash(): string {
  const h = createHash("sha256");
  for (const dir of [join(repoRoot, "native", "src", "cuda"), join(repoRoot, "native", "tools", "cuda-emu")])
    for (const f of readdirSync(dir).sort()) h.update(f).update(readFileSync(join(dir, f)));
  h.update(spawnSync("g++", ["--version"], { encoding: "utf8" }).stdout ?? "");
  return h.digest("hex").slice(0, 16);
}

/**
 * Builds native/tools/cuda-emu into `lib` (and libcublasLt.so.12, libnccl.so.2 beside it).
 * The build (≈ 13 s of g++) is kept in the temp folder under the hash of its sources, so the
 * emulated-device test files of one run build it once; each file still gets its own copies,
 * which it may change or delete. A concurrent first build is harmless: the rename is atomic
 * and the loser's folder is dropped.
 */
export function buildEmulator(lib: string): void {
  const cache = join(tmpdir(), `hybridchat-cuda-emu-${emulatorSourceHash()}`);
  const main = "libhybridchat_cuda_emu.so";
  if (!existsSync(join(cache, "complete"))) {
    const work = mkdtempSync(join(tmpdir(), "hybridchat-cuda-emu-build-"));
    const b = spawnSync("sh", [join(repoRoot, "native", "tools", "cuda-emu", "build.sh"), join(work, main)], { encoding: "utf8" });
    assert.equal(b.status, 0, b.stderr);
    writeFileSync(join(work, "complete"), "");
    try {
      renameSync(work, cache);
    } catch {
      rmSync(work, { recursive: true, force: true });
    }
  }
  for (const f of readdirSync(cache))
    if (f !== "complete") copyFileSync(join(cache, f), f === main ? lib : join(dirname(lib), f));
}

/**
 * Builds the emulated CUDA library into a fresh folder before the file's tests and points
 * the addon at it with `devices` devices; the folder goes after them. The addon reads these
 * once, on its first CUDA / NCCL call, so the file must make none before its tests run.
 * With `honourGiven` and HYBRIDCHAT_CUDA_LIB already set (npm run gpu-check sets it to the
 * nvcc build on a GPU machine), nothing is built: the tests run on that library's devices
 * (`given` is its path).
 */
export function emulatedDevices(devices: number, prefix: string, honourGiven = false): { dir: string; lib: string; given: string | null } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const given = honourGiven ? process.env.HYBRIDCHAT_CUDA_LIB || null : null;
  const lib = given ?? join(dir, "libhybridchat_cuda_emu.so");
  before(() => {
    if (given) return;
    assert.equal(emulatorSkip, false, "g++ is needed to build the emulated devices");
    buildEmulator(lib);
    process.env.HYBRIDCHAT_CUDA_LIB = lib;
    process.env.HYBRIDCHAT_EMU_DEVICES = String(devices);
    delete process.env.HYBRIDCHAT_NCCL_LIB;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, lib, given };
}

/**
 * A test file's one emulated device, or HYBRIDCHAT_CUDA_LIB's library when set (or nothing
 * when g++ is absent: such files skip with emulatorSkip). Returns the folder (for the test's
 * own files too).
 */
export function useEmulator(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  before(() => {
    if (process.env.HYBRIDCHAT_CUDA_LIB || emulatorSkip) return;
    const lib = join(dir, "libhybridchat_cuda_emu.so");
    buildEmulator(lib);
    process.env.HYBRIDCHAT_CUDA_LIB = lib;
    process.env.HYBRIDCHAT_EMU_DEVICES = "1";
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// |cuda − cpu| ≤ ATOL + RTOL·|cpu| on every logit: the same fp32 math, summed in another order
export const ATOL = 1e-4, RTOL = 1e-4;

/** worst excess of |a − b| over `rel`·rms(b's row), per row of V (≤ 0: within) */
export function excessRms(a: Float32Array, b: Float32Array, V: number, rel: number): number {
  assert.equal(a.length, b.length);
  let w = -Infinity;
  for (let r = 0; r * V < b.length; r++) {
    let ss = 0;
    for (let j = 0; j < V; j++) ss += b[r * V + j] ** 2;
    const tol = rel * Math.sqrt(ss / V);
    for (let j = 0; j < V; j++) w = Math.max(w, Math.abs(a[r * V + j] - b[r * V + j]) - tol);
  }
  return w;
}

// bf16/f16 weights through cuBLASLt: the activations are rounded to the weight's type (unit
// roundoff u = 2^-9 bf16, 2^-11 f16), which moves each logit of the tiny random models by
// 5-10 u times its row's RMS (measured over 12 seeds); a wrong transpose or stride moves
// them by about 1 RMS. Allowed: HALF_ULPS·u·RMS.
const HALF_ULPS = 24;
const UNIT_ROUNDOFF: Record<string, number> = { bf16: 2 ** -9, f16: 2 ** -11 };

/**
 * The logit comparison for a model of `dtype` weights served on a device whose GEMM is
 * `gemm`: excess at 1e-4, or through cuBLASLt with bf16/f16 weights HALF_ULPS units of the
 * activations' rounding times each row's RMS.
 */
export function deviceDiff(gemm: string | null | undefined, dtype: string, V: number): (x: Float32Array, ref: Float32Array) => number {
  const u = gemm === "cublaslt" ? UNIT_ROUNDOFF[dtype] : undefined;
  return (x, ref) => (u ? excessRms(x, ref, V, HALF_ULPS * u) : excess(x, ref));
}

/** worst excess of |a − b| over atol + rtol·|b| (≤ 0: within) */
export function excess(a: Float32Array, b: Float32Array, atol = ATOL, rtol = RTOL): number {
  assert.equal(a.length, b.length);
  let w = -Infinity;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]) - atol - rtol * Math.abs(b[i]));
  return w;
}

export function argmaxRows(logits: Float32Array, V: number): number[] {
  const out: number[] = [];
  for (let r = 0; r * V < logits.length; r++) {
    let best = 0;
    for (let j = 1; j < V; j++) if (logits[r * V + j] > logits[r * V + best]) best = j;
    out.push(best);
  }
  return out;
}

/**
 * Greedy decoding of every prompt at once (one batch per step) on both models; `diff`
 * (default: excess at 1e-4) of the logits at each step, the worst returned. Both continue
 * from the reference's choice, so one slip cannot cascade.
 */
export async function greedyBoth(
  ref: NativeModel,
  dev: NativeModel,
  prompts: number[][],
  steps: number,
  V: number,
  adapters?: (string | null)[],
  diff: (x: Float32Array, r: Float32Array) => number = (x, r) => excess(x, r),
): Promise<{ cpu: number[][]; cuda: number[][]; worst: number }> {
  const seqIds = Int32Array.from(prompts.map((_, i) => i + 1));
  const outs = { cpu: prompts.map(() => [] as number[]), cuda: prompts.map(() => [] as number[]) };
  let worst = -Infinity;
  let next = prompts;
  for (let s = 0; s <= steps; s++) {
    const batch = { seqIds, tokens: Int32Array.from(next.flat()), counts: Int32Array.from(next.map((p) => p.length)), logits: "last" as const, adapters };
    const a = await ref.forward(batch);
    const b = await dev.forward(batch);
    worst = Math.max(worst, diff(b, a));
    const ta = argmaxRows(a, V), tb = argmaxRows(b, V);
    ta.forEach((t, i) => outs.cpu[i].push(t));
    tb.forEach((t, i) => outs.cuda[i].push(t));
    next = ta.map((t) => [t]);
  }
  for (const id of seqIds) ref.freeSeq(id), dev.freeSeq(id);
  return { ...outs, worst };
}

/** Two random prompts (11 and 3 tokens) prefilled with every logit and with the last, then 4 decode steps: each step's logits within `diff`'s tolerance (default: excess at 1e-4). */
export async function prefillDecodeWithin(ref: NativeModel, got: NativeModel, V: number, rng: Rng, seed: number, diff: (x: Float32Array, r: Float32Array) => number = (x, r) => excess(x, r)): Promise<void> {
  const prompts = [Array.from({ length: 11 }, () => rng.int(V)), Array.from({ length: 3 }, () => rng.int(V))];
  for (const logits of ["all", "last"] as const) {
    const batch = { seqIds: Int32Array.from([logits === "all" ? 1 : 3, logits === "all" ? 2 : 4]), tokens: Int32Array.from(prompts.flat()), counts: Int32Array.from([11, 3]), logits };
    const w = diff(await got.forward(batch), await ref.forward(batch));
    assert.ok(w <= 0, `${logits}: logits differ by ${w} (seed ${seed})`);
  }
  for (let s = 0; s < 4; s++) {
    const batch = { seqIds: Int32Array.from([1, 2]), tokens: Int32Array.from([rng.int(V), rng.int(V)]), counts: Int32Array.from([1, 1]), logits: "last" as const };
    const w = diff(await got.forward(batch), await ref.forward(batch));
    assert.ok(w <= 0, `decode step ${s}: logits differ by ${w} (seed ${seed})`);
  }
}
