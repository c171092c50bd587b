// The reward model, DeepSpeed-Chat's step 2: the frozen base + the model's own LoRA adapter +
// a scalar value head (AdapterSpec.valueHead). The score of prompt + answer is the value at
// its last token (sequences are packed without padding, so that is the last non-pad token;
// with the EOS the encoders append, it reads the whole answer). Loss per pair:
// −log σ(r_chosen − r_rejected), averaged over the optimizer batch; both answers of a pair
// run in the same forward so their gradient (dL/dvalue at two positions) goes back at once.
import { microBatchesBy, valueBatch } from "../loop/batches.js";
import { runEpochs, type LoopCallbacks, type LoopSettings, type StepCommon, type TrainingCalls } from "../loop/loop.js";
import { pairwiseLoss } from "./pref-loss.js";
import { pairSequences, type EncodedPair } from "../data/pref-data.js";

export interface RewardSettings extends LoopSettings {
  /** the reward model's adapter (LoRA + value head; setTrainable({adapter}) done by the caller) */
  adapter: string;
  /** token budget of one micro-batch (one trainForward); a pair is never split */
  maxBatchTokens: number;
}

/** Pairwise statistics of some pairs. */
export interface PairStats {
  /** mean −log σ(r_c − r_r) */
  loss: number;
  /** fraction of pairs with r_c > r_r */
  accuracy: number;
  /** mean r_c − r_r */
  margin: number;
}

export type RmStepEvent = StepCommon & PairStats;

export interface RmEpochEvent {
  epoch: number;
  step: number;
  train_loss: number;
  train_accuracy: number;
  /** on the held-out pairs, when there are some */
  val_loss: number | null;
  val_accuracy: number | null;
  val_margin: number | null;
}

export type RmCallbacks = LoopCallbacks<PairStats, Omit<RmEpochEvent, "epoch" | "step">>;

const pairTokens = (pairs: readonly EncodedPair[]) => (i: number) => pairs[i].chosen.tokens.length + pairs[i].rejected.tokens.length;

/**
 * Scores of whole token sequences (prompt + answer) under a reward adapter: the value head at
 * each sequence's last token, without gradients. Sequences are packed up to `maxBatchTokens`
 * per forward (a longer one runs alone).
 */
export async function scoreSequences(model: TrainingCalls, adapter: string, sequences: readonly Int32Array[], maxBatchTokens = 4096): Promise<Float32Array> {
  const out = new Float32Array(sequences.length);
  const all = sequences.map((_, i) => i);
  for (const mb of microBatchesBy(all, maxBatchTokens, (i) => sequences[i].length)) {
    const { batch, last } = valueBatch(mb.map((i) => sequences[i]), adapter, false);
    const { values } = await model.trainForward(batch);
    mb.forEach((i, k) => (out[i] = values![last[k]]));
  }
  return out;
}

/** Loss, accuracy and margin of the reward adapter on some pairs, without gradients. */
export async function evaluatePairs(model: TrainingCalls, adapter: string, pairs: readonly EncodedPair[], maxBatchTokens = 4096): Promise<PairStats> {
  const seqs = pairSequences(pairs, pairs.map((_, i) => i)).map((e) => e.tokens);
  const r = await scoreSequences(model, adapter, seqs, maxBatchTokens);
  const acc = new PairAccumulator();
  for (let i = 0; i < pairs.length; i++) acc.add(r[2 * i], r[2 * i + 1]);
  return acc.stats();
}

class PairAccumulator {
  private n = 0;
  private loss = 0;
  private right = 0;
  private margin = 0;
  add(rc: number, rr: number): void {
    const l = pairwiseLoss(rc, rr);
    this.n++;
    this.loss += l.loss;
    this.margin += rc - rr;
    if (rc > rr) this.right++;
  }
  stats(): PairStats {
    const n = Math.max(this.n, 1);
    return { loss: this.loss / n, accuracy: this.right / n, margin: this.margin / n };
  }
}

/**
 * Trains the reward adapter on preference pairs for epochs `startEpoch` … epochs−1 (see
 * runEpochs); held-out pairwise accuracy and mean margin are reported after every epoch.
 * Returns the number of optimizer steps taken in total.
 */
export async function trainRewardModel(
  model: TrainingCalls,
  train: readonly EncodedPair[],
  validation: readonly EncodedPair[] | null,
  s: RewardSettings,
  cb: RmCallbacks = {},
  startEpoch = 0,
): Promise<number> {
  let epoch = new PairAccumulator();
  return runEpochs(
    model,
    train.length,
    s,
    {
      batch: async (indices) => {
        const B = indices.length;
        const step = new PairAccumulator();
        let tokens = 0;
        for (const mb of microBatchesBy(indices, s.maxBatchTokens, pairTokens(train))) {
          const { batch, last } = valueBatch(pairSequences(train, mb).map((e) => e.tokens), s.adapter, true);
          const { values } = await model.trainForward(batch);
          const dvalues = new Float32Array(batch.tokens.length);
          for (let k = 0; k < mb.length; k++) {
            const c = last[2 * k], r = last[2 * k + 1];
            const l = pairwiseLoss(values![c], values![r]);
            step.add(values![c], values![r]);
            epoch.add(values![c], values![r]);
            dvalues[c] = l.dChosen / B;
            dvalues[r] = l.dRejected / B;
          }
          await model.trainBackward(new Float32Array(batch.tokens.length), dvalues);
          tokens += batch.tokens.length;
        }
        return { stats: step.stats(), tokens };
      },
      epoch: async () => {
        const t = epoch.stats();
        epoch = new PairAccumulator();
        const v = validation && validation.length > 0 ? await evaluatePairs(model, s.adapter, validation, s.maxBatchTokens) : null;
        return { train_loss: t.loss, train_accuracy: t.accuracy, val_loss: v?.loss ?? null, val_accuracy: v?.accuracy ?? null, val_margin: v?.margin ?? null };
      },
    },
    cb,
    startEpoch,
  );
}
