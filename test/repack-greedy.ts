// The child process of quant-repack.test.ts's model check (HYBRIDCHAT_REPACK is read once a
// process): loads a checkpoint, prefills three prompts in one step (the int8 GEMM's chunked
// tiles), then decodes them greedily together (three rows a step: one decode tile), and prints
// what the repacked and the original layout must agree on as one JSON line.
import { fileURLToPath } from "node:url";
import { loadModel } from "../engine/model.js";

export interface GreedyRun {
  repackedBytes: number;
  tokens: number[][];
  /** the first decode step's logits, all three rows */
  logits: number[];
}

export async function greedyRun(dir: string, steps: number): Promise<GreedyRun> {
  const model = await loadModel(dir, { threads: 2 });
  try {
    const V = model.config.vocabSize;
    const prompts = ["Once upon a time", "The little dog ran to the park and", "Lily saw a big red ball. She"].map((p) => model.tokenizer.encode(p, true));
    const argmax = (l: Float32Array, r: number): number => {
      let best = 0;
      for (let i = 1; i < V; i++) if (l[r * V + i]! > l[r * V + best]!) best = i;
      return best;
    };
    const ids = Int32Array.of(1, 2, 3);
    let logits = await model.native.forward({ seqIds: ids, tokens: Int32Array.from(prompts.flat()), counts: Int32Array.from(prompts.map((p) => p.length)), logits: "last" });
    const tokens: number[][] = [[], [], []];
    let first: number[] = [];
    for (let s = 0; s < steps; s++) {
      const next = [0, 1, 2].map((r) => argmax(logits, r));
      next.forEach((t, r) => tokens[r]!.push(t));
      logits = await model.native.forward({ seqIds: ids, tokens: Int32Array.from(next), counts: Int32Array.of(1, 1, 1), logits: "last" });
      if (s === 0) first = Array.from(logits);
    }
    return { repackedBytes: model.native.device().repackedBytes ?? 0, tokens, logits: first };
  } finally {
    model.dispose();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url))
  console.log(JSON.stringify(await greedyRun(process.argv[2]!, Number(process.argv[3] ?? 24))));
