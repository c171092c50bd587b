// One result line per measurement: printed as a table, appended as JSON lines.
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { native } from "../native/index.js";

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  config: Record<string, string | number | boolean>;
  /** what the value runs against (the roofline) and the fraction of it reached */
  limit?: { name: string; value: number; unit: string; fraction: number };
}

export class Report {
  readonly results: BenchResult[] = [];
  constructor(private readonly outFile: string) {
    mkdirSync(dirname(outFile), { recursive: true });
  }

  add(r: BenchResult): void {
    this.results.push(r);
    const line = {
      name: r.name,
      value: round(r.value),
      unit: r.unit,
      // every line says which CPU kernel variant produced it (HYBRIDCHAT_KERNELS may force one)
      config: { kernels: native().cpuFeatures(), ...r.config, ...(r.limit ? { limit: r.limit.name, limit_value: round(r.limit.value), fraction: round(r.limit.fraction) } : {}) },
    };
    appendFileSync(this.outFile, JSON.stringify(line) + "\n");
    const frac = r.limit ? `  (${(100 * r.limit.fraction).toFixed(1)} % of ${r.limit.name})` : "";
    process.stdout.write(`  ${r.name.padEnd(44)} ${fmt(r.value).padStart(10)} ${r.unit}${frac}\n`);
  }

  table(): string {
    const rows = this.results.map((r) =>
      `| ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.limit ? `${(100 * r.limit.fraction).toFixed(1)} % of ${r.limit.name} (${fmt(r.limit.value)} ${r.limit.unit})` : "—"} |`,
    );
    return ["| benchmark | result | against the limit |", "| --- | --- | --- |", ...rows].join("\n");
  }
}

function round(v: number): number {
  return Math.abs(v) < 0.01 ? Number(v.toPrecision(3)) : Math.round(v * 1000) / 1000;
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 0.01 || v === 0 ? v.toFixed(2) : v.toExponential(2);
}
