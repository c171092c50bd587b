// `serve`'s continuous-RLHF flags → the policy's config (server/rlhf/policy.ts).
import { floatOption, intOption, UsageError } from "./errors.js";
import { RLHF_METHODS, type RlhfPolicyConfig } from "../server/rlhf/config.js";
import { DEFAULT_TRAINING_SOURCES, FEEDBACK_SOURCES, type FeedbackSource } from "../server/store/feedback.js";

export const RLHF_FLAGS = {
  "rlhf-after": { type: "string" },
  "rlhf-every": { type: "string" },
  "rlhf-method": { type: "string" },
  "rlhf-promote": { type: "boolean", default: false },
  "rlhf-sources": { type: "string" },
  "rlhf-keep": { type: "string" },
} as const;

export const RLHF_HELP = `  --rlhf-after N            continuous RLHF: train on the collected preferences after N new ones
  --rlhf-every MINUTES      continuous RLHF: train every MINUTES when a preference came since the last run
  --rlhf-method dpo|ppo     what a run trains (default dpo); each run is a visible fine-tuning job with
                            suffix "rlhf", gated on held-out preferences against the served version;
                            ppo first trains a reward model (a visible job with suffix "rlhf-rm"), e.g.
                            serve --model DIR --rlhf-after 200 --rlhf-method ppo --rlhf-promote
  --rlhf-promote            make the base id serve a run's result when it passed the gate
  --rlhf-sources LIST       the feedback that trains (continuous RLHF, jobs on training_file "feedback",
                            the export): a comma list of rating (judgements of served answers), pairwise
                            (choices between two served answers), text (preferences written by the
                            sender; a user key's wait for an admin's approval); default rating,pairwise
  --rlhf-keep N             keep the newest N versions continuous RLHF published (default all); older
                            ones are deleted with their runs' files and checkpoints, never the promoted one
`;

/** --rlhf-sources: known names only, at least one. */
export function rlhfSources(list: string | undefined, command: string): FeedbackSource[] {
  if (list === undefined) return [...DEFAULT_TRAINING_SOURCES];
  const names = list.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  const unknown = names.find((n) => !(FEEDBACK_SOURCES as readonly string[]).includes(n));
  if (unknown !== undefined) throw new UsageError(`--rlhf-sources: unknown source "${unknown}"; use ${FEEDBACK_SOURCES.join(", ")}`, command);
  if (names.length === 0) throw new UsageError(`--rlhf-sources needs at least one of ${FEEDBACK_SOURCES.join(", ")}`, command);
  return [...new Set(names)] as FeedbackSource[];
}

export function rlhfConfig(v: { "rlhf-after"?: string; "rlhf-every"?: string; "rlhf-method"?: string; "rlhf-promote"?: boolean; "rlhf-keep"?: string }, command: string): RlhfPolicyConfig | null {
  const after = intOption(v["rlhf-after"], "rlhf-after", command, 1, 1_000_000) ?? null;
  const keep = intOption(v["rlhf-keep"], "rlhf-keep", command, 1, 1_000_000);
  const everyMinutes = floatOption(v["rlhf-every"], "rlhf-every", command, 0, 525_600, true) ?? null;
  const method = v["rlhf-method"] ?? "dpo";
  if (!(RLHF_METHODS as readonly string[]).includes(method)) throw new UsageError(`--rlhf-method must be one of ${RLHF_METHODS.join(", ")}, got "${method}"`, command);
  if (after === null && everyMinutes === null) {
    if (v["rlhf-method"] !== undefined || v["rlhf-promote"] || keep !== undefined) throw new UsageError("--rlhf-method, --rlhf-promote and --rlhf-keep need --rlhf-after N or --rlhf-every MINUTES", command);
    return null;
  }
  return { after, everyMinutes, method: method as RlhfPolicyConfig["method"], promote: v["rlhf-promote"] === true, ...(keep !== undefined ? { keep } : {}) };
}
