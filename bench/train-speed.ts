// Training throughput on the native boundary, the way the PyTorch anchor measures it:
// forward + backward + AdamW over B sequences of T tokens (one optimizer step per batch),
// full fine-tuning and LoRA (rank 16 on q,k,v,o,gate,up,down), each in a process of its
// own (bench/train-one.ts) so its peak memory is its own. FLOPs per trained token: 6 ×
// linear-layer parameters for full fine-tuning (forward 2, backward 4: the usual "6N"),
// 4 × for LoRA (the frozen weights need no weight gradient); attention and head excluded.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { MachineLimits } from "./machine.js";
import type { Report } from "./report.js";

export const LORA_RANK = 16;

/** What bench/train-one.ts prints. */
export interface TrainOneResult {
  tokensPerS: number;
  /** peak resident set of the whole process */
  maxRssBytes: number;
  /** resident set after loading the model, before training */
  baselineRssBytes: number;
  /** trainable parameters */
  params: number;
}

export interface TrainSpeedCase {
  label: string;
  dir: string;
  batch: number;
  seqLen: number;
  steps: number;
  /** thread ranks each layer is split over; default 1 */
  tensorParallel?: number;
  /** default both */
  modes?: ("lora" | "full")[];
}

function linearParams(dir: string): number {
  const c = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, number>;
  const C = c.hidden_size!, NH = c.num_attention_heads!, NKV = c.num_key_value_heads ?? NH, HD = c.head_dim ?? C / NH;
  return c.num_hidden_layers! * (C * HD * (2 * NH + 2 * NKV) + 3 * C * c.intermediate_size!);
}

const ONE = fileURLToPath(new URL("./train-one.js", import.meta.url));
const MiB = 1024 * 1024;

export async function runTrainSpeed(report: Report, c: TrainSpeedCase, limits: MachineLimits, threads: number): Promise<void> {
  const tp = c.tensorParallel ?? 1;
  for (const mode of c.modes ?? (["lora", "full"] as const)) {
    const out = execFileSync(process.execPath, [ONE, c.dir, mode, String(c.batch), String(c.seqLen), String(c.steps), String(threads), String(tp)], { encoding: "utf8" });
    const r = JSON.parse(out.trim().split("\n").pop()!) as TrainOneResult;
    const flopsPerToken = (mode === "full" ? 6 : 4) * linearParams(c.dir);
    const name = `${c.label} train ${mode === "lora" ? `LoRA r${LORA_RANK}` : "full"} ${c.batch}×${c.seqLen}`;
    report.add({
      name,
      value: r.tokensPerS,
      unit: "tok/s",
      config: { model: c.label, mode, batch: c.batch, seq_len: c.seqLen, threads, tp, gflops: Math.round((r.tokensPerS * flopsPerToken) / 1e8) / 10 },
      limit: { name: "GEMM peak", value: limits.gemmGFlops, unit: "GFLOP/s", fraction: (r.tokensPerS * flopsPerToken) / 1e9 / limits.gemmGFlops },
    });
    report.add({
      name: `${name} peak memory`,
      value: r.maxRssBytes / MiB,
      unit: "MiB",
      config: {
        model: c.label,
        mode,
        trainable_params: r.params,
        // what training added over the loaded model, per trainable parameter
        bytes_per_trainable_param: Math.round(((r.maxRssBytes - r.baselineRssBytes) / r.params) * 10) / 10,
      },
    });
  }
}
