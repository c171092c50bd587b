// What every side-by-side table must say of the sitting it came from: the CPU, the load on this
// shared machine, and the medians of alternating rounds.
import { readFileSync } from "node:fs";

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

/** The 1-, 5- and 15-minute load averages, "1.46 1.25 1.37" (other work on the same cores skews every figure). */
export function loadAverage(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The q-quantile (0..1) by nearest rank: p99 of 32 requests is the slowest one, not an interpolation. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** A table cell: 3 significant figures or so. */
export const fmt = (v: number): string => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
export const ratio = (a: number, b: number): string => (a / b).toFixed(2);
