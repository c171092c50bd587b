// Decode speed of one 110M model loaded three ways — 1 thread, 2 threads in one rank, and
// 2 tensor-parallel ranks of 1 thread — measured in interleaved rounds, so a change in the
// machine's load hits all three alike (a shared machine drifts more within one run than
// the configurations differ). The median round of each is reported.
import { loadModel, type LoadedModel } from "../engine/model.js";
import type { Report } from "./report.js";

export interface TpDecodeCase {
  label: string;
  dir: string;
  tokens: number;
  rounds: number;
}

const CONFIGS = [
  { threads: 1, tp: 1 },
  { threads: 2, tp: 1 },
  { threads: 2, tp: 2 },
] as const;

let nextSeq = 1;

async function decodeTokS(m: LoadedModel, steps: number): Promise<number> {
  const V = m.config.vocabSize;
  const id = nextSeq++;
  const one = (t: number) => m.native.forward({ seqIds: Int32Array.of(id), tokens: Int32Array.of(t), counts: Int32Array.of(1), logits: "last" });
  let logits = await one(1);
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i]! > logits[best]!) best = i;
    logits = await one(best);
  }
  const ms = performance.now() - t0;
  m.native.freeSeq(id);
  return (steps * 1000) / ms;
}

export async function runTpDecode(report: Report, c: TpDecodeCase): Promise<void> {
  const models = await Promise.all(CONFIGS.map((k) => loadModel(c.dir, { threads: k.threads, tensorParallel: k.tp, kvBlocks: 64 })));
  try {
    for (const m of models) await decodeTokS(m, 2); // warm-up: weights paged in, buffers sized
    const rounds: number[][] = CONFIGS.map(() => []);
    for (let r = 0; r < c.rounds; r++) for (const [i, m] of models.entries()) rounds[i]!.push(await decodeTokS(m, c.tokens));
    for (const [i, k] of CONFIGS.entries()) {
      const sorted = [...rounds[i]!].sort((a, b) => a - b);
      report.add({
        name: `${c.label} decode tg${c.tokens} threads ${k.threads} tp ${k.tp} (interleaved)`,
        value: sorted[Math.floor(sorted.length / 2)]!,
        unit: "tok/s",
        config: { model: c.label, threads: k.threads, tp: k.tp, tokens: c.tokens, rounds: c.rounds, min: Math.round(sorted[0]! * 10) / 10, max: Math.round(sorted.at(-1)! * 10) / 10 },
      });
    }
  } finally {
    for (const m of models) m.dispose();
  }
}
