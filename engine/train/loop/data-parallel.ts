// Data parallelism behind the training loop's own interface (TrainingCalls): each packed batch
// is cut into N contiguous runs of whole sequences, balanced by tokens, and every rank runs
// its run's forward and backward at once (each model's calls run off the JS thread); the
// step is the native group's ZeRO step. The loss stays normalised by the global batch, so
// the summed gradients are those of one rank over the whole batch. A rank that fails (a bad
// batch, a failed step) leaves the group working: its communicators are made afresh and the
// failed step's gradients dropped, so the next step (a retry, the next job) runs clean.
import type { DataParallelGroup, NativeModel, OptimizerStep, StepResult, TrainBatch, TrainForwardResult, ZeroStage } from "../../../native/index.js";
import { native } from "../../../native/index.js";
import type { TrainingCalls } from "./loop.js";

/** [first sequence, end sequence, first token, end token) of each rank's run. */
export interface RankSlice {
  seq0: number;
  seq1: number;
  tok0: number;
  tok1: number;
}

/** Contiguous runs of whole sequences, one per rank, each near total/N tokens (some may be empty). */
export function splitBatch(counts: Int32Array, ranks: number): RankSlice[] {
  let total = 0;
  for (const c of counts) total += c;
  const out: RankSlice[] = [];
  let seq = 0;
  let tok = 0;
  for (let r = 0; r < ranks; r++) {
    const target = Math.round((total * (r + 1)) / ranks);
    const seq0 = seq;
    const tok0 = tok;
    // take sequences while that brings the run's end closer to its target
    while (seq < counts.length && (r === ranks - 1 || Math.abs(tok + counts[seq] - target) <= Math.abs(tok - target))) tok += counts[seq++];
    out.push({ seq0, seq1: seq, tok0, tok1: tok });
  }
  return out;
}

function sliceBatch(b: TrainBatch, s: RankSlice): TrainBatch {
  return { ...b, tokens: b.tokens.subarray(s.tok0, s.tok1), targets: b.targets.subarray(s.tok0, s.tok1), counts: b.counts.subarray(s.seq0, s.seq1) };
}

export class DataParallelModel implements TrainingCalls {
  readonly group: DataParallelGroup;
  /** the slices of the last grad forward, for its backward */
  private pending: RankSlice[] | null = null;

  /** `ranks` are models of one checkpoint with the same trainable set already chosen. */
  constructor(readonly ranks: NativeModel[], zeroStage: ZeroStage) {
    this.group = native().dataParallel(ranks, zeroStage);
  }

  /**
   * Every rank's call, settled: when one fails, the others are let finish (no rank is left
   * running, or "busy" for the next call) and the group is made clean again before the first
   * failure is thrown: the step's gradients are dropped on every rank, so the caller redoes
   * the batch. (A failed step does the same natively, after remaking its communicators.)
   */
  async #onEveryRank<T>(calls: Promise<T>[]): Promise<T[]> {
    const settled = await Promise.allSettled(calls);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (!failed) return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
    this.pending = null;
    for (const m of this.ranks) m.zeroGrad();
    throw failed.reason;
  }

  async trainForward(batch: TrainBatch): Promise<TrainForwardResult> {
    this.group.gather();
    const slices = splitBatch(batch.counts, this.ranks.length);
    const parts = await this.#onEveryRank(slices.map((s, r) => (s.seq1 > s.seq0 ? this.ranks[r].trainForward(sliceBatch(batch, s)) : Promise.resolve(null))));
    if (batch.grad) this.pending = slices;
    const T = batch.tokens.length;
    const logp = new Float32Array(T);
    const values = batch.values ? new Float32Array(T) : null;
    parts.forEach((p, r) => {
      if (!p) return;
      logp.set(p.logp, slices[r].tok0);
      if (values && p.values) values.set(p.values, slices[r].tok0);
    });
    return { logp, values };
  }

  async trainBackward(dlogp: Float32Array, dvalues: Float32Array | null): Promise<void> {
    const slices = this.pending;
    if (!slices) throw Object.assign(new Error("trainBackward needs a grad trainForward first"), { code: "no_forward" });
    this.pending = null;
    await this.#onEveryRank(
      slices.map((s, r) =>
        s.seq1 > s.seq0 ? this.ranks[r].trainBackward(dlogp.subarray(s.tok0, s.tok1), dvalues ? dvalues.subarray(s.tok0, s.tok1) : null) : Promise.resolve(),
      ),
    );
  }

  async step(opt: OptimizerStep): Promise<StepResult> {
    return this.group.step(opt);
  }

  /** Runs `read` on rank 0 with whole parameters (stage 3 gathers them first and releases after):
   * checkpoints are written from here, so they are whole whatever the sharding. */
  async withWholeParameters<T>(read: (rank0: NativeModel) => T | Promise<T>): Promise<T> {
    const was = this.group.gathered();
    this.group.gather();
    try {
      return await read(this.ranks[0]);
    } finally {
      if (!was) this.group.release();
    }
  }
}

/**
 * Rank 0's model as checkpoints see it: whole parameters (stage 3 gathers them on a read; the
 * next step releases them) and the whole optimizer state gathered from the shards.
 */
export function wholeView(dp: DataParallelModel): NativeModel {
  const rank0 = dp.ranks[0];
  return new Proxy(rank0, {
    get(target, key) {
      if (key === "optimizerState") return () => dp.group.optimizerState();
      if (key === "readParameter")
        return (adapter: string | null, name: string) => {
          dp.group.gather();
          return target.readParameter(adapter, name);
        };
      const v = Reflect.get(target, key) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
