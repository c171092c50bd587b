// Quantized checkpoints on the (emulated) CUDA device: `hybridchat quantize`'s q8_0 and q4_0
// stories260K, and q4_k on a random model whose rows are whole super-blocks (stories260K's
// 64 and 172 are not), uploaded as stored and dequantized by the device GEMM while it loads
// its tiles (native/src/cuda/gemm.cuh), greedy token for token and every logit within 1e-4
// of the CPU engine on the same checkpoint (both widen the same blocks to fp32). The CPU's
// decode kernels for these formats round x to int8 a block (llama.cpp's way, cpu/quant_dot.h)
// where the device's GEMM keeps x exact, so the CPU reference here runs its portable kernels,
// which keep x in fp32: the same math as the device's.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { native } from "../native/index.js";
import { loadModel } from "../engine/model.js";
import { quantizeCheckpoint } from "../engine/quantize-checkpoint.js";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { storiesDir } from "./test-model.js";
import { emulatorSkip, greedyBoth, useEmulator } from "./cuda-compare.js";

const skip = process.env.HYBRIDCHAT_CUDA_LIB ? false : emulatorSkip;
// read once, at the first kernel dispatch (cpu/dispatch.cc), which no import makes
process.env.HYBRIDCHAT_KERNELS = "portable";
const dir = useEmulator("hc-cuda-quant-");


describe("quantized checkpoints on the emulated CUDA device", { skip }, () => {
  for (const type of ["q8_0", "q4_0", "q4_k"] as const)
    it(`${type}: greedy tokens and logits equal to the CPU engine's`, async () => {
      assert.ok(native().cudaStatus().devices >= 1, native().cudaStatus().error ?? "");
      let src = storiesDir;
      if (type === "q4_k") {
        src = join(dir, "wide");
        await initCheckpoint({ config: { ...preset("tiny"), hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2 }, out: src, seed: 5, std: 0.08 });
      }
      const q = join(dir, type);
      const s = await quantizeCheckpoint({ model: src, out: q, type });
      assert.ok(s.quantized > 0, `${type}: nothing was quantized`);
      const opts = { threads: 2, kvBlockSize: 4, kvBlocks: 32 };
      const cpu = await loadModel(q, { ...opts, device: "cpu", kvDtype: "f32" });
      const cuda = await loadModel(q, { ...opts, device: "cuda", kvDtype: "f32" });
      try {
        const enc = (t: string) => cpu.tokenizer.encode(t, true);
        const r = await greedyBoth(cpu.native, cuda.native, [enc("Once upon a time, there was a little girl"), enc("The cat")], 8, cpu.config.vocabSize);
        assert.deepEqual(r.cuda, r.cpu);
        assert.ok(r.worst <= 0, `${type}: logits differ beyond 1e-4 by ${r.worst}`);
      } finally {
        cpu.dispose();
        cuda.dispose();
      }
    });
});
