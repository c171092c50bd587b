// The hyperparameters every method shares (n_epochs, batch_size, learning_rate_multiplier,
// "auto" or a number, as OpenAI takes them), their checks, and how "auto" resolves.
import { autoBatchSize, autoEpochs } from "../../../engine/train/loop/hyperparams.js";
import type { Hyperparameters } from "../../store/jobs.js";

export const COMMON_KEYS = ["n_epochs", "batch_size", "learning_rate_multiplier"] as const;

/** why `v` is not a valid value of the shared key `key`, or null */
export function checkCommonValue(key: string, v: unknown): string | null {
  if (v === "auto") return null;
  if (key === "learning_rate_multiplier") return typeof v === "number" && v > 0 && v <= 100 ? null : `${key} must be "auto" or a number in (0, 100]`;
  return Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 256 ? null : `${key} must be "auto" or an integer from 1 to 256`;
}

export function checkKnownHyperparameters(h: Record<string, unknown>, keys: readonly string[], check: (k: string, v: unknown) => string | null): string | null {
  for (const [k, v] of Object.entries(h)) {
    if (!keys.includes(k)) return `unknown hyperparameter "${k}" (allowed: ${keys.join(", ")})`;
    const e = check(k, v);
    if (e) return e;
  }
  return null;
}

/** every key, "auto" where the request left it out */
export function withAutos(keys: readonly string[], h: Record<string, unknown>): Hyperparameters {
  return Object.fromEntries(keys.map((k) => [k, (h[k] as number | string | undefined) ?? "auto"])) as Hyperparameters;
}

/** a number hyperparameter, `auto` when the job left it "auto" */
export function resolved(h: Hyperparameters, key: string, auto: number): number {
  const v = h[key];
  return typeof v === "number" ? v : auto;
}

/** n_epochs, batch_size (at most the examples) and the multiplier, "auto" resolved for `n` examples */
export function commonSettings(h: Hyperparameters, n: number): { epochs: number; batchSize: number; mult: number } {
  return { epochs: resolved(h, "n_epochs", autoEpochs(n)), batchSize: Math.min(n, resolved(h, "batch_size", autoBatchSize(n))), mult: resolved(h, "learning_rate_multiplier", 1) };
}
