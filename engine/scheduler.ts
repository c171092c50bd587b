// Continuous batching, vLLM style: schedule() → SchedulerOutput, the engine runs one
// forward over it, update(output) → which rows to sample. Requests join and leave the
// running set between steps.
//
// Policy:
// - waiting is FIFO within a priority (lower first: serving before a job's rollouts; a
//   waiting request preempts running ones of a worse priority to get a slot and blocks),
//   bounded by maxQueue for the requests that count against it; the head is admitted
//   only when a running slot (maxBatch) and its prompt's KV blocks plus a watermark are
//   free. A head that does not fit blocks those behind it (no overtaking), so a long
//   request cannot starve.
// - KV blocks are accounted as sequences grow (vLLM's block manager): admission takes
//   the prompt's blocks, each decode the block its next token needs. When none is left
//   the newest running sequence of the lowest priority is preempted by recompute: its
//   blocks are freed and it goes back to the front of the waiting queue with everything
//   it generated, to be prefilled again (its sampling state lives on the request, so
//   the output is the same as an uninterrupted run). A running request never fails.
//   The count is an upper bound on the native pool's use (sliding windows give blocks
//   back early), so the native pool never runs out.
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
  /** lower is admitted first; 0 = serving, higher = background (a job's rollouts) */
  readonly priority?: number;
  /** false: does not count against maxQueue (a job's rollouts; the job bounds them) */
  readonly countsAgainstQueue?: boolean;
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
  /** tokens fed as prefill since admission: the prompt, or after a preemption everything */
  prefillTo: number;
  blocks: number;
  /** finished while its step was in flight: free when the step ends */
  finishing: boolean;
}

