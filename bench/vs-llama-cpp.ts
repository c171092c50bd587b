// `--only vs-llama-cpp`: hybridchat against llama.cpp on this machine, same weights, same
// threads. The 110M model (random init) is written as an HF checkpoint, converted by our own
// `hybridchat convert` code to one GGUF per type, and each file is run by both engines: llama-bench
// (pp512, tg128) and our `--model FILE.gguf` loader timed as engine-speed.ts times it, in
// alternating rounds (llama.cpp, then us, `reps` times); medians. Then the decode batch scaling
// curve against llama-batched-bench. llama.cpp comes from bench/llama-cpp/build.sh (the source
// node-llama-cpp ships); without that build the bench says so and skips.
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { convertToGguf, type GgufOutType } from "../engine/convert-gguf.js";
import { loadModel } from "../engine/model.js";
import { native, type MatmulPrecision } from "../native/index.js";
import { benchCheckpoint } from "./models.js";
import { decodeOnce, prefillOnce } from "./engine-speed.js";
import { progressBar } from "./progress.js";
import type { Report } from "./report.js";

const run = promisify(execFile);
const PP = 512;
const TG = 128;
const BATCHES = [1, 2, 4, 8, 16];
const BATCH_PROMPT = 128; // llama-batched-bench -npp: each sequence's prompt before the timed decode
const BATCH_TG = 32;

interface LlamaCpp {
  bin: string;
  version: string; // "<node-llama-cpp's tag> <commit>", written by build.sh
}

/** The newest finished build.sh output under the cache dir, or null. */
export function findLlamaCpp(): LlamaCpp | null {
  const cache = process.env.HYBRIDCHAT_LLAMA_CPP_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "hybridchat");
  if (!existsSync(cache)) return null;
  const builds = readdirSync(cache)
    .filter((d) => d.startsWith("llama.cpp-"))
    .map((d) => join(cache, d, "build", "bin"))
    .filter((bin) => ["llama-bench", "llama-batched-bench", "VERSION"].every((f) => existsSync(join(bin, f))))
    .sort((a, b) => statSync(join(b, "VERSION")).mtimeMs - statSync(join(a, "VERSION")).mtimeMs);
  const bin = builds[0];
  return bin ? { bin, version: readFileSync(join(bin, "VERSION"), "utf8").trim() } : null;
}

