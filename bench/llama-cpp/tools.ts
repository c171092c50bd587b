// llama.cpp's own benchmark tools, as bench/llama-cpp/build.sh leaves them in the cache dir:
// finding a finished build, and one round of llama-bench / llama-batched-bench as tokens/s.
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface LlamaCpp {
  bin: string;
  version: string; // "<node-llama-cpp's tag> <commit>", written by build.sh
}

export type LlamaTool = "llama-bench" | "llama-batched-bench" | "llama-server";

/** The newest finished build.sh output under the cache dir holding every tool in `tools`, or null. */
export function findLlamaCpp(tools: readonly LlamaTool[]): LlamaCpp | null {
  const cache = process.env.HYBRIDCHAT_LLAMA_CPP_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "hybridchat");
  if (!existsSync(cache)) return null;
  const builds = readdirSync(cache)
    .filter((d) => d.startsWith("llama.cpp-"))
    .map((d) => join(cache, d, "build", "bin"))
    .filter((bin) => [...tools, "VERSION"].every((f) => existsSync(join(bin, f))))
    .sort((a, b) => statSync(join(b, "VERSION")).mtimeMs - statSync(join(a, "VERSION")).mtimeMs);
  const bin = builds[0];
  return bin ? { bin, version: readFileSync(join(bin, "VERSION"), "utf8").trim() } : null;
}

async function jsonl(bin: string, args: string[]): Promise<Record<string, unknown>[]> {
  const { stdout } = await run(bin, args, { maxBuffer: 1 << 24 });
  return stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** One llama-bench round: pp`pp` and tg`tg` tokens/s (llama-bench does its own warm-up run). */
export async function llamaBench(ll: LlamaCpp, gguf: string, threads: number, pp: number, tg: number): Promise<{ pp: number; tg: number }> {
  const rows = await jsonl(join(ll.bin, "llama-bench"), ["-m", gguf, "-t", String(threads), "-p", String(pp), "-n", String(tg), "-r", "1", "-o", "jsonl"]);
  const ts = (p: number, g: number) => {
    const r = rows.find((x) => x.n_prompt === p && x.n_gen === g);
    if (!r) throw new Error(`llama-bench printed no pp${p}/tg${g} row for ${gguf}`);
    return Number(r.avg_ts);
  };
  return { pp: ts(pp, 0), tg: ts(0, tg) };
}

export interface BatchedShape {
  batches: readonly number[];
  /** -npp: each sequence's prompt before the timed decode */
  prompt: number;
  /** -ntg: tokens decoded per sequence, timed */
  tokens: number;
}

/** One llama-batched-bench round: aggregate decode tokens/s (S_TG) per batch size. */
export async function llamaBatched(ll: LlamaCpp, gguf: string, threads: number, s: BatchedShape): Promise<Map<number, number>> {
  const rows = await jsonl(join(ll.bin, "llama-batched-bench"), [
    "-m", gguf, "-t", String(threads), "-c", String(Math.max(...s.batches) * (s.prompt + s.tokens) + 64),
    "-b", "2048", "-ub", "512", "-npp", String(s.prompt), "-ntg", String(s.tokens), "-npl", s.batches.join(","),
    "--output-format", "jsonl",
  ]);
  return new Map(rows.filter((r) => r.pl !== undefined).map((r) => [Number(r.pl), Number(r.speed_tg)]));
}
