// The machine's own limits, measured the same way every run: the roofline every
// other number is a fraction of.
import { native } from "../native/index.js";
import type { Report } from "./report.js";

export interface MachineLimits {
  triadGBps: number;
  gemmGFlops: number;
}

export async function measureMachine(report: Report, threads: number): Promise<MachineLimits> {
  const n = native();
  const triadGBps = await n.triad(256, threads, 5);
  report.add({ name: "memory bandwidth (triad, 3×256 MiB)", value: triadGBps, unit: "GB/s", config: { threads } });
  const gemmGFlops = await n.gemmPeak(2048, threads, 3);
  report.add({ name: "fp32 GEMM peak (hybridchat, N=2048)", value: gemmGFlops, unit: "GFLOP/s", config: { threads } });
  return { triadGBps, gemmGFlops };
}
