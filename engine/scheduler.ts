// Continuous batching, vLLM style: schedule() → SchedulerOutput, the engine runs one
// forward over it, update(output) → which rows to sample. Requests join and leave the
// running set between steps.
//
// Policy:
// - waiting is FIFO, bounded by maxQueue; the head is admitted only when a running slot
//   (maxBatch) and its whole KV reservation are free. A head that does not fit blocks
//   those behind it (no overtaking), so a long request cannot starve.
// - background sequences (a training job's rollouts) wait in their own FIFO, not counted
//   against maxQueue; they are admitted only when no user request waits, and never into
//   the last free running slot (with maxBatch > 1), so users keep a way in.
// - KV reservation: ceil((prompt + max_tokens) / blockSize) blocks per sequence, held
//   from admission to finish, so the native pool never runs out in normal operation.
// - each step carries at most maxBatchTokens tokens: running decodes first (one token
//   each), then prompts in prefill, chunked to what is left, so a long prompt delays
//   the running decodes by at most one chunk per step.
// - finish/abort frees the sequence's KV at once; if the sequence is in the step that is
//   running right now, at the end of that step (the native side is still reading it).
import { EngineError } from "./errors.js";

/** What the scheduler needs from a request. */
export interface SchedSeq {
  readonly seqId: number;
  readonly promptLength: number;
  readonly maxTokens: number;
  /** prompt, then every token sampled so far (the engine appends) */
  readonly tokens: readonly number[];
  /** a job's work (PPO rollouts): after user requests, outside maxQueue */
  readonly background?: boolean;
}

/** The part of the KV pool the scheduler talks to. */
export interface KvPool {
  freeSeq(seqId: number): void;
}

export interface SchedulerOptions {
  maxBatch: number;
  maxQueue: number;
  maxBatchTokens: number;
  /** tokens per KV block and blocks in the pool (from the model's kvStats) */
  blockSize: number;
  totalBlocks: number;
}

export interface ScheduledEntry<S extends SchedSeq> {
  seq: S;
  /** position of the first token fed this step (= tokens already in the KV cache) */
  start: number;
  count: number;
  /** the step feeds the sequence's last known token: its logits row picks the next one */
  sample: boolean;
  /** the chunk is (part of) the prompt */
  prefill: boolean;
}

export interface SchedulerOutput<S extends SchedSeq> {
  /** batch order: entry i gets logits row i */
  entries: ScheduledEntry<S>[];
  numTokens: number;
}

interface Slot {
  computed: number;
  blocks: number;
  /** finished while its step was in flight: free when the step ends */
  finishing: boolean;
}

export class Scheduler<S extends SchedSeq> {
  private readonly opts: SchedulerOptions;
  private readonly kv: KvPool;
  private readonly waiting: S[] = [];
  private readonly background: S[] = [];
  /** admission order, which is also batch order */
  private readonly running = new Map<S, Slot>();
  private reserved = 0;
  private inFlight: SchedulerOutput<S> | null = null;

  constructor(opts: SchedulerOptions, kv: KvPool) {
    for (const k of ["maxBatch", "maxBatchTokens", "blockSize", "totalBlocks"] as const) {
      if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new RangeError(`${k} must be a positive integer, got ${opts[k]}`);
    }
    if (!Number.isInteger(opts.maxQueue) || opts.maxQueue < 0) throw new RangeError(`maxQueue must be >= 0, got ${opts.maxQueue}`);
    // every running sequence decodes one token a step, and a prefill must still get one
    if (opts.maxBatchTokens < opts.maxBatch) {
      throw new RangeError(`maxBatchTokens (${opts.maxBatchTokens}) must be at least maxBatch (${opts.maxBatch})`);
    }
    this.opts = { ...opts };
    this.kv = kv;
  }

  /** tokens one sequence may hold: prompt + max_tokens must not exceed it */
  get capacityTokens(): number {
    return this.opts.totalBlocks * this.opts.blockSize;
  }

  blocksFor(seq: SchedSeq): number {
    return Math.ceil((seq.promptLength + seq.maxTokens) / this.opts.blockSize);
  }

  get numWaiting(): number {
    return this.waiting.length + this.background.length;
  }

  get numRunning(): number {
    return this.running.size;
  }

  get reservedBlocks(): number {
    return this.reserved;
  }

  /** Whether a waiting or running sequence satisfies `pred`. */
  some(pred: (seq: S) => boolean): boolean {
    return this.waiting.some(pred) || this.background.some(pred) || [...this.running.keys()].some(pred);
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.background.length > 0 || this.running.size > 0;
  }

  /** Queues a request; throws EngineError "queue_full" when maxQueue user requests are already waiting. */
  add(seq: S): void {
    if (!seq.background && this.waiting.length >= this.opts.maxQueue) {
      throw new EngineError(`the request queue is full (${this.opts.maxQueue} waiting); retry later`, "queue_full");
    }
    if (this.blocksFor(seq) > this.opts.totalBlocks) {
      throw new EngineError(
        `prompt + max_tokens (${seq.promptLength + seq.maxTokens}) exceeds the KV cache capacity (${this.capacityTokens} tokens)`,
        "context_length_exceeded",
      );
    }
    (seq.background ? this.background : this.waiting).push(seq);
  }

