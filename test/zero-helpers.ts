// What the data-parallel tests share (zero.test.ts on CPU ranks, cuda-zero.test.ts on
// emulated devices): random packed batches, one optimizer step the way runSft takes it, and
// the trainable parameters read back and compared.
import assert from "node:assert/strict";
import type { AdapterSpec, NativeModel, OptimizerStep, TrainBatch } from "../native/index.js";
import type { TrainingCalls } from "../engine/train/loop/loop.js";
import { assertClose, type Rng } from "./reference/check.js";

// eps well above fp32 noise: with 1e-8 an element whose gradient is ~0 moves by ±lr on the
// sign of its rounding error (Adam's m/√v), which no summation order can promise to match
export const OPT: OptimizerStep = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-4, weightDecay: 0.01, maxGradNorm: 1 };
export const LORA: AdapterSpec = { lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q", "k", "v", "o", "gate", "up", "down"], seed: 7 }, valueHead: false };

export type Mode = "lora" | "full";
export const adapterOf = (mode: Mode) => (mode === "lora" ? "a" : null);

/** Uneven sequences, so rank slices differ in size; a masked prefix like a prompt. */
export function randomBatch(rng: Rng, V: number, adapter: string | null): TrainBatch {
  const counts = Int32Array.from({ length: 5 }, () => 3 + rng.int(20));
  const T = counts.reduce((a, b) => a + b, 0);
  const tokens = Int32Array.from({ length: T }, () => rng.int(V));
  const targets = Int32Array.from({ length: T }, (_, t) => (t % 4 === 0 ? -1 : rng.int(V)));
  return { tokens, counts, targets, adapter, values: false, grad: true, checkpoint: false };
}

/** One optimizer step the way runSft takes it: two micro-batches, loss = −Σ logp / N over both. */
export async function trainStep(m: TrainingCalls, batches: TrainBatch[]): Promise<{ loss: number; gradNorm: number }> {
  let N = 0;
  for (const b of batches) for (const t of b.targets) if (t >= 0) N++;
  let loss = 0;
  for (const b of batches) {
    const { logp } = await m.trainForward(b);
    const dlogp = new Float32Array(logp.length);
    for (let t = 0; t < logp.length; t++)
      if (b.targets[t] >= 0) {
        dlogp[t] = -1 / N;
        loss -= logp[t] / N;
      }
    await m.trainBackward(dlogp, null);
  }
  return { loss, gradNorm: (await m.step(OPT)).gradNorm };
}

export function setTrainable(m: NativeModel, mode: Mode): void {
  if (mode === "lora") {
    m.addAdapter("a", LORA);
    m.setTrainable({ adapter: "a" });
  } else m.setTrainable({ base: true });
}

export function params(m: NativeModel, mode: Mode): Map<string, Float32Array> {
  const a = adapterOf(mode);
  return new Map(m.parameters(a).map((p) => [p.name, m.readParameter(a, p.name)]));
}

export function assertSameParams(got: Map<string, Float32Array>, want: Map<string, Float32Array>, what: string, atol = 2e-5, rtol = 1e-3): void {
  assert.deepEqual([...got.keys()], [...want.keys()], what);
  for (const [name, w] of want) assertClose(got.get(name)!, w, atol, rtol, `${what}: ${name}`);
}
