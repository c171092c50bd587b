// What the int8 GEMM tests (quant-gemm, quant-repack) share: random block-format weights with
// their exact float64 values, and the avx2 level's second run without AVX-VNNI.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { native } from "../native/index.js";
import type { Rng } from "./reference/check.js";
import { dequantize, dequantizeQ4K, quantize } from "./reference/quant.js";

export type BlockType = "q8_0" | "q4_0" | "q4_k";

/** N × K random weights as `type`'s blocks (q4_k through the native quantizer) and the values they hold. */
export function blockWeights(rng: Rng, type: BlockType, N: number, K: number): { w: Uint8Array; wd: Float64Array } {
  const values = rng.f32(N * K);
  if (type !== "q4_k") {
    const w = quantize(values, type);
    return { w, wd: Float64Array.from(dequantize(w, type)) };
  }
  const w = new Uint8Array(N * K / 256 * 144);
  native().ops("cpu").fromF32(w, values, "q4_k");
  return { w, wd: Float64Array.from(dequantizeQ4K(w)) };
}

/** On a CPU with AVX-VNNI the avx2 level runs the int8 GEMM as ymm vpdpbusd; HYBRIDCHAT_AVX_VNNI=0
 * runs the test file again for the plain AVX2 maddubs kernel there too (elsewhere it is what avx2 runs anyway). */
export function describeAvx2WithoutVnni(fileUrl: string, what: string): void {
  describe(`${what} at avx2 without AVX-VNNI`, { skip: process.env.HYBRIDCHAT_KERNELS ? "a child run" : false }, () => {
    const skip = native().kernelVariants().includes("avx2") ? false : "this CPU cannot run avx2";
    it("passes with HYBRIDCHAT_KERNELS=avx2 HYBRIDCHAT_AVX_VNNI=0", { skip }, () => {
      const env: NodeJS.ProcessEnv = { ...process.env, HYBRIDCHAT_KERNELS: "avx2", HYBRIDCHAT_AVX_VNNI: "0" };
      delete env.NODE_TEST_CONTEXT;
      const r = spawnSync(process.execPath, ["--test", "--test-reporter=tap", fileURLToPath(fileUrl)], { env, encoding: "utf8" });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /# pass [1-9]/);
      assert.match(r.stdout, /# fail 0/);
    });
  });
}
