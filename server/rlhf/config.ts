// The continuous-RLHF policy's settings (server/rlhf/policy.ts), apart from it so the CLI's
// help and flag parsing load nothing heavy.
/** dpo: one dpo job; ppo: a reward_model job, then a ppo job against it (DeepSpeed-Chat steps 2 and 3) */
export const RLHF_METHODS = ["dpo", "ppo"] as const;

export interface RlhfPolicyConfig {
  /** run after this many preferences collected since the last run (null: not by count) */
  after: number | null;
  /** run every this many minutes when a preference came since the last run (null: not by time) */
  everyMinutes: number | null;
  method: (typeof RLHF_METHODS)[number];
  /** make the base id serve a candidate that passed the gate */
  promote: boolean;
  /**
   * keep only the newest this many versions the policy published (--rlhf-keep); older ones are
   * deleted with their runs' files, never the promoted one; absent: keep all
   */
  keep?: number;
  /** the job's method hyperparameters (ppo: its reward_model is the run's own); default all "auto" */
  hyperparameters?: Record<string, number | "auto">;
  /** ppo: the reward_model job's hyperparameters; default all "auto" */
  rewardModelHyperparameters?: Record<string, number | "auto">;
  /** share of the preferences held out for the gate (default 0.2) */
  heldOut?: number;
  /** how often the triggers are checked, ms (default 1000) */
  pollMs?: number;
}

