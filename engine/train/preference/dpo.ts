// Direct Preference Optimization (Rafailov et al. 2023) on the native training boundary.
// The policy is a trained adapter; the reference is the same weights without it (adapter
// null: the base — or a frozen copy of the SFT adapter the policy started from), run as
// no-grad forwards, so no second copy of the base exists. The reference never changes, so
// its summed answer log-probs are computed once per data set before training.
// Per pair: z = β[(logp_c − ref_c) − (logp_r − ref_r)], loss −log σ(z), averaged over the
// optimizer batch; every learned token of an answer gets that answer's dL/dΣlogp / B.
import { microBatchesBy, sequenceLogp, trainBatch } from "../loop/batches.js";
import { runEpochs, type LoopCallbacks, type LoopSettings, type StepCommon, type TrainingCalls } from "../loop/loop.js";
import { dpoLoss } from "./pref-loss.js";
import { pairSequences, type EncodedPair } from "../data/pref-data.js";

export const DEFAULT_BETA = 0.1;

export interface DpoSettings extends LoopSettings {
  /** the policy adapter (setTrainable({adapter}) done by the caller) */
  adapter: string;
  /** the reference: null = the base alone; else a frozen adapter (the SFT starting point) */
  reference: string | null;
  beta: number;
  /** token budget of one micro-batch; a pair is never split */
  maxBatchTokens: number;
}

/** Summed answer log-probs of each pair under the reference (or any frozen model). */
export interface PairLogp {
  chosen: Float64Array;
  rejected: Float64Array;
}

/** DPO statistics of some pairs (rewards are the implicit β(logp − ref)). */
export interface DpoStats {
  loss: number;
  reward_chosen: number;
  reward_rejected: number;
  reward_margin: number;
  /** fraction of pairs with reward_chosen > reward_rejected */
  reward_accuracy: number;
  /** mean (logp − ref) per answer token: how far the policy moved on the data (a KL-like drift) */
  logratio_per_token: number;
}

export type DpoStepEvent = StepCommon & DpoStats;

export interface DpoEpochEvent {
  epoch: number;
  step: number;
  train_loss: number;
  train_reward_accuracy: number;
  val_loss: number | null;
  val_reward_accuracy: number | null;
  val_reward_margin: number | null;
}

export type DpoCallbacks = LoopCallbacks<DpoStats, Omit<DpoEpochEvent, "epoch" | "step">>;

const pairTokens = (pairs: readonly EncodedPair[]) => (i: number) => pairs[i].chosen.tokens.length + pairs[i].rejected.tokens.length;

function answerTokens(p: EncodedPair): number {
  let n = 0;
  for (const ex of [p.chosen, p.rejected]) for (let t = 1; t < ex.mask.length; t++) n += ex.mask[t];
  return n;
}

/** Summed answer log-probs of every pair under `adapter` (null: the base), without gradients. */
export async function pairLogp(model: TrainingCalls, adapter: string | null, pairs: readonly EncodedPair[], maxBatchTokens = 4096): Promise<PairLogp> {
  const out: PairLogp = { chosen: new Float64Array(pairs.length), rejected: new Float64Array(pairs.length) };
  for (const mb of microBatchesBy(pairs.map((_, i) => i), maxBatchTokens, pairTokens(pairs))) {
    const seqs = pairSequences(pairs, mb);
    const batch = trainBatch(seqs, seqs.map((_, i) => i), adapter, false);
    const sums = sequenceLogp(batch, (await model.trainForward(batch)).logp);
    mb.forEach((i, k) => {
      out.chosen[i] = sums[2 * k];
      out.rejected[i] = sums[2 * k + 1];
    });
  }
  return out;
}

