// The two preference losses as scalar math with their gradients, per pair (the loops scale by
// 1/B). σ is the logistic function; log σ(x) = −softplus(−x), computed without overflow.
//
// Reward model (InstructGPT, DeepSpeed-Chat step 2): L = −log σ(r_c − r_r)
//   dL/dr_c = −σ(r_r − r_c),  dL/dr_r = +σ(r_r − r_c)
// DPO (Rafailov et al. 2023): z = β[(logp_c − ref_c) − (logp_r − ref_r)], L = −log σ(z), where
// logp is an answer's summed token log-probs under the policy and ref under the reference:
//   dL/dlogp_c = −β σ(−z),  dL/dlogp_r = +β σ(−z)

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** log σ(x), stable for large |x|. */
export function logSigmoid(x: number): number {
  return -(Math.max(-x, 0) + Math.log1p(Math.exp(-Math.abs(x))));
}

export interface PairwiseLoss {
  loss: number;
  /** dL/dr_chosen */
  dChosen: number;
  /** dL/dr_rejected */
  dRejected: number;
}

/** −log σ(r_c − r_r) and its gradient with respect to both scores. */
export function pairwiseLoss(rChosen: number, rRejected: number): PairwiseLoss {
  const d = rChosen - rRejected;
  const g = sigmoid(-d);
  return { loss: -logSigmoid(d), dChosen: -g, dRejected: g };
}

export interface DpoLoss {
  loss: number;
  /** dL/dΣlogp_chosen (every learned token of the chosen answer gets it) */
  dChosen: number;
  /** dL/dΣlogp_rejected */
  dRejected: number;
  /** implicit rewards β(logp − ref) */
  rewardChosen: number;
  rewardRejected: number;
}

export function dpoLoss(beta: number, logpChosen: number, refChosen: number, logpRejected: number, refRejected: number): DpoLoss {
  const rewardChosen = beta * (logpChosen - refChosen);
  const rewardRejected = beta * (logpRejected - refRejected);
  const z = rewardChosen - rewardRejected;
  const g = beta * sigmoid(-z);
  return { loss: -logSigmoid(z), dChosen: -g, dRejected: g, rewardChosen, rewardRejected };
}
