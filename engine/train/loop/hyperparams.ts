// "auto" hyperparameters the way OpenAI's fine-tuning picks them, so a few dozen examples
// train without tuning.

/** OpenAI cookbook: 3 epochs, raised so epochs × examples ≥ 100 (at most 25), lowered so it ≤ 25 000 (at least 1). */
export function autoEpochs(examples: number): number {
  const TARGET = 3, MIN_SEEN = 100, MAX_SEEN = 25_000, MIN_EPOCHS = 1, MAX_EPOCHS = 25;
  if (examples <= 0) return TARGET;
  // ceil, not the cookbook's floor: the point is to see at least MIN_SEEN examples
  if (examples * TARGET < MIN_SEEN) return Math.min(MAX_EPOCHS, Math.ceil(MIN_SEEN / examples));
  if (examples * TARGET > MAX_SEEN) return Math.max(MIN_EPOCHS, Math.floor(MAX_SEEN / examples));
  return TARGET;
}

/** OpenAI's auto batch size: about 0.2 % of the examples, between 1 and 256. */
export function autoBatchSize(examples: number): number {
  return Math.max(1, Math.min(256, Math.round(examples * 0.002)));
}

/**
 * Default peak learning rates (linear decay, AdamW). LoRA: B starts at zero and the update
 * is scaled by alpha/r, so it takes a larger rate than full fine-tuning; 2e-3 teaches
 * stories260K a new name from 32 examples in 4 auto epochs (test/sft-e2e.test.ts; 5e-4 does
 * too, so the default has margin). Full fine-tuning moves every weight: 1e-4 does the same.
 */
export const DEFAULT_LORA_LR = 2e-3;
export const DEFAULT_FULL_LR = 1e-4;

/**
 * DPO's LoRA rate: lower than SFT's, because every step pushes the two answers apart without a
 * floor, and the KL to the reference grows with it. On stories260K (test/pref-e2e.test.ts)
 * 5e-4 lifts the preferred behaviour from ~15 % to over half of the samples at ~0.1 nat/token
 * of drift; 2e-3 gets there too but at ~2 nats/token, with broken text.
 */
export const DEFAULT_DPO_LR = 5e-4;

export function defaultLearningRate(loraRank: number): number {
  return loraRank > 0 ? DEFAULT_LORA_LR : DEFAULT_FULL_LR;
}

/** Warm-up: 3 % of the steps (rounded down), a common SFT default; none for short runs. */
export function autoWarmupSteps(totalSteps: number): number {
  return Math.floor(totalSteps * 0.03);
}
