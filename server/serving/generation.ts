// Runs the engine requests behind one API request (n choices, several prompts) and
// either collects them or streams their events interleaved as they come.
import type { FinishReason, GenerateRequest, GenerationEvent, SamplingParams, Timings, TokenLogprob } from "../../engine/types.js";
import type { ConstraintFactory, ServingEngine } from "./serving.js";

/** One engine request: choice `index` of the API response. */
export interface ChoiceSpec {
  index: number;
  promptTokens: number[];
  params: SamplingParams;
  /** the served variant's adapter (null: the base weights) */
  adapter: string | null;
  /** structured output / forced tool call: makes this choice's grammar state */
  constraint?: ConstraintFactory | null;
  /** echo + logprobs: the prompt tokens' log-probs with this many alternatives */
  promptLogprobs?: number | null;
}

export interface ChoiceResult {
  index: number;
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprob[];
  /** echo + logprobs: each prompt token's log-prob (null for the first); empty when not asked */
  promptLogprobs: (TokenLogprob | null)[];
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** the engine's timings; null until the choice finished */
  timings: Timings | null;
}

export interface TaggedEvent {
  index: number;
  event: GenerationEvent;
}

async function submit(engine: ServingEngine, spec: ChoiceSpec, signal: AbortSignal): Promise<AsyncIterator<GenerationEvent>> {
  const constraint = spec.constraint ? await spec.constraint() : null;
  const req: GenerateRequest = {
    promptTokens: spec.promptTokens,
    params: spec.params,
    signal,
    adapter: spec.adapter,
    constraint,
    promptLogprobs: spec.promptLogprobs ?? null,
  };
  return engine.generate(req)[Symbol.asyncIterator]();
}

/**
 * Interleaves the events of all choices in arrival order. `admitted` settles once every
 * choice has produced its first event (or one failed): the stream's headers go out only
 * then, so a full queue or a bad prompt still gets a proper status code.
 * Aborting `signal` cancels every engine request still running. `onTokens` hears of every
 * generated token as it comes (the key's token budget).
 */
export class ChoiceStream implements AsyncIterable<TaggedEvent> {
  readonly admitted: Promise<void>;
  #queue: TaggedEvent[] = [];
  #failure: { error: unknown } | null = null;
  #running: number;
  #wake: (() => void) | null = null;
  readonly #controller = new AbortController();

  constructor(
    engine: ServingEngine,
    readonly specs: readonly ChoiceSpec[],
    signal: AbortSignal,
    readonly onTokens: ((tokens: number) => void) | null = null,
  ) {
    this.#running = specs.length;
    const onAbort = () => this.#controller.abort(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });

    let firsts = 0;
    let admit!: () => void;
    let reject!: (e: unknown) => void;
    this.admitted = new Promise<void>((res, rej) => {
      admit = res;
      reject = rej;
    });
    // nobody may await `admitted` once the stream is consumed directly
    this.admitted.catch(() => undefined);
    if (specs.length === 0) admit();

    for (const spec of specs) {
      void this.#pump(engine, spec, () => {
        if (++firsts === specs.length) admit();
      }, reject).finally(() => {
        if (--this.#running === 0) signal.removeEventListener("abort", onAbort);
        this.#notify();
      });
    }
  }

  async #pump(engine: ServingEngine, spec: ChoiceSpec, first: () => void, fail: (e: unknown) => void): Promise<void> {
    let seenFirst = false;
    let counted = 0;
    try {
      const it = await submit(engine, spec, this.#controller.signal);
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        if (this.onTokens) {
          // deltas as they come; the final usage settles any token no delta carried
          const n = r.value.type === "delta" ? r.value.tokenIds.length : Math.max(0, r.value.usage.completionTokens - counted);
          counted += n;
          if (n > 0) this.onTokens(n);
        }
        if (!seenFirst) {
          seenFirst = true;
          first();
        }
        this.#queue.push({ index: spec.index, event: r.value });
        this.#notify();
      }
    } catch (error) {
      if (!this.#failure) this.#failure = { error };
      fail(error);
      // one choice failing fails the request: stop the others too
      this.#controller.abort(error);
    }
    if (!seenFirst) first();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Cancels every choice still generating (client gone, or the response failed). */
  cancel(): void {
    this.#controller.abort(new Error("cancelled by the server"));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TaggedEvent> {
    try {
      for (;;) {
        if (this.#failure) throw this.#failure.error;
        const next = this.#queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (this.#running === 0) return;
        await new Promise<void>((res) => (this.#wake = res));
      }
    } finally {
      // the consumer stopped early (or finished): nothing may keep generating
      if (this.#running > 0) this.cancel();
    }
  }
}

/** Gathers each choice's text, tokens, logprobs, finish and timings from its events. */
export class ChoiceCollector {
  readonly #results = new Map<number, ChoiceResult>();

  constructor(specs: readonly ChoiceSpec[]) {
    for (const spec of specs)
      this.#results.set(spec.index, {
        index: spec.index,
        text: "",
        tokenIds: [],
        logprobs: [],
        promptLogprobs: [],
        finishReason: "length",
        promptTokens: spec.promptTokens.length,
        completionTokens: 0,
        timings: null,
      });
  }

  add({ index, event }: TaggedEvent): void {
    const r = this.#results.get(index)!;
    if (event.type === "delta") {
      r.text += event.text;
      r.tokenIds.push(...event.tokenIds);
      r.logprobs.push(...event.logprobs);
      if (event.promptLogprobs) r.promptLogprobs = event.promptLogprobs;
    } else {
      r.finishReason = event.finishReason;
      r.promptTokens = event.usage.promptTokens;
      r.completionTokens = event.usage.completionTokens;
      r.timings = event.timings;
    }
  }

  /** by choice index */
  results(): ChoiceResult[] {
    return [...this.#results.values()].sort((a, b) => a.index - b.index);
  }
}

/** Runs all choices to the end and gathers each one's text, tokens and logprobs. */
export async function collectChoices(
  engine: ServingEngine,
  specs: readonly ChoiceSpec[],
  signal: AbortSignal,
  onTokens: ((tokens: number) => void) | null = null,
): Promise<ChoiceResult[]> {
  const collector = new ChoiceCollector(specs);
  for await (const tagged of new ChoiceStream(engine, specs, signal, onTokens)) collector.add(tagged);
  return collector.results();
}
