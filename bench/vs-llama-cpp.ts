// `--only vs-llama-cpp`: hybridchat against llama.cpp on this machine, same weights, same
// threads. Each bench model (the 110M by default; `--vs-models 110M,1B` adds issue 17's 1B
// class) is written as an HF checkpoint (random init), converted by our own `hybridchat convert`
// code to one GGUF per type (bench/models.ts), and each file is run by both engines: llama-bench
// (pp512, tg128) and our `--model FILE.gguf` loader timed as engine-speed.ts times it, in
// alternating rounds (llama.cpp, then us, `rounds` times); medians. Then the decode batch scaling
// curve against llama-batched-bench (the 110M only: the 1B's would take most of an hour). llama.cpp
// comes from bench/llama-cpp/build.sh (the source node-llama-cpp ships); without that build the
// bench says so and skips. Each side runs its default KV cache: ours `--kv-dtype auto` (f32 for the
// f32 GGUF, bf16 for bf16, f16 for the block formats), llama.cpp's f16 (`-ctk/-ctv` left at their
// default); every row names both.
import type { GgufOutType } from "../engine/convert-gguf.js";
import { loadModel } from "../engine/model.js";
import { native, type MatmulPrecision } from "../native/index.js";
import { decodeOnce, prefillOnce } from "./engine-speed.js";
import { findLlamaCpp, llamaBatched, llamaBench, type BatchedShape, type LlamaCpp } from "./llama-cpp/tools.js";
import { benchGguf } from "./models.js";
import { cpuName, fmt, loadAverage, median, ratio } from "./sitting.js";
import type { Report } from "./report.js";

const PP = 512;
const TG = 128;
// each sequence: a 128-token prompt, then 32 tokens decoded and timed
const BATCHED: BatchedShape = { batches: [1, 2, 4, 8, 16], prompt: 128, tokens: 32 };
// llama-bench's and llama-batched-bench's KV cache type when -ctk/-ctv are not given
const LLAMA_KV = "f16";

/** What is run of one bench model: pp/tg per GGUF type, and the batch curve for `batchTypes`. */
export interface VsModelPlan {
  model: string;
  types: GgufOutType[];
  batchTypes: GgufOutType[];
}

/**
 * The plan of a `--vs-models` name: the 110M in every format we convert, the 1B class (issue 17's
 * rows: bf16, Q8_0, Q4_0; "1B-L<n>" is the same width at n layers) without the batch curve.
 */
