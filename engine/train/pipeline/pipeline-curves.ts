// The pipeline's figure from its steps' logs (so `--step 3` still draws steps 1 and 2 when
// their logs are there): PPO reward, KL, policy and value loss per PPO step, then the SFT
// loss and the reward model's loss and accuracy per optimizer step.
import { existsSync, readFileSync } from "node:fs";
import type { Panel } from "./plot-svg.js";

type Row = Record<string, unknown>;

function readLog(file: string): Row[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Row);
}

/** [x, y] of the rows of one type that carry a number in field y (null and absent fields are skipped). */
function points(rows: readonly Row[], type: string, x: string, y: string): [number, number][] {
  return rows.filter((r) => r.type === type && typeof r[x] === "number" && typeof r[y] === "number").map((r) => [r[x] as number, r[y] as number]);
}

/** A per-step training series and the per-epoch evaluation of the same quantity (when the run had one). */
function trainAndEval(title: string, xLabel: string, rows: readonly Row[], stepField: string, [evalName, evalField]: [string, string]): Panel {
  const series = [
    { name: "train", points: points(rows, "step", "step", stepField) },
    { name: evalName, points: points(rows, "eval", "step", evalField) },
  ];
  return { title, xLabel, series: series.filter((s) => s.points.length > 0) };
}

export interface CurveLogs {
  /** step 1's train_log.jsonl */
  sft: string;
  /** step 2's train_log.jsonl */
  rm: string;
  /** step 3's ppo_log.jsonl */
  ppo: string;
}

/** The panels of whatever logs exist; a step without a log contributes no panel. */
export function trainingCurves(logs: CurveLogs): Panel[] {
  const panels: Panel[] = [];
  const ppo = readLog(logs.ppo);
  if (ppo.length > 0) {
    const one = (title: string, field: string): Panel => ({ title, xLabel: "PPO step", series: [{ name: field, points: points(ppo, "step", "step", field) }] });
    panels.push(one("reward (reward-model score)", "reward"), one("KL to the reference (nats per answer)", "kl"), one("policy loss", "policy_loss"), one("value loss", "value_loss"));
  }
  const sft = readLog(logs.sft);
  if (sft.length > 0) panels.push(trainAndEval("SFT loss", "SFT step", sft, "loss", ["validation", "val_loss"]));
  const rm = readLog(logs.rm);
  if (rm.length > 0) {
    panels.push({ title: "reward model loss", xLabel: "RM step", series: [{ name: "train", points: points(rm, "step", "step", "loss") }] });
    panels.push(trainAndEval("reward model pairwise accuracy", "RM step", rm, "accuracy", ["held out", "val_accuracy"]));
  }
  return panels;
}
