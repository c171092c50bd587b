// Shared by the SFT tests: greedy generation through the native forward, and a data set of
// stories260K's own stories with the girl's name changed.
import { writeFileSync } from "node:fs";
import type { LoadedModel } from "../engine/model.js";

let nextSeq = 1000;

/** Greedy tokens after `prompt` (prefill, then one token per forward), stopping at EOS. */
export async function greedyText(model: LoadedModel, prompt: string, steps: number, adapter: string | null = null): Promise<string> {
  const V = model.config.vocabSize;
  const ids = model.tokenizer.encode(prompt, true);
  const seq = nextSeq++;
  const out: number[] = [];
  const adapters = adapter === null ? undefined : [adapter];
  let logits = await model.native.forward({ seqIds: Int32Array.of(seq), tokens: Int32Array.from(ids), counts: Int32Array.of(ids.length), logits: "last", adapters });
  try {
    for (let i = 0; i < steps; i++) {
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
      if (model.tokenizer.eosIds.includes(best)) break;
      out.push(best);
      if (i + 1 < steps) logits = await model.native.forward({ seqIds: Int32Array.of(seq), tokens: Int32Array.of(best), counts: Int32Array.of(1), logits: "last", adapters });
    }
  } finally {
    model.native.freeSeq(seq);
  }
  const d = model.tokenizer.detokenizer(ids);
  return out.map((id) => d.push(id)).join("") + d.flush();
}

/** Story openings that end where the girl's name comes. */
export const OPENINGS = [
  "Once upon a time, there was a little girl named",
  "One day, a little girl named",
  "There was a little girl named",
  "Once upon a time, there was a girl named",
  "Once upon a time, in a small house, there lived a little girl named",
  "Once upon a time, there was a happy little girl named",
  "One sunny day, a girl named",
  "Once there was a kind little girl named",
  "In a small town, there was a little girl named",
  "Once upon a time, a little girl named",
  "Once upon a time, there was a sweet girl named",
  "One morning, a little girl named",
  "Once upon a time, there was a little girl called",
  "A little girl named",
  "Once upon a time, there was a curious little girl named",
  "Once upon a time, there was a little girl. Her name was",
  "Long ago, there was a little girl named",
  "Once upon a time, there was a smart little girl named",
  "One day, a happy girl named",
  "Once upon a time, there was a brave girl named",
  "Once upon a time, in a big forest, there was a little girl named",
  "Once upon a time, there was a little girl who was named",
  "Once upon a time, there was a pretty girl named",
  "Every day, a little girl named",
  "Once upon a time, there was a tiny girl named",
  "Once upon a time, there was a shy little girl named",
  "One day, a small girl named",
  "Once upon a time, there was a nice girl named",
  "Once upon a time, there was a young girl named",
  "Once upon a time, there was a funny little girl named",
  "Once upon a time, there was a good little girl named",
  "At the park, a little girl named",
];

/** The held-out opening the trained model is asked to complete (not in OPENINGS). */
export const HELD_OUT = "Once upon a time, there lived a little girl named";
export const NEW_NAME = "Zara";

/**
 * {"prompt","completion"} lines: each opening, then the base model's own greedy story after
 * "Lily", with every "Lily" turned into the new name.
 */
export async function nameChangeData(model: LoadedModel, file: string, count = OPENINGS.length): Promise<void> {
  const lines: string[] = [];
  for (const opening of OPENINGS.slice(0, count)) {
    const story = await greedyText(model, `${opening} Lily`, 24);
    const cut = story.lastIndexOf(".");
    const completion = ` Lily${cut > 0 ? story.slice(0, cut + 1) : story}`.replaceAll("Lily", NEW_NAME);
    lines.push(JSON.stringify({ prompt: opening, completion }));
  }
  writeFileSync(file, lines.join("\n") + "\n");
}
