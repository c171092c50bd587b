// `npm run bench`: the machine's limits, then llama-bench-style engine speeds on a random
// ~110M Llama (f32 and bf16) and stories260K, then HTTP load; a table on stdout and JSON
// lines ({"name","value","unit","config"}) in --out.
import { parseArgs } from "node:util";
import { availableParallelism, cpus } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { MATMUL_PRECISIONS, native, type MatmulPrecision } from "../native/index.js";
import { Report } from "./report.js";
import { measureMachine } from "./machine.js";
import { benchCheckpoint } from "./models.js";
import { runSpeed } from "./engine-speed.js";
import { runHttp } from "./http-load.js";
import { runTrainSpeed } from "./train-speed.js";
import { runZero } from "./zero-speed.js";
import { runTpDecode } from "./tp-speed.js";
import { runGrammarSpeed } from "./grammar-speed.js";
import { runQuant } from "./quant-speed.js";
import { runPpoLatency } from "./ppo-latency.js";
import { narrowPlan, runVsLlamaCpp, vsPlan, type VsModelPlan } from "./vs-llama-cpp.js";
import { ISSUE_17_LOAD, runVsLlamaServer } from "./vs-llama-server.js";

const HELP = `Usage: npm run bench -- [--only machine,110m,batch,quant,stories,train,zero,tp,grammar,http,ppo-latency,vs-llama-cpp,vs-llama-server] [--out FILE] [--threads N] [--matmul-precision auto|highest|high|medium] [--quick] [--rounds N] [--vs-models 110M,1B] [--vs-types bf16,q4_0]

Examples:
  npm run bench                           # everything (about 5 minutes on 2 cores)
  npm run bench -- --only stories,http    # the small real model only
  npm run bench -- --quick                # fewer repetitions, shorter HTTP run
  npm run bench -- --only zero            # ZeRO memory per rank by stage, training DP=1 vs DP=2
  npm run bench -- --only batch           # 110M f32/bf16 decode at batch 1, 2, 4, 8, 16 (not in the default set)
  npm run bench -- --only quant           # 110M and stories260K as q8_0 / q4_0 / q4_k: agreement (mean KL) with the source, pp/tg
  HYBRIDCHAT_KERNELS=avx2 npm run bench   # force a lower CPU kernel variant (portable|avx2|avx512|avx512vnni|avx512bf16)
  npm run bench -- --only 110m --matmul-precision medium   # 110M pp/tg with x rounded to bf16 against bf16 weights (docs/serving.md)
  npm run bench -- --only tp              # decode and training at tensor parallel 1 vs 2 (not in the default set)
  npm run bench -- --only grammar         # structured outputs: the token mask's cost against a decode step at batch 8
  npm run bench -- --only ppo-latency     # user chat p50/p99 while a PPO job generates rollouts (not in the default set)
  npm run bench -- --only vs-llama-cpp    # the same 110M GGUFs (f32 … q4_k) in llama-bench and in hybridchat, alternating; needs bench/llama-cpp/build.sh (not in the default set)
  npm run bench -- --only vs-llama-cpp --vs-models 110M,1B   # also the 1B class (hidden 2048, 16 layers, GQA 32/8) in bf16/q8_0/q4_0: ~6.5 GB of files, made once (~20 min on 2 busy cores)
  npm run bench -- --only vs-llama-cpp --vs-models 1B-L4 --rounds 1   # the 1B's width at 4 layers, one round
  npm run bench -- --only vs-llama-server # hybridchat serve vs llama-server, 110M bf16 GGUF, 8 clients × 64 tokens; needs WITH_SERVER=1 bench/llama-cpp/build.sh

Options:
  --rounds N         alternating rounds of the vs-llama-cpp / vs-llama-server parts (default 3, 1 with --quick); medians
  --vs-models LIST   bench models of vs-llama-cpp: 110M (default), 1B, 1B-L<layers> (the 1B's width, fewer layers)
  --vs-types LIST    only these GGUF types of each model (f32, bf16, q8_0, q4_0, q4_k), batch curve included`;

