// The cost of structured outputs: a grammar's token mask (xgrammar's bitmask, then the
// sampler's -inf over forbidden logits, then advancing the matcher) per decode step at batch
// 8, against the decode step itself. Timed serially here; the engine computes masks while
// the forward step runs, so this is an upper bound on what a step waits for.
import { loadModel } from "../engine/model.js";
import { Grammars, type GrammarSpec } from "../engine/grammar/grammars.js";
import { applyMask, argmax } from "../engine/sampling.js";
import type { TokenConstraint } from "../engine/types.js";
import type { Report } from "./report.js";

export interface GrammarCase {
  label: string;
  /** "json": a response_format schema; "tools-auto": tool_choice auto's grammar (free text, tagged calls) */
  grammar: "json" | "tools-auto";
  dir: string;
  batch: number;
  steps: number;
}

/** a schema with strings, numbers, enums, arrays and nesting: masks of every kind of state */
const SPEC: GrammarSpec = {
  kind: "json_schema",
  schema: {
    type: "object",
    properties: {
      name: { type: "string" },
      age: { type: "integer" },
      tags: { type: "array", items: { enum: ["a", "b", "c"] } },
      address: { type: "object", properties: { city: { type: "string" }, zip: { type: "number" } }, required: ["city", "zip"], additionalProperties: false },
      ok: { type: "boolean" },
    },
    required: ["name", "age", "tags", "address", "ok"],
    additionalProperties: false,
  },
};

/** tool_choice auto in the <tool_call> family: free text, and a valid call of SPEC's shape in each block */
const TOOLS_AUTO: GrammarSpec = { kind: "tagged_json", trigger: "<tool_call>", begin: "<tool_call>\n", end: "\n</tool_call>", schema: SPEC.kind === "json_schema" ? SPEC.schema : {}, once: false };

export async function runGrammarSpeed(report: Report, c: GrammarCase, threads: number): Promise<void> {
  const spec = c.grammar === "json" ? SPEC : TOOLS_AUTO;
  const m = await loadModel(c.dir, { threads, kvBlocks: 1024 });
  try {
    const V = m.config.vocabSize;
    const grammars = new Grammars(m.tokenizer, V);
    let t0 = performance.now();
    await grammars.compiled(spec);
    const compileMs = performance.now() - t0;
    const constraints: TokenConstraint[] = [];
    for (let b = 0; b < c.batch; b++) constraints.push(await grammars.constraint(spec));
    const seqIds = Int32Array.from({ length: c.batch }, (_, b) => 1_000_000 + b);
    const counts = new Int32Array(c.batch).fill(1);
    let tokens = Int32Array.from({ length: c.batch }, (_, b) => 1 + b);
    let logits = await m.native.forward({ seqIds, tokens, counts, logits: "last" });
    let forwardMs = 0;
    let maskMs = 0;
    const eos = new Set(m.tokenizer.eosIds);
    for (let s = 0; s < c.steps; s++) {
      t0 = performance.now();
      const next = new Int32Array(c.batch);
      for (let b = 0; b < c.batch; b++) {
        const row = logits.subarray(b * V, (b + 1) * V);
        applyMask(row, V, await constraints[b]!.nextMask());
        const tok = argmax(row, V);
        if (!constraints[b]!.accept(tok)) throw new Error(`the grammar refused token ${tok} its mask allowed`);
        // a finished object: start the next one (the forward below still gets a real token)
        if (eos.has(tok)) {
          constraints[b]!.dispose();
          constraints[b] = await grammars.constraint(spec);
        }
        next[b] = eos.has(tok) ? 1 : tok;
      }
      maskMs += performance.now() - t0;
      tokens = next;
      t0 = performance.now();
      logits = await m.native.forward({ seqIds, tokens, counts, logits: "last" });
      forwardMs += performance.now() - t0;
    }
    for (const k of constraints) k.dispose();
    for (const id of seqIds) m.native.freeSeq(id);
    const perStep = maskMs / c.steps;
    report.add({
      name: `${c.label} ${c.grammar === "json" ? "grammar" : "tools auto grammar"} mask batch ${c.batch}`,
      value: perStep,
      unit: "ms/step",
      config: { model: c.label, threads, batch: c.batch, steps: c.steps, vocab: V, decode_ms_per_step: Math.round((forwardMs / c.steps) * 100) / 100, compile_ms: Math.round(compileMs) },
      limit: { name: "decode step", value: forwardMs / c.steps, unit: "ms", fraction: maskMs / forwardMs },
    });
  } finally {
    m.dispose();
  }
}
