// One training-throughput measurement in a process of its own, so that its peak resident
// memory (getrusage maxrss) is this mode's alone. Run by bench/train-speed.ts:
//   node dist/bench/train-one.js DIR lora|full BATCH SEQ STEPS THREADS [TENSOR_PARALLEL]
// prints one JSON line (TrainOneResult).
import { loadModel, type LoadedModel } from "../engine/model.js";
import { addAdapter, LINEAR_NAMES } from "../engine/peft.js";
import type { TrainableSet } from "../native/index.js";
import { LORA_RANK, type TrainOneResult } from "./train-speed.js";

async function oneStep(m: LoadedModel, batch: number, seqLen: number, adapter: string | null, step: number): Promise<number> {
  const T = batch * seqLen;
  const V = m.config.vocabSize;
  const tokens = new Int32Array(T);
  for (let i = 0; i < T; i++) tokens[i] = 3 + ((i * 7919 + step * 104729) % (V - 3));
  const targets = new Int32Array(T);
  for (let i = 0; i < T; i++) targets[i] = (i + 1) % seqLen === 0 ? -1 : tokens[i + 1]!;
  const counts = new Int32Array(batch).fill(seqLen);
  const t0 = performance.now();
  const { logp } = await m.native.trainForward({ tokens, counts, targets, adapter, values: false, grad: true, checkpoint: false });
  const n = targets.reduce((s, t) => s + (t >= 0 ? 1 : 0), 0);
  await m.native.trainBackward(new Float32Array(logp.length).fill(-1 / n), null);
  await m.native.step({ lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 });
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const [dir, mode, batchS, seqS, stepsS, threadsS, tpS] = process.argv.slice(2);
  if (!dir || (mode !== "lora" && mode !== "full")) throw new Error("usage: train-one DIR lora|full BATCH SEQ STEPS THREADS");
  const batch = Number(batchS), seqLen = Number(seqS), steps = Number(stepsS);
  const m = await loadModel(dir, { threads: Number(threadsS), kvBlocks: 16, tensorParallel: Number(tpS ?? 1) });
  const baselineRssBytes = process.memoryUsage().rss;
  let adapter: string | null = null;
  let trainable: TrainableSet = { base: true };
  if (mode === "lora") {
    adapter = "bench";
    addAdapter(m.native, adapter, { lora: { rank: LORA_RANK, alpha: 2 * LORA_RANK, dropout: 0, targets: [...LINEAR_NAMES], seed: 0 }, valueHead: false });
    trainable = { adapter };
  }
  m.native.setTrainable(trainable);
  const params = m.native
    .parameters(adapter)
    .reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
  await oneStep(m, batch, seqLen, adapter, 0); // warm-up: buffers sized, full FT materialised
  let best = Infinity;
  for (let s = 1; s <= steps; s++) best = Math.min(best, await oneStep(m, batch, seqLen, adapter, s));
  const result: TrainOneResult = {
    tokensPerS: (batch * seqLen * 1000) / best,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    baselineRssBytes,
    params,
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  m.dispose();
}

await main();