export class Scheduler<S extends SchedSeq> {
  private readonly opts: SchedulerOptions;
  private readonly kv: KvPool;
  private readonly waiting: S[] = [];
  /** admission order, which is also batch order */
  private readonly running = new Map<S, Slot>();
  private reserved = 0;
  /** waiting requests that count against maxQueue (not a job's rollouts, not the preempted) */
  private readonly queued = new Set<S>();
  private preemptions = 0;
  /** blocks admission leaves free so that running decodes do not preempt at once (vLLM: 1%) */
  private readonly watermark: number;
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
    this.watermark = Math.floor(opts.totalBlocks * 0.01);
  }

  /** tokens one sequence may hold: prompt + max_tokens must not exceed it */
  get capacityTokens(): number {
    return this.opts.totalBlocks * this.opts.blockSize;
  }

  /** blocks holding `tokens` tokens */
  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.opts.blockSize);
  }

  /** sequences preempted (by recompute) since the start */
  get numPreemptions(): number {
    return this.preemptions;
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.size;
  }

  /** blocks held by running sequences */
  get reservedBlocks(): number {
    return this.reserved;
  }

  /** Whether a waiting or running sequence satisfies `pred`. */
  some(pred: (seq: S) => boolean): boolean {
    return this.waiting.some(pred) || [...this.running.keys()].some(pred);
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.size > 0;
  }

  /** Queues a request; throws EngineError "queue_full" when maxQueue are already waiting. */
  add(seq: S): void {
    const counts = seq.countsAgainstQueue !== false;
    if (counts && this.queued.size >= this.opts.maxQueue) {
      throw new EngineError(`the request queue is full (${this.opts.maxQueue} waiting); retry later`, "queue_full");
    }
    // a sequence must fit the pool alone, or preempting everyone else would not let it finish
    if (this.blocksFor(seq.promptLength + seq.maxTokens) > this.opts.totalBlocks) {
      throw new EngineError(
        `prompt + max_tokens (${seq.promptLength + seq.maxTokens}) exceeds the KV cache capacity (${this.capacityTokens} tokens)`,
        "context_length_exceeded",
      );
    }
    // behind everyone of its priority or better
    let at = this.waiting.length;
    while (at > 0 && prio(this.waiting[at - 1]) > prio(seq)) at--;
    this.waiting.splice(at, 0, seq);
    if (counts) this.queued.add(seq);
  }

  /** The next step's work, or null when there is none. Not while a step is in flight. */
  schedule(): SchedulerOutput<S> | null {
    if (this.inFlight) throw new Error("schedule() called while a step is in flight");
    let budget = this.opts.maxBatchTokens;
    const entries: ScheduledEntry<S>[] = [];
    if (this.waiting.length > 0) this.makeRoomFor(this.waiting[0]);
    let preempted = false;
    // decodes first: they are what users are watching
    for (const [seq, slot] of [...this.running]) {
      if (!this.running.has(seq)) continue; // preempted for an older one in this loop
      if (slot.computed < slot.prefillTo) continue;
      const pending = seq.tokens.length - slot.computed;
      if (pending <= 0) continue;
      const before = this.preemptions;
      const grown = this.grow(seq, slot, slot.computed + pending);
      if (this.preemptions !== before) {
        preempted = true;
        // a victim of a higher priority number may be older and already scheduled
        for (let i = entries.length - 1; i >= 0; i--) {
          if (!this.running.has(entries[i].seq)) budget += entries.splice(i, 1)[0].count;
        }
      }
      if (!grown) continue; // it was the victim itself
      entries.push({ seq, start: slot.computed, count: pending, sample: true, prefill: false });
      budget -= pending;
    }
    for (const [seq, slot] of this.running) {
      if (budget <= 0) break;
      if (slot.computed >= slot.prefillTo) continue;
      entries.push(this.chunk(seq, slot.computed, budget));
      budget -= entries[entries.length - 1].count;
    }
    // after a preemption, admitting would only preempt again (vLLM does the same)
    while (!preempted && budget > 0 && this.waiting.length > 0 && this.running.size < this.opts.maxBatch) {
      const head = this.waiting[0];
      const blocks = this.blocksFor(head.tokens.length);
      // FIFO: nobody overtakes the head. With nothing running it goes in regardless of
      // the watermark (add() checked it fits the pool alone).
      if (this.reserved + blocks + this.watermark > this.opts.totalBlocks && this.running.size > 0) break;
      this.waiting.shift();
      this.queued.delete(head);
      this.reserved += blocks;
      this.running.set(head, { computed: 0, prefillTo: head.tokens.length, blocks, finishing: false });
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
   * Makes `seq` hold blocks for `tokens` tokens, preempting the newest running sequence
   * of the lowest priority while the pool is short. False when `seq` itself was the victim.
   */
  private grow(seq: S, slot: Slot, tokens: number): boolean {
    const need = this.blocksFor(tokens) - slot.blocks;
    while (this.reserved + need > this.opts.totalBlocks) {
      const victim = this.victim();
      this.preempt(victim);
      if (victim === seq) return false;
    }
    slot.blocks += Math.max(0, need);
    this.reserved += Math.max(0, need);
    return true;
  }

  /**
   * A waiting request of a better priority than some running ones (a user while a job's
   * rollouts fill the batch) takes their slot and blocks: they are preempted, newest first.
   */
  private makeRoomFor(head: S): void {
    const blocks = this.blocksFor(head.tokens.length);
    while (this.running.size > 0) {
      if (this.running.size < this.opts.maxBatch && this.reserved + blocks + this.watermark <= this.opts.totalBlocks) return;
      const victim = this.victim();
      if (prio(victim) <= prio(head)) return;
      this.preempt(victim);
    }
  }

  /** the newest running sequence of the lowest priority (largest number) */
  private victim(): S {
    let best: S | null = null;
    for (const seq of this.running.keys()) if (best === null || prio(seq) >= prio(best)) best = seq;
    return best!;
  }

  /** Frees the sequence's blocks and puts it at the front of its priority in the queue. */
  private preempt(seq: S): void {
    const slot = this.running.get(seq)!;
    this.release(seq, slot);
    this.preemptions++;
    let at = 0;
    while (at < this.waiting.length && prio(this.waiting[at]) < prio(seq)) at++;
    // victims go newest first, so an older one preempted later lands in front of it
    this.waiting.splice(at, 0, seq);
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
    const w = this.waiting.indexOf(seq);
    if (w >= 0) {
      this.waiting.splice(w, 1);
      this.queued.delete(seq);
      return true;
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
    this.queued.clear();
    return this.waiting.splice(0, this.waiting.length);
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

function prio(seq: SchedSeq): number {
  return seq.priority ?? 0;
}