/** "AMD EPYC, family 26 model 2, avx512f avx512bw …": what RESULTS.md must say of every figure. */
export function cpuName(): string {
  let info = "";
  try {
    info = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "unknown CPU (no /proc/cpuinfo)";
  }
  const field = (k: string) => new RegExp(`^${k}\\s*:\\s*(.*)$`, "m").exec(info)?.[1]?.trim() ?? "?";
  const flags = new Set(field("flags").split(/\s+/));
  const shown = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni"].filter((f) => flags.has(f));
  return `${field("model name")}, family ${field("cpu family")} model ${field("model")}, ${shown.join(" ")}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function loadAverage(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

async function jsonl(bin: string, args: string[]): Promise<Record<string, unknown>[]> {
  const { stdout } = await run(bin, args, { maxBuffer: 1 << 24 });
  return stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** One llama-bench round: pp512 and tg128 tokens/s (llama-bench does its own warm-up run). */
async function llamaBench(ll: LlamaCpp, gguf: string, threads: number): Promise<{ pp: number; tg: number }> {
  const rows = await jsonl(join(ll.bin, "llama-bench"), ["-m", gguf, "-t", String(threads), "-p", String(PP), "-n", String(TG), "-r", "1", "-o", "jsonl"]);
  const ts = (pp: number, tg: number) => {
    const r = rows.find((x) => x.n_prompt === pp && x.n_gen === tg);
    if (!r) throw new Error(`llama-bench printed no pp${pp}/tg${tg} row for ${gguf}`);
    return Number(r.avg_ts);
  };
  return { pp: ts(PP, 0), tg: ts(0, TG) };
}

/** One llama-batched-bench round: aggregate decode tokens/s (S_TG) per batch size. */
async function llamaBatched(ll: LlamaCpp, gguf: string, threads: number): Promise<Map<number, number>> {
  const rows = await jsonl(join(ll.bin, "llama-batched-bench"), [
    "-m", gguf, "-t", String(threads), "-c", String(Math.max(...BATCHES) * (BATCH_PROMPT + BATCH_TG) + 64),
    "-b", "2048", "-ub", "512", "-npp", String(BATCH_PROMPT), "-ntg", String(BATCH_TG), "-npl", BATCHES.join(","),
    "--output-format", "jsonl",
  ]);
  return new Map(rows.filter((r) => r.pl !== undefined).map((r) => [Number(r.pl), Number(r.speed_tg)]));
}

/** The GGUF of the 110M model in `type`, converted once by `hybridchat convert`'s code and reused. */
async function gguf(outRoot: string, type: GgufOutType): Promise<string> {
  const out = join(outRoot, "models", `110M-${type}.gguf`);
  if (existsSync(out)) return out;
  // quantized files keep the embedding/head in the source's type: bf16, as `--only quant` does
  const model = await benchCheckpoint(outRoot, "110M", type === "f32" ? "f32" : "bf16");
  const bar = progressBar(`convert 110M ${type}`);
  await convertToGguf({ model, out, type, onProgress: bar.update });
  bar.stop();
  return out;
}

const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const ratio = (a: number, b: number) => (a / b).toFixed(2);

export interface VsLlamaCppOptions {
  outRoot: string;
  reps: number;
  threads: number;
  types: GgufOutType[];
  batchTypes: GgufOutType[];
  /** ours for bf16 weights (`--matmul-precision`; medium is llama.cpp's way: x rounded to bf16) */
  matmulPrecision: MatmulPrecision;
}

export async function runVsLlamaCpp(report: Report, o: VsLlamaCppOptions): Promise<void> {
  const ll = findLlamaCpp();
  if (!ll) {
    console.log("vs-llama-cpp: skipped — no llama.cpp build found; run bench/llama-cpp/build.sh first (it builds llama-bench and llama-batched-bench from node-llama-cpp's bundled source into ~/.cache/hybridchat)");
    return;
  }
  const rounds = Math.max(1, o.reps);
  const loads = [loadAverage()];
  console.log(`vs-llama-cpp: llama.cpp ${ll.version} (${ll.bin}); ${cpuName()}; ${o.threads} threads; ${rounds} alternating rounds; matmul precision ${o.matmulPrecision}; load ${loads[0]}`);
  const rows: string[] = [];
  for (const type of o.types) {
    const file = await gguf(o.outRoot, type);
    const m = await loadModel(file, { threads: o.threads, kvBlocks: 1024, matmulPrecision: o.matmulPrecision });
    const ours = { pp: [] as number[], tg: [] as number[] };
    const theirs = { pp: [] as number[], tg: [] as number[] };
    try {
      await prefillOnce(m, 16); // warm-up: page in the weights, size the buffers
      for (let r = 0; r < rounds; r++) {
        const l = await llamaBench(ll, file, o.threads);
        theirs.pp.push(l.pp);
        theirs.tg.push(l.tg);
        ours.pp.push((PP * 1000) / (await prefillOnce(m, PP)));
        ours.tg.push((TG * 1000) / (await decodeOnce(m, TG, 1)));
      }
    } finally {
      m.dispose();
    }
    loads.push(loadAverage());
    const [hp, ht, lp, lt] = [median(ours.pp), median(ours.tg), median(theirs.pp), median(theirs.tg)];
    for (const [test, h, l] of [[`pp${PP}`, hp, lp], [`tg${TG}`, ht, lt]] as const)
      report.add({ name: `110M ${type} ${test} vs llama.cpp`, value: h / l, unit: "×", config: { model: "110M", type, test, precision: o.matmulPrecision, hybridchat_tps: h, llama_cpp_tps: l, llama_cpp: ll.version, rounds, threads: o.threads } });
    rows.push(`| 110M ${type} | ${fmt(hp)} | ${fmt(lp)} | ${ratio(hp, lp)} | ${fmt(ht)} | ${fmt(lt)} | ${ratio(ht, lt)} |`);
  }
  const batchRows: string[] = [];
  for (const type of o.batchTypes) {
    const file = await gguf(o.outRoot, type);
    const m = await loadModel(file, { threads: o.threads, kvBlocks: 1024, matmulPrecision: o.matmulPrecision });
    const ours = new Map(BATCHES.map((b) => [b, [] as number[]]));
    const theirs = new Map(BATCHES.map((b) => [b, [] as number[]]));
    try {
      await prefillOnce(m, 16);
      for (let r = 0; r < rounds; r++) {
        for (const [b, tps] of await llamaBatched(ll, file, o.threads)) theirs.get(b)?.push(tps);
        for (const b of BATCHES) ours.get(b)!.push((b * BATCH_TG * 1000) / (await decodeOnce(m, BATCH_TG, b, BATCH_PROMPT)));
      }
    } finally {
      m.dispose();
    }
    loads.push(loadAverage());
    const cells = BATCHES.map((b) => {
      const h = median(ours.get(b)!), l = median(theirs.get(b)!);
      report.add({ name: `110M ${type} decode batch ${b} vs llama-batched-bench`, value: h / l, unit: "×", config: { model: "110M", type, batch: b, precision: o.matmulPrecision, hybridchat_tps: h, llama_cpp_tps: l, llama_cpp: ll.version, rounds, threads: o.threads } });
      return `${fmt(h)} / ${fmt(l)} (${ratio(h, l)})`;
    });
    batchRows.push(`| 110M ${type} | ${cells.join(" | ")} |`);
  }
  console.log(
    [
      "",
      `llama.cpp ${ll.version} vs hybridchat (kernels ${native().cpuFeatures()}, matmul precision ${o.matmulPrecision}) — ${cpuName()} — ${o.threads} threads, medians of ${rounds} alternating rounds, tokens/s; load average during the run: ${loads.join(" → ")}`,
      "",
      `| model, GGUF | hybridchat pp${PP} | llama.cpp pp${PP} | ratio | hybridchat tg${TG} | llama.cpp tg${TG} | ratio |`,
      "| --- | --- | --- | --- | --- | --- | --- |",
      ...rows,
      ...(batchRows.length
        ? [
            "",
            `Decode aggregate tokens/s by batch (each sequence: ${BATCH_PROMPT}-token prompt, then ${BATCH_TG} tokens timed), hybridchat / llama-batched-bench (ratio):`,
            "",
            `| model, GGUF | ${BATCHES.map((b) => `batch ${b}`).join(" | ")} |`,
            `| --- | ${BATCHES.map(() => "---").join(" | ")} |`,
            ...batchRows,
          ]
        : []),
    ].join("\n"),
  );
}
