// What the emulated-device tests share: building the emulated CUDA library (with its
// stand-in cuBLASLt beside it), and comparing a cuda model with a cpu one logit for logit
// and token for token.
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NativeModel } from "../native/index.js";
import { repoRoot } from "./test-model.js";

/** g++ is what the emulator needs; a reason to skip without it */
export const emulatorSkip = spawnSync("g++", ["--version"]).status === 0 ? false : "g++ absent: cannot build the emulated device";

/** Builds native/tools/cuda-emu into `lib` (and libcublasLt.so.12 beside it). */
export function buildEmulator(lib: string): void {
  const b = spawnSync("sh", [join(repoRoot, "native", "tools", "cuda-emu", "build.sh"), lib], { encoding: "utf8" });
  assert.equal(b.status, 0, b.stderr);
}

/**
 * A test file's emulated device: unless HYBRIDCHAT_CUDA_LIB names a library already, builds
 * the emulator into a temporary folder before the tests (one device) and removes it after.
 * Returns the folder (for the test's own files too).
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

/** worst excess of |a − b| over atol + rtol·|b| (≤ 0: within) */
export function excess(a: Float32Array, b: Float32Array, atol = 1e-4, rtol = 1e-4): number {
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