const repo = resolve(fileURLToPath(import.meta.url), "..", "..", "..");
const { values } = parseArgs({
  options: {
    only: { type: "string" },
    out: { type: "string" },
    threads: { type: "string" },
    "matmul-precision": { type: "string", default: "auto" },
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    "vs-models": { type: "string", default: "110M" },
    "vs-types": { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const only = new Set((values.only ?? "machine,110m,stories,train,grammar,http").split(","));
const threads = values.threads ? Number(values.threads) : availableParallelism();
const matmulPrecision = values["matmul-precision"]! as MatmulPrecision | "auto";
if (matmulPrecision !== "auto" && !MATMUL_PRECISIONS.includes(matmulPrecision)) {
  console.error(`--matmul-precision must be one of auto, ${MATMUL_PRECISIONS.join(", ")}, got "${matmulPrecision}"`);
  process.exit(2);
}
const outRoot = join(repo, "bench", "out");
const report = new Report(values.out ?? join(outRoot, "results.jsonl"));
const reps = values.quick ? 1 : 3;
let vsModels: VsModelPlan[];
try {
  vsModels = values["vs-models"]!.split(",").map(vsPlan);
  if (values["vs-types"] !== undefined) vsModels = vsModels.map((p) => narrowPlan(p, values["vs-types"]!.split(",")));
} catch (e) {
  console.error((e as Error).message);
  process.exit(2);
}
const rounds = values.rounds === undefined ? reps : Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`--rounds must be a whole number ≥ 1, got "${values.rounds}"`);
  process.exit(2);
}
const stories = process.env.HYBRIDCHAT_TEST_MODEL ?? join(repo, "..", "shared", "models", "stories260K");

console.log(`hybridchat bench — ${cpus()[0]?.model ?? "cpu"}, ${threads} threads, kernels: ${native().cpuFeatures()} (this CPU runs: ${native().kernelVariants().join(", ")}), matmul precision ${matmulPrecision}`);
const limits = only.has("machine") || only.has("110m") || only.has("batch") || only.has("quant") || only.has("stories") || only.has("train") || only.has("tp")
  ? await measureMachine(report, threads)
  : { triadGBps: NaN, gemmGFlops: NaN, fmaGFlops: NaN, bf16GFlops: NaN };

if (only.has("110m")) {
  for (const dtype of ["f32", "bf16"] as const) {
    const dir = await benchCheckpoint(outRoot, "110M", dtype);
    await runSpeed(report, {
      label: `110M ${dtype}`,
      dir,
      prefill: [128, 512],
      decode: [{ tokens: 128, batch: 1 }, { tokens: 32, batch: 8 }],
      reps,
      matmulPrecision,
    }, limits, threads);
  }
}
if (only.has("batch")) {
  // the batch scaling curve of decode: each step reads the weights once for all rows
  for (const dtype of ["f32", "bf16"] as const) {
    const dir = await benchCheckpoint(outRoot, "110M", dtype);
    const decode = [1, 2, 4, 8, 16].map((batch) => ({ tokens: 32, batch }));
    await runSpeed(report, { label: `110M ${dtype}`, dir, prefill: [], decode, reps, matmulPrecision }, limits, threads);
  }
}
if (only.has("quant")) {
  await runQuant(report, outRoot, stories, reps, limits, threads);
}
if (only.has("stories")) {
  await runSpeed(report, { label: "stories260K", dir: stories, prefill: [128, 512], decode: [{ tokens: 128, batch: 1 }, { tokens: 128, batch: 8 }], reps: reps + 2 }, limits, threads);
}
if (only.has("train")) {
  // the PyTorch anchor's shapes: 110M at 4 × 256, stories260K at 32 × 256
  await runTrainSpeed(report, { label: "110M f32", dir: await benchCheckpoint(outRoot, "110M", "f32"), batch: 4, seqLen: 256, steps: reps }, limits, threads);
  await runTrainSpeed(report, { label: "stories260K", dir: stories, batch: 32, seqLen: 256, steps: reps + 2 }, limits, threads);
}
if (only.has("zero")) {
  // not in the default set: it loads the 110M model a dozen times over
  await runZero(report, { label: "stories260K", dir: stories, batch: 32, seqLen: 256, steps: reps + 2 }, threads);
  await runZero(report, { label: "110M f32", dir: await benchCheckpoint(outRoot, "110M", "f32"), batch: 4, seqLen: 256, steps: reps }, threads);
}
if (only.has("tp")) {
  // the same cores split between 1 and 2 tensor-parallel ranks (rank.h)
  const dir = await benchCheckpoint(outRoot, "110M", "f32");
  for (const tp of [1, 2]) {
    await runSpeed(report, { label: `110M f32 tp${tp}`, dir, prefill: [128], decode: [{ tokens: 32, batch: 1 }, { tokens: 16, batch: 8 }], reps, tensorParallel: tp }, limits, threads);
    await runTrainSpeed(report, { label: `110M f32 tp${tp}`, dir, batch: 2, seqLen: 128, steps: reps, tensorParallel: tp, modes: ["lora"] }, limits, threads);
  }
  await runTpDecode(report, { label: "110M f32", dir, tokens: 16, rounds: values.quick ? 3 : 7 });
}
if (only.has("grammar")) {
  // the issue's target: the mask costs at most 10 % of a decode step on the 110M model at batch 8
  for (const grammar of ["json", "tools-auto"] as const) {
    await runGrammarSpeed(report, { label: "110M f32", grammar, dir: await benchCheckpoint(outRoot, "110M", "f32"), batch: 8, steps: values.quick ? 16 : 48 }, threads);
    await runGrammarSpeed(report, { label: "stories260K", grammar, dir: stories, batch: 8, steps: values.quick ? 32 : 128 }, threads);
  }
}
if (only.has("http")) {
  await runHttp(report, { modelDir: stories, connections: 8, durationS: values.quick ? 5 : 20, maxTokens: 16, threads });
}
if (only.has("ppo-latency")) {
  await runPpoLatency(report, { modelDir: stories, users: 4, durationS: values.quick ? 5 : 20, threads });
}
if (only.has("vs-llama-cpp")) {
  await runVsLlamaCpp(report, { outRoot, rounds, threads, models: vsModels, matmulPrecision });
}
if (only.has("vs-llama-server")) {
  await runVsLlamaServer(report, { outRoot, rounds, threads, model: "110M", type: "bf16", load: ISSUE_17_LOAD });
}
console.log("\n" + report.table());