export function vsPlan(model: string): VsModelPlan {
  if (model === "110M") return { model, types: ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"], batchTypes: ["bf16", "q4_0"] };
  if (/^1B(-L\d+)?$/.test(model)) return { model, types: ["bf16", "q8_0", "q4_0"], batchTypes: [] };
  throw new Error(`--vs-models: "${model}" is not 110M, 1B or 1B-L<layers>`);
}

/** `plan` restricted to `types` (`--vs-types`); a type the model is not run in is refused by name. */
export function narrowPlan(plan: VsModelPlan, types: readonly string[]): VsModelPlan {
  const bad = types.filter((t) => !plan.types.includes(t as GgufOutType));
  if (bad.length) throw new Error(`--vs-types: ${plan.model} runs ${plan.types.join(", ")}, not ${bad.join(", ")}`);
  const keep = (ts: GgufOutType[]) => ts.filter((t) => types.includes(t));
  return { model: plan.model, types: keep(plan.types), batchTypes: keep(plan.batchTypes) };
}

export interface VsLlamaCppOptions {
  outRoot: string;
  rounds: number;
  threads: number;
  models: VsModelPlan[];
  /** ours for bf16 weights (`--matmul-precision`; medium is llama.cpp's way: x rounded to bf16) */
  matmulPrecision: MatmulPrecision | "auto";
}

interface Sitting {
  ll: LlamaCpp;
  o: VsLlamaCppOptions;
  rounds: number;
  loads: string[];
}

/** A bf16 row names how its x met the weights (highest: fp32; medium: rounded to bf16, as llama.cpp). */
function precisionNote(type: GgufOutType, p: MatmulPrecision): string {
  return type === "bf16" ? `, x ${p}` : "";
}

/** pp512 / tg128 of one GGUF in both engines, alternating; one table row. */
async function ppTg(report: Report, s: Sitting, model: string, type: GgufOutType): Promise<string> {
  const { ll, o, rounds } = s;
  const file = await benchGguf(o.outRoot, model, type);
  const m = await loadModel(file, { threads: o.threads, kvBlocks: 1024, matmulPrecision: o.matmulPrecision });
  const ours = { pp: [] as number[], tg: [] as number[] };
  const theirs = { pp: [] as number[], tg: [] as number[] };
  const kv = m.native.device().kvDtype;
  try {
    await prefillOnce(m, 16); // warm-up: page in the weights, size the buffers
    for (let r = 0; r < rounds; r++) {
      const l = await llamaBench(ll, file, o.threads, PP, TG);
      theirs.pp.push(l.pp);
      theirs.tg.push(l.tg);
      // llama-bench warms up with one whole untimed prompt before it times, in every run; so do
      // we. Without it our first prompt after a llama-bench run takes ≈ 19k minor page faults
      // and runs 40 % slower on bf16 (RESULTS.md); a 16-token warm-up does not clear them.
      await prefillOnce(m, PP);
      ours.pp.push((PP * 1000) / (await prefillOnce(m, PP)));
      ours.tg.push((TG * 1000) / (await decodeOnce(m, TG, 1)));
    }
  } finally {
    m.dispose();
  }
  s.loads.push(loadAverage());
  const [hp, ht, lp, lt] = [median(ours.pp), median(ours.tg), median(theirs.pp), median(theirs.tg)];
  for (const [test, h, l] of [[`pp${PP}`, hp, lp], [`tg${TG}`, ht, lt]] as const)
    report.add({ name: `${model} ${type} ${test} vs llama.cpp`, value: h / l, unit: "×", config: { model, type, test, precision: m.matmulPrecision, kv_dtype: kv, llama_cpp_kv_dtype: LLAMA_KV, hybridchat_tps: h, llama_cpp_tps: l, llama_cpp: ll.version, rounds, threads: o.threads } });
  return `| ${model} ${type} (KV ${kv} / ${LLAMA_KV}${precisionNote(type, m.matmulPrecision)}) | ${fmt(hp)} | ${fmt(lp)} | ${ratio(hp, lp)} | ${fmt(ht)} | ${fmt(lt)} | ${ratio(ht, lt)} |`;
}

/** The decode batch curve of one GGUF against llama-batched-bench; one table row. */
async function batchCurve(report: Report, s: Sitting, model: string, type: GgufOutType): Promise<string> {
  const { ll, o, rounds } = s;
  const file = await benchGguf(o.outRoot, model, type);
  const m = await loadModel(file, { threads: o.threads, kvBlocks: 1024, matmulPrecision: o.matmulPrecision });
  const ours = new Map(BATCHED.batches.map((b) => [b, [] as number[]]));
  const theirs = new Map(BATCHED.batches.map((b) => [b, [] as number[]]));
  const kv = m.native.device().kvDtype;
  try {
    await prefillOnce(m, 16);
    for (let r = 0; r < rounds; r++) {
      for (const [b, tps] of await llamaBatched(ll, file, o.threads, BATCHED)) theirs.get(b)?.push(tps);
      // as in ppTg: one untimed pass after each llama.cpp run. Without it our batch 1, the first
      // decode after llama-batched-bench, took ≈ 6k minor page faults against ≈ 1.5k for the same
      // decode warm (RESULTS.md, "Decode at batch 1 on 110M")
      await decodeOnce(m, BATCHED.tokens, 1, BATCHED.prompt);
      for (const b of BATCHED.batches) ours.get(b)!.push((b * BATCHED.tokens * 1000) / (await decodeOnce(m, BATCHED.tokens, b, BATCHED.prompt)));
    }
  } finally {
    m.dispose();
  }
  s.loads.push(loadAverage());
  const cells = BATCHED.batches.map((b) => {
    const h = median(ours.get(b)!), l = median(theirs.get(b)!);
    report.add({ name: `${model} ${type} decode batch ${b} vs llama-batched-bench`, value: h / l, unit: "×", config: { model, type, batch: b, precision: m.matmulPrecision, kv_dtype: kv, llama_cpp_kv_dtype: LLAMA_KV, hybridchat_tps: h, llama_cpp_tps: l, llama_cpp: ll.version, rounds, threads: o.threads } });
    return `${fmt(h)} / ${fmt(l)} (${ratio(h, l)})`;
  });
  return `| ${model} ${type} (KV ${kv} / ${LLAMA_KV}${precisionNote(type, m.matmulPrecision)}) | ${cells.join(" | ")} |`;
}

export async function runVsLlamaCpp(report: Report, o: VsLlamaCppOptions): Promise<void> {
  const ll = findLlamaCpp(["llama-bench", "llama-batched-bench"]);
  if (!ll) {
    console.log("vs-llama-cpp: skipped — no llama.cpp build found; run bench/llama-cpp/build.sh first (it builds llama-bench and llama-batched-bench from node-llama-cpp's bundled source into ~/.cache/hybridchat)");
    return;
  }
  const s: Sitting = { ll, o, rounds: Math.max(1, o.rounds), loads: [loadAverage()] };
  console.log(`vs-llama-cpp: llama.cpp ${ll.version} (${ll.bin}); ${cpuName()}; ${o.threads} threads; models ${o.models.map((p) => p.model).join(", ")}; ${s.rounds} alternating rounds; matmul precision ${o.matmulPrecision}; load ${s.loads[0]}`);
  // one table per model, printed as soon as it is done: the 1B's rows take many minutes
  for (const plan of o.models) {
    const rows: string[] = [];
    for (const type of plan.types) rows.push(await ppTg(report, s, plan.model, type));
    const batchRows: string[] = [];
    for (const type of plan.batchTypes) batchRows.push(await batchCurve(report, s, plan.model, type));
    console.log(
      [
        "",
        `llama.cpp ${ll.version} vs hybridchat (kernels ${native().cpuFeatures()}, matmul precision ${o.matmulPrecision}) — ${cpuName()} — ${o.threads} threads, medians of ${s.rounds} alternating rounds, tokens/s; load average during the run: ${s.loads.join(" → ")}`,
        "",
        `| model, GGUF (KV cache: hybridchat / llama.cpp) | hybridchat pp${PP} | llama.cpp pp${PP} | ratio | hybridchat tg${TG} | llama.cpp tg${TG} | ratio |`,
        "| --- | --- | --- | --- | --- | --- | --- |",
        ...rows,
        ...(batchRows.length
          ? [
              "",
              `Decode aggregate tokens/s by batch (each sequence: ${BATCHED.prompt}-token prompt, then ${BATCHED.tokens} tokens timed), hybridchat / llama-batched-bench (ratio):`,
              "",
              `| model, GGUF (KV cache: hybridchat / llama.cpp) | ${BATCHED.batches.map((b) => `batch ${b}`).join(" | ")} |`,
              `| --- | ${BATCHED.batches.map(() => "---").join(" | ")} |`,
              ...batchRows,
            ]
          : []),
      ].join("\n"),
    );
  }
}
