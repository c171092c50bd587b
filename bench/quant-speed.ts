// `--only quant`: stories260K (trained, f32) and 110M (random weights, bf16) quantized to q8_0,
// q4_0 and q4_k (110M only: stories260K has no rows of whole 256-weight super-blocks): mean KL of next-token distributions against the source on a fixed text
// (llama.cpp's `perplexity --kl-divergence` measure), then pp512 / tg128 of the 110M ones.
// The embedding (and so the tied head) stays in the source's dtype.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BLOCK_BYTES, BLOCK_ELEMS, type QuantizeDType } from "../native/index.js";
import { loadModel } from "../engine/model.js";
import { agreement } from "../engine/quant-agreement.js";
import { quantizeCheckpoint } from "../engine/quantize-checkpoint.js";
import { benchCheckpoint } from "./models.js";
import { runSpeed } from "./engine-speed.js";
import type { MachineLimits } from "./machine.js";
import type { Report } from "./report.js";

const TEXT =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. " +
  "One day, she saw a big red ball under a tree. She asked her mom if she could play with it, and her mom said yes. " +
  "Lily and her friends played with the ball all day, and they were very happy.";

export async function runQuant(report: Report, outRoot: string, stories: string, reps: number, limits: MachineLimits, threads: number): Promise<void> {
  const sources: [string, string][] = [["stories260K", stories], ["110M", await benchCheckpoint(outRoot, "110M", "bf16")]];
  for (const [label, src] of sources) {
    const base = await loadModel(src, { threads });
    const tokens = Int32Array.from(base.tokenizer.encode(TEXT, true));
    try {
      for (const type of (label === "110M" ? ["q8_0", "q4_0", "q4_k"] : ["q8_0", "q4_0"]) as QuantizeDType[]) {
        const dir = join(outRoot, "models", `${label}-${type}`);
        if (!existsSync(join(dir, "model.safetensors"))) await quantizeCheckpoint({ model: src, out: dir, type });
        const q = await loadModel(dir, { threads });
        try {
          const a = await agreement(base, q, tokens);
          report.add({ name: `${label} ${type} mean KL vs ${base.config.torchDtype === "float32" ? "f32" : "bf16"} (${a.positions} tokens)`, value: a.meanKL, unit: "nats", config: { model: label, type, top1: a.top1, max_kl: a.maxKL } });
        } finally {
          q.dispose();
        }
        if (label === "110M")
          await runSpeed(report, { label: `110M ${type}`, dir, prefill: [512], decode: [{ tokens: 128, batch: 1 }, { tokens: 32, batch: 8 }], reps, bytesPerWeight: BLOCK_BYTES[type] / BLOCK_ELEMS[type] }, limits, threads);
      }
    } finally {
      base.dispose();
    }
  }
}
