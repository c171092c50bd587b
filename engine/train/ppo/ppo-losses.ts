// PPO's two losses as DeepSpeed-Chat step 3 defines them (actor_loss_fn, critic_loss_fn),
// each with its gradient per token: the native side takes dL/dlogp and dL/dvalue and
// never sees a loss. Each call covers some action tokens of a mini-batch; `count` is the
// number of action tokens of the whole mini-batch (the masked mean's denominator), so
// calls over its micro-batches add up to the mini-batch's loss and gradient.

export interface TokenLoss {
  /** this call's share of the loss (sum over its tokens / count) */
  loss: number;
  /** dL/d(input) per token */
  grad: Float32Array;
  /** tokens whose clipped term was the one taken (its gradient is 0) */
  clipped: number;
}

/**
 * L = mean_t max(−A_t·ρ_t, −A_t·clip(ρ_t, 1−ε, 1+ε)), ρ_t = exp(logp_t − logp_old_t).
 * Where the unclipped term is the larger, dL/dlogp_t = −A_t·ρ_t / count (dρ/dlogp = ρ);
 * where the clipped one is strictly larger, ρ sits outside [1−ε, 1+ε] and the gradient is 0.
 */
export function policyLoss(logp: ArrayLike<number>, logpOld: ArrayLike<number>, adv: ArrayLike<number>, clip: number, count: number): TokenLoss {
  const n = logp.length;
  const grad = new Float32Array(n);
  let loss = 0;
  let clipped = 0;
  for (let t = 0; t < n; t++) {
    const ratio = Math.exp(logp[t] - logpOld[t]);
    const a = adv[t];
    const unclipped = -a * ratio;
    const bounded = -a * Math.min(1 + clip, Math.max(1 - clip, ratio));
    if (unclipped >= bounded) {
      loss += unclipped;
      grad[t] = (-a * ratio) / count;
    } else {
      loss += bounded;
      clipped++;
    }
  }
  return { loss: loss / count, grad, clipped };
}

/**
 * L = ½·mean_t max((V_t − R_t)², (Vc_t − R_t)²), Vc_t = clip(V_t, V_old_t ± ε).
 * Where the unclipped square is the larger, dL/dV_t = (V_t − R_t) / count; otherwise V_t is
 * outside the band, Vc_t does not move with it, and the gradient is 0.
 */
export function valueLoss(values: ArrayLike<number>, valuesOld: ArrayLike<number>, returns: ArrayLike<number>, clip: number, count: number): TokenLoss {
  const n = values.length;
  const grad = new Float32Array(n);
  let loss = 0;
  let clipped = 0;
  for (let t = 0; t < n; t++) {
    const v = values[t];
    const vc = Math.min(valuesOld[t] + clip, Math.max(valuesOld[t] - clip, v));
    const e1 = (v - returns[t]) ** 2;
    const e2 = (vc - returns[t]) ** 2;
    if (e1 >= e2) {
      loss += 0.5 * e1;
      grad[t] = (v - returns[t]) / count;
    } else {
      loss += 0.5 * e2;
      clipped++;
    }
  }
  return { loss: loss / count, grad, clipped };
}
