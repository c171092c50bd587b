// The generation engine: one loop drives forward() steps back to back while there is
// work (never two at once), and turns each step's logits into per-request events.
//
//   generate() ──► Scheduler.waiting ──schedule()──► native.forward() ──update()──► sample,
//   detokenize, stop strings ──► the request's event channel ──► the caller's for-await.
//
// A row whose sampling needs no grammar mask or logprobs (penalties and logit_bias go along
// as edits) is sampled by the forward step itself on its own thread, bit for bit as the JS
// sampler would (native/src/cpu/sample.cc), and its logits land in one buffer reused step
// after step: the JS thread between two steps is left with the cheap bookkeeping. Even that
// overlaps the step after: once a step's tokens are taken (appended, EOS and max_tokens
// settled) the next step is launched, and only then are they told — detokenized, matched
// against stop strings, sent as events to the routes, which write them out. A stop string
// thus ends its request one step late: the row computed for it meanwhile is dropped.
//
// Errors from generate(): everything that can be known at submission (engine_closed,
// invalid_request, context_length_exceeded, queue_full, an already-aborted signal →
// cancelled) is thrown synchronously by generate() itself, before any iteration, so the
// server can answer with a status code before it starts a stream. Later failures
// (cancelled, engine_closed, internal) are thrown by the iterator.
import { performance } from "node:perf_hooks";
import { SAMPLE_FIELDS, type ForwardBatch, type ForwardSampling, type KvStats } from "../native/index.js";
import { EngineError } from "./errors.js";
import { Rng } from "./rng.js";
import { Sampler, logitEdits, parseLogitBias, type LogitBias } from "./sampling.js";
import { Scheduler, type ScheduledEntry, type SchedSeq, type SchedulerOutput } from "./scheduler.js";
import { StopMatcher } from "./stop.js";
import type {
  Detokenizer,
  FinishReason,
  GenerateRequest,
  GenerationEvent,
  SamplingParams,
  TokenConstraint,
  TokenLogprob,
  Tokenizer,
} from "./types.js";

/** The part of NativeModel the engine drives. */
export interface ModelRunner {
  forward(batch: ForwardBatch): Promise<Float32Array>;
  freeSeq(seqId: number): void;
  kvStats(): KvStats;
}

export interface EngineModel {
  native: ModelRunner;
  tokenizer: Tokenizer;
  /** most tokens (prompt + completion) one sequence may hold */
  maxContext: number;
}

export interface EngineOptions {
  /** most sequences in one forward step */
  maxBatch: number;
  /** most requests waiting for a slot; more → "queue_full" */
  maxQueue: number;
  /** most tokens in one forward step (decodes + prefill chunks); >= maxBatch */
  maxBatchTokens: number;
  /** told about every token and every finished request (metrics) */
  observer?: EngineObserver;
}

/** What a finished request looked like, for metrics; `adapter` null = the base weights. */
export interface FinishedRequest {
  adapter: string | null;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** submit → first scheduled */
  queuedMs: number;
  /** submit → first token */
  firstTokenMs: number;
  /** submit → finished */
  totalMs: number;
}

/** Hooks the engine calls on its loop; they must be cheap and must not throw. */
export interface EngineObserver {
  /** time between two consecutive tokens of one request (from its second token on) */
  interTokenMs(adapter: string | null, ms: number): void;
  finished(r: FinishedRequest): void;
  /** a request that ended without finishing (client gone, engine closed, a failed step) */
  aborted(adapter: string | null, reason: "cancelled" | "failed"): void;
  /** how long the model was busy with one forward step (serving) or one exclusive task (training) */
  busy?(kind: "forward" | "exclusive", ms: number): void;
}

export interface EngineCounters {
  submitted: number;
  completed: number;
  cancelled: number;
  failed: number;
  rejected: number;
  promptTokens: number;
  completionTokens: number;
  steps: number;
}

export interface EngineStats {
  running: number;
  waiting: number;
  /** fraction of the KV pool's blocks in use, 0..1 */
  kvUsage: number;
  /** running sequences preempted (by recompute) when the KV pool ran short, since the start */
  preemptions: number;
  counters: EngineCounters;
}

