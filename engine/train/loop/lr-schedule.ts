// Learning-rate schedules with warm-up, as transformers' get_*_schedule_with_warmup define
// them: the multiplier at optimizer step s (0-based) over `total` steps.

export type ScheduleKind = "constant" | "linear" | "cosine";
export const SCHEDULES: readonly ScheduleKind[] = ["constant", "linear", "cosine"];

export interface Schedule {
  kind: ScheduleKind;
  /** peak learning rate */
  lr: number;
  warmupSteps: number;
  totalSteps: number;
}

/** lr for optimizer step `step` (0-based): linear warm-up from 0, then constant, linear decay to 0, or half a cosine to 0. */
export function learningRate(s: Schedule, step: number): number {
  const w = s.warmupSteps;
  if (step < w) return (s.lr * step) / Math.max(1, w);
  if (s.kind === "constant") return s.lr;
  const span = Math.max(1, s.totalSteps - w);
  const progress = (step - w) / span;
  if (s.kind === "linear") return s.lr * Math.max(0, 1 - progress);
  return s.lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
