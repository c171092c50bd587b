// Per-token rewards, generalized advantage estimation and whitening for PPO, as
// DeepSpeed-Chat step 3 computes them (ppo_trainer.py compute_rewards,
// get_advantages_and_returns). Every array here covers one answer's action tokens only:
// index j is the j-th generated token, read at the position that predicts it.

/**
 * rewards[j] = −klCtl·(logp[j] − logpRef[j]), plus clip(score, ±clip) on the last action
 * token: the KL penalty keeps the actor near the reference at every token, the reward
 * model speaks once, at the end of the answer.
 */
export function klRewards(logp: ArrayLike<number>, logpRef: ArrayLike<number>, score: number, klCtl: number, clip: number): Float64Array {
  const n = logp.length;
  if (logpRef.length !== n) throw new RangeError(`klRewards: ${n} log-probs but ${logpRef.length} reference log-probs`);
  const r = new Float64Array(n);
  for (let j = 0; j < n; j++) r[j] = -klCtl * (logp[j] - logpRef[j]);
  if (n > 0) r[n - 1] += Math.min(clip, Math.max(-clip, score));
  return r;
}

export interface Gae {
  advantages: Float64Array;
  /** advantages + values: the critic's regression target */
  returns: Float64Array;
}

/**
 * GAE(γ, λ) over one answer, with the value after the last token taken as 0 (the episode
 * ends with the answer): δ_j = r_j + γ·V_{j+1} − V_j, A_j = δ_j + γλ·A_{j+1}.
 */
export function gae(rewards: ArrayLike<number>, values: ArrayLike<number>, gamma: number, lambda: number): Gae {
  const n = rewards.length;
  if (values.length !== n) throw new RangeError(`gae: ${n} rewards but ${values.length} values`);
  const advantages = new Float64Array(n);
  const returns = new Float64Array(n);
  let last = 0;
  for (let j = n - 1; j >= 0; j--) {
    const next = j + 1 < n ? values[j + 1] : 0;
    const delta = rewards[j] + gamma * next - values[j];
    last = delta + gamma * lambda * last;
    advantages[j] = last;
    returns[j] = last + values[j];
  }
  return { advantages, returns };
}

/**
 * Shifts and scales every token's advantage of a batch to mean 0 and variance 1 (one
 * mean and one unbiased variance over all tokens, as TRL's `whiten`), in place.
 * DeepSpeed-Chat's step 3 does not whiten; PPO runs here do only with `whitenAdvantages`.
 */
export function whiten(seqs: readonly Float64Array[], eps = 1e-8): void {
  let n = 0;
  let sum = 0;
  for (const a of seqs) for (const x of a) (sum += x), n++;
  if (n < 2) return;
  const mean = sum / n;
  let ss = 0;
  for (const a of seqs) for (const x of a) ss += (x - mean) ** 2;
  const scale = 1 / Math.sqrt(ss / (n - 1) + eps);
  for (const a of seqs) for (let j = 0; j < a.length; j++) a[j] = (a[j] - mean) * scale;
}