  /** The next sequence to admit: a user request first; a background one only with a slot to spare. */
  private nextWaiting(): S[] | null {
    if (this.waiting.length > 0) return this.waiting;
    const spare = this.opts.maxBatch === 1 ? 1 : this.opts.maxBatch - 1;
    return this.background.length > 0 && this.running.size < spare ? this.background : null;
  }

  /** The next step's work, or null when there is none. Not while a step is in flight. */
  schedule(): SchedulerOutput<S> | null {
    if (this.inFlight) throw new Error("schedule() called while a step is in flight");
    let budget = this.opts.maxBatchTokens;
    const entries: ScheduledEntry<S>[] = [];
    // decodes first: they are what users are watching
    for (const [seq, slot] of this.running) {
      if (slot.computed < seq.promptLength) continue;
      const pending = seq.tokens.length - slot.computed;
      if (pending <= 0) continue;
      entries.push({ seq, start: slot.computed, count: pending, sample: true, prefill: false });
      budget -= pending;
    }
    for (const [seq, slot] of this.running) {
      if (budget <= 0) break;
      if (slot.computed >= seq.promptLength) continue;
      entries.push(this.chunk(seq, slot.computed, budget));
      budget -= entries[entries.length - 1].count;
    }
    for (let queue = this.nextWaiting(); budget > 0 && queue && this.running.size < this.opts.maxBatch; queue = this.nextWaiting()) {
      const head = queue[0]!;
      const blocks = this.blocksFor(head);
      if (this.reserved + blocks > this.opts.totalBlocks) break; // FIFO: nobody overtakes the head
      queue.shift();
      this.reserved += blocks;
      this.running.set(head, { computed: 0, blocks, finishing: false });
      const e = this.chunk(head, 0, budget);
      entries.push(e);
      budget -= e.count;
    }
    if (entries.length === 0) return null;
    const out = { entries, numTokens: this.opts.maxBatchTokens - budget };
    this.inFlight = out;
    return out;
  }

  private chunk(seq: S, start: number, budget: number): ScheduledEntry<S> {
    const count = Math.min(seq.tokens.length - start, budget);
    return { seq, start, count, sample: start + count === seq.tokens.length, prefill: true };
  }

  /**
   * The step ran: advances what each sequence holds in the KV cache, frees the ones
   * finished meanwhile, and returns the entries whose logits row must be sampled (row = index).
   */
  update(out: SchedulerOutput<S>): { seq: S; row: number }[] {
    if (out !== this.inFlight) throw new Error("update() with an output that is not the step in flight");
    this.inFlight = null;
    const toSample: { seq: S; row: number }[] = [];
    out.entries.forEach((e, row) => {
      const slot = this.running.get(e.seq);
      if (!slot) return;
      if (slot.finishing) {
        this.release(e.seq, slot);
        return;
      }
      slot.computed = e.start + e.count;
      if (e.sample) toSample.push({ seq: e.seq, row });
    });
    return toSample;
  }

  /** The step failed: nothing it fed is trusted; the engine finishes the sequences. */
  abandon(out: SchedulerOutput<S>): void {
    if (out !== this.inFlight) throw new Error("abandon() with an output that is not the step in flight");
    this.inFlight = null;
    for (const e of out.entries) {
      const slot = this.running.get(e.seq);
      if (slot?.finishing) this.release(e.seq, slot);
    }
  }

  /**
   * Removes a sequence wherever it is and frees its KV cache (at once, or when the step
   * in flight ends if the sequence is part of it). Returns false if it was unknown.
   */
  finish(seq: S): boolean {
    for (const queue of [this.waiting, this.background]) {
      const w = queue.indexOf(seq);
      if (w >= 0) {
        queue.splice(w, 1);
        return true;
      }
    }
    const slot = this.running.get(seq);
    if (!slot || slot.finishing) return false;
    if (this.inFlight?.entries.some((e) => e.seq === seq)) {
      slot.finishing = true;
      return true;
    }
    this.release(seq, slot);
    return true;
  }

  /** Every queued request (for close()). */
  drainWaiting(): S[] {
    return [...this.waiting.splice(0, this.waiting.length), ...this.background.splice(0, this.background.length)];
  }

  runningSeqs(): S[] {
    return [...this.running].filter(([, s]) => !s.finishing).map(([seq]) => seq);
  }

  isRunning(seq: S): boolean {
    const slot = this.running.get(seq);
    return slot !== undefined && !slot.finishing;
  }

  private release(seq: S, slot: Slot): void {
    this.running.delete(seq);
    this.reserved -= slot.blocks;
    this.kv.freeSeq(seq.seqId);
  }
}