/** A forward step started: its logits to come, and how they were asked for. */
interface LaunchedStep {
  logits: Promise<Float32Array>;
  /** one row per input token (prompt logprobs) instead of one per sequence */
  allRows: boolean;
  /** the rows the step samples itself, and which entry each is */
  picked: { sampling: ForwardSampling; index: Int32Array } | null;
}

/** A token taken for a request, not yet told: what report() needs once the next step runs. */
interface TakenToken {
  seq: Request;
  tok: number;
  eos: boolean;
  /** the request reached max_tokens with it */
  length: boolean;
  logprobs: TokenLogprob[];
}

/** One pushed-to, pulled-from queue of events per request. */
class Channel implements AsyncIterator<GenerationEvent> {
  private readonly queue: GenerationEvent[] = [];
  private error: Error | null = null;
  private ended = false;
  private waiter: { resolve: (r: IteratorResult<GenerationEvent>) => void; reject: (e: Error) => void } | null = null;

  constructor(private readonly onReturn: () => void) {}

  push(ev: GenerationEvent): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: ev, done: false });
    } else this.queue.push(ev);
  }

  end(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    if (error) this.error = error;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      if (this.queue.length > 0) return w.resolve({ value: this.queue.shift()!, done: false });
      if (error) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<GenerationEvent>> {
    if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift()!, done: false });
    if (this.ended) {
      const err = this.error;
      this.error = null; // thrown once; afterwards the iterator is simply done
      return err ? Promise.reject(err) : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** the consumer stopped iterating (break, throw): the generation is cancelled */
  return(): Promise<IteratorResult<GenerationEvent>> {
    if (!this.ended) this.onReturn();
    this.ended = true;
    this.queue.length = 0;
    this.error = null;
    return Promise.resolve({ value: undefined, done: true });
  }
}

class Request implements SchedSeq {
  readonly priority: number;
  readonly countsAgainstQueue: boolean;
  readonly promptLength: number;
  readonly maxTokens: number;
  readonly tokens: number[];
  readonly counts = new Map<number, number>();
  readonly rng: Rng;
  readonly bias: LogitBias;
  readonly detok: Detokenizer;
  readonly stop: StopMatcher;
  /** structured output / forced tool call: the grammar's state, advanced per sampled token */
  readonly constraint: TokenConstraint | null;
  /** the grammar's mask for the token being sampled now, computed while the forward step runs */
  pendingMask: Promise<Int32Array> | null = null;
  /** echo + logprobs: alternatives per prompt token (null: not asked), and those read so far */
  readonly promptLogprobs: number | null;
  readonly promptLp: (TokenLogprob | null)[] = [];
  generated = 0;
  readonly submittedAt = performance.now();
  scheduledAt = -1;
  firstTokenAt = -1;
  lastTokenAt = -1;
  detachAbort: () => void = () => {};
  /** completed, cancelled or failed: nothing more is told */
  over = false;

  constructor(
    readonly seqId: number,
    prompt: readonly number[],
    readonly params: SamplingParams,
    readonly adapter: string | null,
    tokenizer: Tokenizer,
    readonly channel: Channel,
    constraint: TokenConstraint | null,
    promptLogprobs: number | null,
    background: boolean,
  ) {
    this.priority = background ? 1 : 0;
    this.countsAgainstQueue = !background;
    this.constraint = constraint;
    this.promptLogprobs = promptLogprobs;
    if (promptLogprobs !== null) this.promptLp.push(null); // nothing comes before the first token
    this.promptLength = prompt.length;
    this.maxTokens = params.maxTokens;
    this.tokens = prompt.slice();
    this.rng = new Rng(params.seed);
    this.bias = parseLogitBias(params.logitBias, Number.MAX_SAFE_INTEGER);
    this.detok = tokenizer.detokenizer(prompt);
    this.stop = new StopMatcher(params.stop);
  }
}

