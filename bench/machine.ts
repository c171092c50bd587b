// The machine's own limits, measured the same way every run: the roofline every
// other number is a fraction of.
import { native } from "../native/index.js";
import type { Report } from "./report.js";

export interface MachineLimits {
  triadGBps: number;
  gemmGFlops: number;
  /** the instruction ceilings our GEMMs are fractions of (0 where the CPU lacks the instruction) */
  fmaGFlops: number;
  bf16GFlops: number;
}

export async function measureMachine(report: Report, threads: number): Promise<MachineLimits> {
  const n = native();
  const triadGBps = await n.triad(256, threads, 5);
  report.add({ name: "memory bandwidth (triad, 3×256 MiB)", value: triadGBps, unit: "GB/s", config: { threads } });
  const gemmGFlops = await n.gemmPeak(2048, threads, 3);
  report.add({ name: "fp32 GEMM peak (hybridchat, N=2048)", value: gemmGFlops, unit: "GFLOP/s", config: { threads } });
  const fmaGFlops = await n.instrPeak("fma", threads, 5);
  report.add({ name: "fp32 peak (vfmadd231ps zmm)", value: fmaGFlops, unit: "GFLOP/s", config: { threads } });
  const bf16GFlops = await n.instrPeak("dpbf16", threads, 5);
  report.add({ name: "bf16 peak (vdpbf16ps zmm)", value: bf16GFlops, unit: "GFLOP/s", config: { threads } });
  return { triadGBps, gemmGFlops, fmaGFlops, bf16GFlops };
}
