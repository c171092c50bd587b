// Data parallelism and ZeRO on this machine: per-rank training memory by ZeRO stage at DP=2
// (the engine's own accounting, after a step, i.e. between steps) and training throughput of
// one rank with every thread vs two ranks with half the threads each, on the same global batch.
import { loadModel, type LoadedModel } from "../engine/model.js";
import { addAdapter, LINEAR_NAMES } from "../engine/peft.js";
import { DataParallelModel } from "../engine/train/loop/data-parallel.js";
import type { TrainingCalls } from "../engine/train/loop/loop.js";
import type { ZeroStage } from "../native/index.js";
import type { Report } from "./report.js";
import { LORA_RANK } from "./train-speed.js";

export interface ZeroCase {
  label: string;
  dir: string;
  batch: number;
  seqLen: number;
  steps: number;
}

type Mode = "lora" | "full";
const MiB = 1024 * 1024;

async function ranksOf(dir: string, n: number, threads: number, mode: Mode): Promise<LoadedModel[]> {
  const ms = await Promise.all(Array.from({ length: n }, () => loadModel(dir, { threads, kvBlocks: 4 })));
  for (const m of ms) {
    if (mode === "lora") {
      addAdapter(m.native, "bench", { lora: { rank: LORA_RANK, alpha: 2 * LORA_RANK, dropout: 0, targets: [...LINEAR_NAMES], seed: 0 }, valueHead: false });
      m.native.setTrainable({ adapter: "bench" });
    } else m.native.setTrainable({ base: true });
  }
  return ms;
}

/** One optimizer step over batch × seqLen tokens; milliseconds. */
async function oneStep(m: TrainingCalls, V: number, c: ZeroCase, adapter: string | null, step: number): Promise<number> {
  const T = c.batch * c.seqLen;
  const tokens = new Int32Array(T);
  for (let i = 0; i < T; i++) tokens[i] = 3 + ((i * 7919 + step * 104729) % (V - 3));
  const targets = new Int32Array(T);
  for (let i = 0; i < T; i++) targets[i] = (i + 1) % c.seqLen === 0 ? -1 : tokens[i + 1]!;
  const t0 = performance.now();
  const { logp } = await m.trainForward({ tokens, counts: new Int32Array(c.batch).fill(c.seqLen), targets, adapter, values: false, grad: true, checkpoint: false });
  const n = targets.reduce((s, t) => s + (t >= 0 ? 1 : 0), 0);
  await m.trainBackward(new Float32Array(logp.length).fill(-1 / n), null);
  await m.step({ lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 });
  return performance.now() - t0;
}

async function bestOf(m: TrainingCalls, V: number, c: ZeroCase, adapter: string | null): Promise<number> {
  await oneStep(m, V, c, adapter, 0); // warm-up: buffers sized, full fine-tuning materialised
  let best = Infinity;
  for (let s = 1; s <= c.steps; s++) best = Math.min(best, await oneStep(m, V, c, adapter, s));
  return best;
}

export async function runZero(report: Report, c: ZeroCase, threads: number): Promise<void> {
  for (const mode of ["lora", "full"] as Mode[]) {
    const adapter = mode === "lora" ? "bench" : null;
    const tag = `${c.label} ${mode === "lora" ? `LoRA r${LORA_RANK}` : "full"}`;
    // memory per rank by stage, DP=2
    for (const stage of [0, 1, 2, 3] as ZeroStage[]) {
      const ranks = await ranksOf(c.dir, 2, Math.max(1, threads >> 1), mode);
      try {
        const dp = new DataParallelModel(ranks.map((r) => r.native), stage);
        await oneStep(dp, ranks[0].config.vocabSize, { ...c, batch: 2, seqLen: Math.min(c.seqLen, 64) }, adapter, 0);
        const m = dp.group.trainingMemory()[0];
        for (const [what, bytes] of [["params", m.params], ["grads", m.grads], ["optimizer", m.optimizer]] as const)
          report.add({ name: `${tag} ZeRO-${stage} DP=2 ${what}/rank`, value: bytes / MiB, unit: "MiB", config: { model: c.label, mode, stage, ranks: 2, what } });
      } finally {
        for (const r of ranks) r.dispose();
      }
    }
    // throughput: DP=1 on every thread vs DP=2 (ZeRO-2) on half each
    for (const n of [1, 2]) {
      const ranks = await ranksOf(c.dir, n, Math.max(1, Math.floor(threads / n)), mode);
      try {
        const calls: TrainingCalls = n === 1 ? ranks[0].native : new DataParallelModel(ranks.map((r) => r.native), 2);
        const ms = await bestOf(calls, ranks[0].config.vocabSize, c, adapter);
        report.add({
          name: `${tag} train DP=${n}${n > 1 ? " ZeRO-2" : ""} ${c.batch}×${c.seqLen}`,
          value: (c.batch * c.seqLen * 1000) / ms,
          unit: "tok/s",
          config: { model: c.label, mode, ranks: n, threads_per_rank: Math.max(1, Math.floor(threads / n)), batch: c.batch, seq_len: c.seqLen },
        });
      } finally {
        for (const r of ranks) r.dispose();
      }
    }
  }
}