export class Engine {
  private readonly native: ModelRunner;
  private readonly tokenizer: Tokenizer;
  private readonly eos: Set<number>;
  private readonly scheduler: Scheduler<Request>;
  private readonly observer: EngineObserver | null;
  /** prompt + max_tokens limit: the model's context, or the KV pool if smaller */
  readonly maxContext: number;
  /** most requests that may wait at once: a request of more choices can never be admitted */
  readonly maxQueue: number;
  private sampler: Sampler | null = null;
  /** the logits of a step of one row per sequence, reused step after step (maxBatch × V) */
  private logitsBuf: Float32Array | null = null;
  private readonly maxBatch: number;
  private nextSeqId = 1;
  private closed = false;
  private loop: Promise<void> | null = null;
  private wakeQueued = false;
  /** work that needs the native model to itself (training calls), run between forward steps */
  private readonly exclusive: { work: () => Promise<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  private readonly counters: EngineCounters = {
    submitted: 0,
    completed: 0,
    cancelled: 0,
    failed: 0,
    rejected: 0,
    promptTokens: 0,
    completionTokens: 0,
    steps: 0,
  };

  constructor(model: EngineModel, opts: EngineOptions) {
    this.native = model.native;
    this.tokenizer = model.tokenizer;
    this.eos = new Set(model.tokenizer.eosIds);
    this.observer = opts.observer ?? null;
    const kv = model.native.kvStats();
    this.scheduler = new Scheduler<Request>(
      { ...opts, blockSize: kv.blockSize, totalBlocks: kv.totalBlocks },
      { freeSeq: (id) => this.native.freeSeq(id) },
    );
    this.maxContext = Math.min(model.maxContext, this.scheduler.capacityTokens);
    this.maxQueue = opts.maxQueue;
    this.maxBatch = opts.maxBatch;
  }

  /**
   * Starts a generation. Throws EngineError synchronously for what is wrong at submission
   * (see the file comment); the returned iterable yields deltas then one "done" event.
   * Breaking out of the iteration cancels the request.
   */
  generate(req: GenerateRequest): AsyncIterable<GenerationEvent> {
    const { promptTokens: prompt, params, signal } = req;
    const constraint = req.constraint ?? null;
    try {
      this.validate(prompt, params, signal);
    } catch (e) {
      this.counters.rejected++;
      constraint?.dispose();
      throw e;
    }
    let request: Request | null = null;
    const channel = new Channel(() => {
      if (request) this.cancel(request);
    });
    request = new Request(this.takeSeqId(), prompt, params, req.adapter ?? null, this.tokenizer, channel, constraint, req.promptLogprobs ?? null, req.background === true);
    try {
      this.scheduler.add(request);
    } catch (e) {
      this.counters.rejected++;
      constraint?.dispose();
      throw e;
    }
    this.counters.submitted++;
    if (signal) {
      const r = request;
      const onAbort = (): void => this.cancel(r);
      signal.addEventListener("abort", onAbort, { once: true });
      r.detachAbort = () => signal.removeEventListener("abort", onAbort);
    }
    this.wake();
    let handedOut = false;
    return {
      [Symbol.asyncIterator]: () => {
        if (handedOut) throw new Error("a generation can be iterated only once");
        handedOut = true;
        return channel;
      },
    };
  }

  /**
   * Runs `work` — calls that need the native model to itself, such as a training job's
   * trainForward/trainBackward/step on the serving weights — between two forward steps,
   * never during one. Serving keeps priority: while requests run or wait, one task runs
   * after each forward step (so a decode step waits for at most one task: a job keeps its
   * tasks small to bound that); with nothing to serve, tasks run back to back.
   */
  runExclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new EngineError("the engine is closed", "engine_closed"));
    return new Promise<T>((resolve, reject) => {
      this.exclusive.push({ work, resolve: resolve as (v: unknown) => void, reject });
      this.wake();
    });
  }

  /** Whether a waiting or running request generates with adapter `name` (before removing it). */
  usesAdapter(name: string): boolean {
    return this.scheduler.some((seq) => seq.adapter === name);
  }

  stats(): EngineStats {
    const kv = this.native.kvStats();
    return {
      running: this.scheduler.numRunning,
      waiting: this.scheduler.numWaiting,
      kvUsage: kv.totalBlocks > 0 ? (kv.totalBlocks - kv.freeBlocks) / kv.totalBlocks : 0,
      preemptions: this.scheduler.numPreemptions,
      counters: { ...this.counters },
    };
  }

  /**
   * Stops taking requests, fails the waiting ones with "engine_closed", lets the step in
   * flight finish, then fails the running ones too and frees their KV. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      for (const r of this.scheduler.drainWaiting()) this.fail(r, new EngineError("the engine was closed", "engine_closed"));
    }
    await this.loop;
    for (const t of this.exclusive.splice(0)) t.reject(new EngineError("the engine was closed", "engine_closed"));
    for (const r of this.scheduler.runningSeqs()) {
      this.scheduler.finish(r);
      this.fail(r, new EngineError("the engine was closed", "engine_closed"));
    }
  }

  private validate(prompt: readonly number[], params: SamplingParams, signal: AbortSignal | undefined): void {
    if (this.closed) throw new EngineError("the engine is closed", "engine_closed");
    if (prompt.length === 0) throw new EngineError("the prompt must hold at least one token", "invalid_request");
    const V = this.tokenizer.vocabSize;
    for (const t of prompt) {
      if (!Number.isInteger(t) || t < 0 || t >= V) {
        throw new EngineError(`prompt token id ${t} is outside the vocabulary [0, ${V})`, "invalid_request");
      }
    }
    if (!Number.isInteger(params.maxTokens) || params.maxTokens < 1) {
      throw new EngineError(`max_tokens must be a positive integer, got ${params.maxTokens}`, "invalid_request");
    }
    const total = prompt.length + params.maxTokens;
    if (total > this.maxContext) {
      throw new EngineError(
        `This model's maximum context length is ${this.maxContext} tokens. However, you requested ${total} tokens ` +
          `(${prompt.length} in the prompt, ${params.maxTokens} for the completion). ` +
          `Please reduce the length of the prompt or max_tokens.`,
        "context_length_exceeded",
      );
    }
    if (signal?.aborted) throw new EngineError("the request was aborted before it started", "cancelled");
  }

  private takeSeqId(): number {
    const id = this.nextSeqId;
    this.nextSeqId = id >= 0x7fffffff ? 1 : id + 1;
    return id;
  }

  /**
   * Starts the loop on a later turn, so requests submitted together (n > 1, a burst)
   * are admitted into the same first step.
   */
  private wake(): void {
    if (this.loop || this.wakeQueued || this.closed) return;
    this.wakeQueued = true;
    setImmediate(() => {
      this.wakeQueued = false;
      if (this.loop || this.closed) return;
      this.loop = this.run().finally(() => {
        this.loop = null;
        if (this.scheduler.hasWork() || this.exclusive.length > 0) this.wake();
      });
    });
  }

  private async run(): Promise<void> {
    // what the last step's tokens say (text, stop strings, events), told while the next step runs
    let report: (() => void) | null = null;
    try {
      while (!this.closed) {
        const out = this.scheduler.schedule();
        let t0 = performance.now();
        const launched = out ? this.launch(out) : null;
        report?.();
        report = null;
        if (out) {
          report = await this.finishStep(out, launched!);
          this.observer?.busy?.("forward", performance.now() - t0);
        }
        const task = this.closed ? undefined : this.exclusive.shift();
        if (task) {
          report?.();
          report = null;
          t0 = performance.now();
          await task.work().then(task.resolve, task.reject);
          this.observer?.busy?.("exclusive", performance.now() - t0);
        }
        if (!out && !task) return;
      }
    } finally {
      report?.();
    }
  }

  /** Starts the forward step over `out` (the native side runs it while this thread goes on). */
  private launch(out: SchedulerOutput<Request>): LaunchedStep {
    const n = out.entries.length;
    const seqIds = new Int32Array(n);
    const counts = new Int32Array(n);
    const tokens = new Int32Array(out.numTokens);
    let k = 0;
    const now = performance.now();
    // the base-only batch (the common case) sends no adapter list at all
    const adapters = out.entries.some((e) => e.seq.adapter !== null) ? out.entries.map((e) => e.seq.adapter) : undefined;
    out.entries.forEach((e, i) => {
      seqIds[i] = e.seq.seqId;
      counts[i] = e.count;
      for (let j = 0; j < e.count; j++) tokens[k++] = e.seq.tokens[e.start + j];
      if (e.seq.scheduledAt < 0) e.seq.scheduledAt = now;
    });
    // grammar masks are computed on this thread while the forward step runs on the native one
    for (const e of out.entries) {
      if (!e.sample || !e.seq.constraint) continue;
      e.seq.pendingMask = e.seq.constraint.nextMask();
      e.seq.pendingMask.catch(() => undefined); // awaited below, unless the request ends first
    }
    // prompt log-probs need every prompt position's row: then the whole step returns all rows
    const allRows = out.entries.some((e) => e.prefill && e.seq.promptLogprobs !== null);
    const picked = allRows ? null : this.nativeSampling(out.entries);
    // one row per sequence fits the reused buffer; a step of all rows gets a fresh array
    const outBuf = !allRows && this.logitsBuf && this.logitsBuf.length >= n * this.sampler!.vocabSize ? this.logitsBuf : undefined;
    let logits: Promise<Float32Array>;
    try {
      logits = this.native.forward({ seqIds, tokens, counts, logits: allRows ? "all" : "last", adapters, out: outBuf, sample: picked?.sampling });
    } catch (cause) {
      logits = Promise.reject(cause);
    }
    logits.catch(() => undefined); // awaited by finishStep, after the last step's report
    return { logits, allRows, picked };
  }

  /**
   * Waits for the step, then takes each sampled token (the next step can be scheduled from
   * here on) and returns what is left to tell: text, stop strings and events, which the
   * caller runs while the next step computes.
   */
  private async finishStep(out: SchedulerOutput<Request>, launched: LaunchedStep): Promise<(() => void) | null> {
    const { allRows, picked } = launched;
    const rows = allRows ? out.numTokens : out.entries.length;
    let logits: Float32Array;
    try {
      logits = await launched.logits;
      if (logits.length === 0 || logits.length % rows !== 0) {
        throw new Error(`forward returned ${logits.length} logits for ${rows} rows`);
      }
    } catch (cause) {
      this.scheduler.abandon(out);
      const err = new EngineError(`forward step failed: ${(cause as Error)?.message ?? String(cause)}`, "internal", { cause });
      for (const e of out.entries) {
        if (this.scheduler.finish(e.seq)) this.fail(e.seq, err);
      }
      return null;
    }
    this.counters.steps++;
    const V = logits.length / rows;
    if (!this.sampler || this.sampler.vocabSize !== V) {
      this.sampler = new Sampler(V);
      this.logitsBuf = new Float32Array(this.maxBatch * V);
    }
    // entry i's rows start at firstRow[i] (one row per entry unless all rows came back)
    const firstRow: number[] = [];
    let r0 = 0;
    for (const e of out.entries) {
      firstRow.push(r0);
      r0 += allRows ? e.count : 1;
    }
    if (allRows)
      out.entries.forEach((e, i) => this.scheduler.isRunning(e.seq) && this.readPromptLogprobs(e.seq, e.start, e.count, logits.subarray(firstRow[i]! * V, (firstRow[i]! + e.count) * V), V));
    const taken: TakenToken[] = [];
    for (const { seq, row: entry } of this.scheduler.update(out)) {
      const row = firstRow[entry]! + (allRows ? out.entries[entry]!.count - 1 : 0);
      let mask: Int32Array | null = null;
      if (seq.pendingMask) {
        try {
          mask = await seq.pendingMask;
        } catch (cause) {
          if (this.scheduler.finish(seq)) this.fail(seq, new EngineError(`the grammar failed: ${(cause as Error)?.message ?? String(cause)}`, "internal", { cause }));
          continue;
        }
        seq.pendingMask = null;
        // the request may have been cancelled while the mask was awaited
        if (!this.scheduler.isRunning(seq)) continue;
      }
      const j = picked ? picked.index[entry]! : -1;
      const tok = j >= 0 ? picked!.sampling.tokens[j]! : -1;
      // a runner that does not sample (tests' fakes) leaves -1: the JS sampler takes the same draw
      const t = this.take(seq, logits.subarray(row * V, (row + 1) * V), mask, tok >= 0 ? tok : null, j >= 0 ? picked!.sampling.params[j * SAMPLE_FIELDS + 5]! : null);
      if (t) taken.push(t);
    }
    return taken.length > 0 ? () => taken.forEach((t) => this.report(t)) : null;
  }

  /**
   * Prompt log-probs from a prefill chunk's rows [count, V]: row j predicts the token at
   * start + j + 1. Once the whole prompt is read they go out in one delta event.
   */
  private readPromptLogprobs(seq: Request, start: number, count: number, rows: Float32Array, V: number): void {
    if (seq.promptLogprobs === null || start >= seq.promptLength || seq.promptLp.length === seq.promptLength) return;
    const sampler = this.sampler!;
    for (let j = 0; j < count; j++) {
      const pos = start + j + 1;
      if (pos >= seq.promptLength) break;
      if (pos < seq.promptLp.length) continue; // read before a preemption: the prompt is fed again

      seq.promptLp.push(this.tokenLogprob(sampler, rows.subarray(j * V, (j + 1) * V), seq.tokens[pos]!, seq.promptLogprobs));
    }
    if (seq.promptLp.length === seq.promptLength)
      seq.channel.push({ type: "delta", text: "", tokenIds: [], logprobs: [], promptLogprobs: seq.promptLp.slice() });
  }

  /**
   * The rows the native step samples itself (native/index.ts ForwardSampling): every row to
   * sample with no grammar mask or logprobs (penalties and logit_bias go with it as edits). Their uniform draws are taken from each request's Rng now, as the JS sampler
   * would take them, so the stream of draws is the same whichever side samples.
   */
  private nativeSampling(entries: readonly ScheduledEntry<Request>[]): { sampling: ForwardSampling; index: Int32Array } | null {
    const index = new Int32Array(entries.length).fill(-1);
    const params: number[] = [];
    const edits: number[] = [];
    entries.forEach((e, i) => {
      const seq = e.seq;
      const p = seq.params;
      if (!e.sample || seq.constraint || p.logprobs || !Number.isInteger(p.topK)) return;
      const row = params.length / SAMPLE_FIELDS;
      index[i] = row;
      params.push(i, p.temperature, p.topK, p.topP, p.minP, p.temperature > 0 ? seq.rng.nextFloat() : 0);
      const ed = logitEdits(p, seq.bias, seq);
      for (let j = 0; j < ed.length; j += 3) edits.push(row, ed[j]!, ed[j + 1]!, ed[j + 2]!);
    });
    if (params.length === 0) return null;
    const count = params.length / SAMPLE_FIELDS;
    const sampling: ForwardSampling = { params: Float64Array.from(params), tokens: new Int32Array(count).fill(-1) };
    if (edits.length > 0) sampling.edits = Float64Array.from(edits);
    return { sampling, index };
  }

  /**
   * Takes one token for `seq`: `picked` when the native step sampled it, else sampled here
   * from its logits row (with `u`, the draw already taken for it, when there is one). Whatever
   * reads the row (logprobs) happens here, before the next step reuses the logits buffer; a
   * sequence ending on EOS or max_tokens leaves the running set now, so it is not scheduled again.
   */
  private take(seq: Request, row: Float32Array, mask: Int32Array | null, picked: number | null, u: number | null): TakenToken | null {
    const sampler = this.sampler!;
    const p = seq.params;
    const tok = picked ?? sampler.sample(row, p, seq.bias, seq, u === null ? seq.rng : { nextFloat: () => u }, mask);
    if (seq.constraint && !seq.constraint.accept(tok)) {
      this.scheduler.finish(seq);
      this.fail(seq, new EngineError(`the grammar refused token ${tok} that its own mask allowed`, "internal"));
      return null;
    }
    seq.tokens.push(tok);
    seq.generated++;
    seq.counts.set(tok, (seq.counts.get(tok) ?? 0) + 1);
    const now = performance.now();
    if (seq.firstTokenAt < 0) seq.firstTokenAt = now;
    else this.observer?.interTokenMs(seq.adapter, now - seq.lastTokenAt);
    seq.lastTokenAt = now;
    const eos = !p.ignoreEos && this.eos.has(tok);
    const length = !eos && seq.generated >= seq.maxTokens;
    if (eos || length) this.scheduler.finish(seq);
    // the EOS token counts as a completion token but is not reported as text or logprob
    const logprobs: TokenLogprob[] = p.logprobs && !eos ? [this.tokenLogprob(sampler, row, tok, p.topLogprobs)] : [];
    return { seq, tok, eos, length, logprobs };
  }

  /** Tells what a taken token means: its text (held back by stop strings), and the end. */
  private report({ seq, tok, eos, length, logprobs }: TakenToken): void {
    if (seq.over) return; // cancelled or failed since the token was taken
    if (eos) {
      this.flushText(seq);
      return this.complete(seq, "stop", tok);
    }
    const r = seq.stop.push(seq.detok.push(tok));
    seq.channel.push({ type: "delta", text: r.text, tokenIds: [tok], logprobs });
    // a stop string ends it one step late: the step already running computes a row for it that is dropped
    if (r.stopped) return this.complete(seq, "stop");
    if (length) {
      this.flushText(seq);
      return this.complete(seq, "length");
    }
  }

  /** end of generation without a stop string: the detokenizer's tail and held-back text */
  private flushText(seq: Request): void {
    const r = seq.stop.push(seq.detok.flush());
    const text = r.stopped ? r.text : r.text + seq.stop.flush();
    if (text.length > 0) seq.channel.push({ type: "delta", text, tokenIds: [], logprobs: [] });
  }

  private tokenLogprob(sampler: Sampler, row: Float32Array, tok: number, n: number): TokenLogprob {
    const lp = sampler.logprobs(row, tok, n);
    const t = this.tokenizer;
    return {
      token: t.tokenText(tok),
      tokenId: tok,
      logprob: lp.logprob,
      bytes: Array.from(t.tokenBytes(tok)),
      top: lp.top.map((c) => ({
        token: t.tokenText(c.tokenId),
        tokenId: c.tokenId,
        logprob: c.logprob,
        bytes: Array.from(t.tokenBytes(c.tokenId)),
      })),
    };
  }

  private complete(seq: Request, finishReason: FinishReason, eosTokenId: number | null = null): void {
    seq.over = true;
    this.scheduler.finish(seq);
    seq.detachAbort();
    seq.constraint?.dispose();
    const end = performance.now();
    const firstToken = seq.firstTokenAt >= 0 ? seq.firstTokenAt : end;
    const scheduled = seq.scheduledAt >= 0 ? seq.scheduledAt : end;
    this.counters.completed++;
    this.counters.promptTokens += seq.promptLength;
    this.counters.completionTokens += seq.generated;
    this.observer?.finished({
      adapter: seq.adapter,
      finishReason,
      promptTokens: seq.promptLength,
      completionTokens: seq.generated,
      queuedMs: scheduled - seq.submittedAt,
      firstTokenMs: firstToken - seq.submittedAt,
      totalMs: end - seq.submittedAt,
    });
    seq.channel.push({
      type: "done",
      finishReason,
      usage: { promptTokens: seq.promptLength, completionTokens: seq.generated },
      timings: {
        queuedMs: scheduled - seq.submittedAt,
        prefillMs: firstToken - scheduled,
        decodeMs: end - firstToken,
        firstTokenMs: firstToken - seq.submittedAt,
      },
      eosTokenId,
    });
    seq.channel.end();
  }

  /** AbortSignal or the consumer left: drop it from wherever it is, free its KV */
  private cancel(seq: Request): void {
    if (!this.scheduler.finish(seq)) return;
    seq.over = true;
    this.counters.cancelled++;
    this.observer?.aborted(seq.adapter, "cancelled");
    seq.detachAbort();
    seq.constraint?.dispose();
    seq.channel.end(new EngineError("the request was cancelled", "cancelled"));
  }

  private fail(seq: Request, err: EngineError): void {
    seq.over = true;
    if (err.code !== "engine_closed") this.counters.failed++;
    this.observer?.aborted(seq.adapter, err.code === "engine_closed" ? "cancelled" : "failed");
    seq.detachAbort();
    seq.constraint?.dispose();
    seq.channel.end(err);
  }
}