class DpoAccumulator {
  private n = 0;
  private tokens = 0;
  private sum = { loss: 0, rc: 0, rr: 0, right: 0, logratio: 0 };
  constructor(private readonly beta: number) {}
  add(p: EncodedPair, logpC: number, refC: number, logpR: number, refR: number): ReturnType<typeof dpoLoss> {
    const l = dpoLoss(this.beta, logpC, refC, logpR, refR);
    this.n++;
    this.tokens += answerTokens(p);
    this.sum.loss += l.loss;
    this.sum.rc += l.rewardChosen;
    this.sum.rr += l.rewardRejected;
    if (l.rewardChosen > l.rewardRejected) this.sum.right++;
    this.sum.logratio += logpC - refC + (logpR - refR);
    return l;
  }
  stats(): DpoStats {
    const n = Math.max(this.n, 1);
    return {
      loss: this.sum.loss / n,
      reward_chosen: this.sum.rc / n,
      reward_rejected: this.sum.rr / n,
      reward_margin: (this.sum.rc - this.sum.rr) / n,
      reward_accuracy: this.sum.right / n,
      logratio_per_token: this.sum.logratio / Math.max(this.tokens, 1),
    };
  }
}

/** DPO statistics of the policy on some pairs, given their reference log-probs; no gradients. */
export async function evaluateDpo(model: TrainingCalls, s: Pick<DpoSettings, "adapter" | "beta" | "maxBatchTokens">, pairs: readonly EncodedPair[], ref: PairLogp): Promise<DpoStats> {
  const pol = await pairLogp(model, s.adapter, pairs, s.maxBatchTokens);
  const acc = new DpoAccumulator(s.beta);
  pairs.forEach((p, i) => acc.add(p, pol.chosen[i], ref.chosen[i], pol.rejected[i], ref.rejected[i]));
  return acc.stats();
}

/**
 * Trains the policy adapter with DPO for epochs `startEpoch` … epochs−1 (see runEpochs).
 * Returns the number of optimizer steps taken in total.
 */
export async function trainDpo(
  model: TrainingCalls,
  train: readonly EncodedPair[],
  validation: readonly EncodedPair[] | null,
  s: DpoSettings,
  cb: DpoCallbacks = {},
  startEpoch = 0,
): Promise<number> {
  const ref = await pairLogp(model, s.reference, train, s.maxBatchTokens);
  const valRef = validation && validation.length > 0 ? await pairLogp(model, s.reference, validation, s.maxBatchTokens) : null;
  let epoch = new DpoAccumulator(s.beta);
  return runEpochs(
    model,
    train.length,
    s,
    {
      batch: async (indices) => {
        const B = indices.length;
        const step = new DpoAccumulator(s.beta);
        let tokens = 0;
        for (const mb of microBatchesBy(indices, s.maxBatchTokens, pairTokens(train))) {
          const seqs = pairSequences(train, mb);
          const batch = trainBatch(seqs, seqs.map((_, i) => i), s.adapter, true);
          const { logp } = await model.trainForward(batch);
          const sums = sequenceLogp(batch, logp);
          // dL/dΣlogp of each packed sequence, spread over its learned positions below
          const dseq = new Float64Array(seqs.length);
          mb.forEach((i, k) => {
            const args = [train[i], sums[2 * k], ref.chosen[i], sums[2 * k + 1], ref.rejected[i]] as const;
            const l = step.add(...args);
            epoch.add(...args);
            dseq[2 * k] = l.dChosen / B;
            dseq[2 * k + 1] = l.dRejected / B;
          });
          const dlogp = new Float32Array(logp.length);
          let off = 0;
          batch.counts.forEach((n, q) => {
            for (let t = off; t < off + n; t++) if (batch.targets[t] >= 0) dlogp[t] = dseq[q];
            off += n;
          });
          await model.trainBackward(dlogp, null);
          tokens += batch.tokens.length;
        }
        return { stats: step.stats(), tokens };
      },
      epoch: async () => {
        const t = epoch.stats();
        epoch = new DpoAccumulator(s.beta);
        const v = validation && valRef ? await evaluateDpo(model, s, validation, valRef) : null;
        return {
          train_loss: t.loss,
          train_reward_accuracy: t.reward_accuracy,
          val_loss: v?.loss ?? null,
          val_reward_accuracy: v?.reward_accuracy ?? null,
          val_reward_margin: v?.reward_margin ?? null,
        };
      },
    },
    cb,
    startEpoch,
  );
}
