// Training throughput on the native boundary, the way the PyTorch anchor measures it:
// forward + backward + AdamW over B sequences of T tokens (one optimizer step per batch),
// for full fine-tuning and for LoRA (rank 8 on q,k,v,o,gate,up,down). FLOPs per trained
// token are counted as 6 × linear-layer parameters (forward 2, backward 4, as the usual
// "6N" rule does; attention and head excluded), against our GEMM peak.
import { loadModel, type LoadedModel } from "../engine/model.js";
import type { LinearName, TrainableSet } from "../native/index.js";
import type { MachineLimits } from "./machine.js";
import type { Report } from "./report.js";

export interface TrainSpeedCase {
  label: string;
  dir: string;
  batch: number;
  seqLen: number;
  steps: number;
}

const ALL_LINEARS: LinearName[] = ["q", "k", "v", "o", "gate", "up", "down"];

function linearParams(m: LoadedModel): number {
  const c = m.config;
  const attn = c.hiddenSize * c.headDim * (2 * c.numHeads + 2 * c.numKvHeads);
  return c.numLayers * (attn + 3 * c.hiddenSize * c.intermediateSize);
}

async function oneStep(m: LoadedModel, c: TrainSpeedCase, adapter: string | null, step: number): Promise<number> {
  const T = c.batch * c.seqLen;
  const V = m.config.vocabSize;
  const tokens = new Int32Array(T);
  for (let i = 0; i < T; i++) tokens[i] = 3 + ((i * 7919 + step * 104729) % (V - 3));
  const targets = new Int32Array(T);
  for (let i = 0; i < T; i++) targets[i] = (i + 1) % c.seqLen === 0 ? -1 : tokens[i + 1]!;
  const counts = new Int32Array(c.batch).fill(c.seqLen);
  const t0 = performance.now();
  const { logp } = await m.native.trainForward({ tokens, counts, targets, adapter, values: false, grad: true, checkpoint: false });
  const n = targets.reduce((s, t) => s + (t >= 0 ? 1 : 0), 0);
  await m.native.trainBackward(new Float32Array(logp.length).fill(-1 / n), null);
  await m.native.step({ lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 });
  return performance.now() - t0;
}

export async function runTrainSpeed(report: Report, c: TrainSpeedCase, limits: MachineLimits, threads: number): Promise<void> {
  for (const mode of ["lora", "full"] as const) {
    const m = await loadModel(c.dir, { threads, kvBlocks: 16 });
    try {
      let adapter: string | null = null;
      let trainable: TrainableSet = { base: true };
      if (mode === "lora") {
        adapter = "bench";
        m.native.addAdapter(adapter, { lora: { rank: 8, alpha: 16, dropout: 0, targets: ALL_LINEARS, seed: 0 }, valueHead: false });
        trainable = { adapter };
      }
      m.native.setTrainable(trainable);
      await oneStep(m, c, adapter, 0); // warm-up: buffers sized, full FT materialised
      let best = Infinity;
      for (let s = 1; s <= c.steps; s++) best = Math.min(best, await oneStep(m, c, adapter, s));
      const tps = (c.batch * c.seqLen * 1000) / best;
      // LoRA still runs the frozen weights' forward and their input gradients: 2 + 2 of the 6
      const flopsPerToken = (mode === "full" ? 6 : 4) * linearParams(m);
      report.add({
        name: `${c.label} train ${mode} ${c.batch}×${c.seqLen}`,
        value: tps,
        unit: "tok/s",
        config: { model: c.label, mode, batch: c.batch, seq_len: c.seqLen, threads, gflops: Math.round((tps * flopsPerToken) / 1e8) / 10 },
        limit: { name: "GEMM peak", value: limits.gemmGFlops, unit: "GFLOP/s", fraction: (tps * flopsPerToken) / 1e9 / limits.gemmGFlops },
      });
    } finally {
      m.dispose();
    }
  }
}
