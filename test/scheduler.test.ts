// The scheduler and the engine loop on a fabricated model: a deterministic fake
// ModelRunner whose logits are a function of each sequence's tokens (so feeding the
// wrong tokens, positions or sequences changes the output), with a KV pool that
// counts blocks like the native one and refuses to overflow.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Engine, type ModelRunner } from "../engine/engine.js";
import { EngineError } from "../engine/errors.js";
import { Scheduler, type SchedSeq } from "../engine/scheduler.js";
import type { ForwardBatch, KvStats } from "../native/index.js";
import type { Detokenizer, SamplingParams, Tokenizer } from "../engine/types.js";
import { collect, samplingParams } from "./generation-helpers.js";

const V = 32;
const EOS = 0;

/** the fabricated model: logits for the next token after `tokens` */
function fakeRow(tokens: readonly number[], eosAtLength: number): Float32Array {
  let h = 2166136261;
  for (const t of tokens) h = Math.imul(h ^ t, 16777619) >>> 0;
  const row = new Float32Array(V);
  for (let j = 0; j < V; j++) row[j] = ((Math.imul(h ^ (j * 40503), 2654435761) >>> 0) % 1000) / 250;
  row[EOS] = tokens.length === eosAtLength ? 100 : -100;
  return row;
}

interface Call {
  batch: ForwardBatch;
  release: () => void;
}

class FakeRunner implements ModelRunner {
  readonly kv = new Map<number, number[]>();
  readonly calls: { seqIds: number[]; counts: number[] }[] = [];
  readonly violations: string[] = [];
  private inFlight: ForwardBatch | null = null;
  private pending: Call[] = [];
  private waiters: ((c: Call) => void)[] = [];

  constructor(
    readonly blockSize = 4,
    readonly totalBlocks = 64,
    /** manual: each forward waits for the test to release it */
    private manual = false,
    readonly eosAtLength = -1,
  ) {}

  forward(batch: ForwardBatch): Promise<Float32Array> {
    if (this.inFlight) this.violations.push("two forwards at once");
    this.inFlight = batch;
    this.calls.push({ seqIds: [...batch.seqIds], counts: [...batch.counts] });
    return new Promise((resolve, reject) => {
      const run = (): void => {
        this.inFlight = null;
        try {
          resolve(this.compute(batch));
        } catch (e) {
          reject(e);
        }
      };
      if (!this.manual) return void setImmediate(run);
      const call = { batch, release: run };
      const w = this.waiters.shift();
      if (w) w(call);
      else this.pending.push(call);
    });
  }

  private compute(batch: ForwardBatch): Float32Array {
    const out = new Float32Array(batch.seqIds.length * V);
    let k = 0;
    batch.seqIds.forEach((id, s) => {
      const seq = this.kv.get(id) ?? [];
      for (let j = 0; j < batch.counts[s]; j++) seq.push(batch.tokens[k++]);
      this.kv.set(id, seq);
      if (this.usedBlocks() > this.totalBlocks) throw new Error("kv_full");
      out.set(fakeRow(seq, this.eosAtLength), s * V);
    });
    return out;
  }

  /** back to releasing every forward by itself, the pending one included */
  goAuto(): void {
    this.manual = false;
    for (const c of this.pending.splice(0)) setImmediate(c.release);
  }

  /** the next forward call (manual mode) */
  nextCall(): Promise<Call> {
    const c = this.pending.shift();
    if (c) return Promise.resolve(c);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  freeSeq(seqId: number): void {
    if (this.inFlight?.seqIds.includes(seqId)) this.violations.push(`freeSeq(${seqId}) during its forward`);
    this.kv.delete(seqId);
  }

  usedBlocks(): number {
    let n = 0;
    for (const s of this.kv.values()) n += Math.ceil(s.length / this.blockSize);
    return n;
  }

  kvStats(): KvStats {
    return { blockSize: this.blockSize, totalBlocks: this.totalBlocks, freeBlocks: this.totalBlocks - this.usedBlocks(), sequences: this.kv.size };
  }
}

/** token i is the letter at 0x40 + i; token 0 is the special EOS */
class FakeTokenizer implements Tokenizer {
  readonly vocabSize = V;
  readonly bosId = null;
  readonly eosIds = [EOS];
  encode(): number[] {
    throw new Error("not used");
  }
  decode(ids: readonly number[]): string {
    return ids.map((i) => this.tokenText(i)).join("");
  }
  tokenBytes(id: number): Uint8Array {
    return Buffer.from(this.tokenText(id));
  }
  tokenText(id: number): string {
    return id === EOS ? "" : String.fromCharCode(0x40 + id);
  }
  isSpecial(id: number): boolean {
    return id === EOS;
  }
  detokenizer(): Detokenizer {
    return { push: (id) => this.tokenText(id), flush: () => "" };
  }
}

const params = (over: Partial<SamplingParams> = {}): SamplingParams => samplingParams({ maxTokens: 8, ...over });

/** greedy continuation computed straight from the fabricated model, one sequence alone */
function expectedGreedy(prompt: number[], maxTokens: number): number[] {
  const toks = prompt.slice();
  const out: number[] = [];
  for (let i = 0; i < maxTokens; i++) {
    const row = fakeRow(toks, -1);
    let best = 0;
    for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
    toks.push(best);
    out.push(best);
  }
  return out;
}


function makeEngine(runner: FakeRunner, opts: Partial<{ maxBatch: number; maxQueue: number; maxBatchTokens: number; maxContext: number }> = {}): Engine {
  return new Engine(
    { native: runner, tokenizer: new FakeTokenizer(), maxContext: opts.maxContext ?? 256 },
    { maxBatch: opts.maxBatch ?? 8, maxQueue: opts.maxQueue ?? 16, maxBatchTokens: opts.maxBatchTokens ?? 64 },
  );
}

function isCode(code: string): (e: unknown) => boolean {
  return (e) => e instanceof EngineError && e.code === code;
}

const prompts = [
  [1, 2, 3],
  [5, 6, 7, 8, 9, 10, 11],
  [4],
  [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
];

// ---- the Scheduler alone ----

interface S extends SchedSeq {
  tokens: number[];
}
const seq = (seqId: number, promptLength: number, maxTokens: number): S => ({
  seqId,
  promptLength,
  maxTokens,
  tokens: Array.from({ length: promptLength }, (_, i) => i + 1),
});

test("scheduler: admission takes the prompt's blocks, FIFO without overtaking; decodes grow and preempt the newest", () => {
  const freed: number[] = [];
  const sch = new Scheduler<S>({ maxBatch: 8, maxQueue: 8, maxBatchTokens: 100, blockSize: 4, totalBlocks: 10 }, { freeSeq: (id) => freed.push(id) });
  const a = seq(1, 8, 8); // 2 blocks now, 4 at most
  const b = seq(2, 8, 8);
  const c = seq(3, 24, 8); // 6 blocks: fills the pool beside a and b
  const d = seq(4, 4, 1); // 1 block: does not fit, and nobody overtakes it
  [a, b, c, d].forEach((s) => sch.add(s));
  const out = sch.schedule()!;
  assert.deepEqual(out.entries.map((e) => e.seq.seqId), [1, 2, 3]);
  assert.equal(sch.reservedBlocks, 10);
  assert.equal(sch.numWaiting, 1);
  sch.update(out);
  [a, b, c].forEach((s) => s.tokens.push(7));
  // a's 9th token needs a 3rd block: the newest (c) is preempted, its blocks freed at once
  const out2 = sch.schedule()!;
  assert.deepEqual(out2.entries.map((e) => [e.seq.seqId, e.count, e.prefill]), [[1, 1, false], [2, 1, false]], "no admission in a step that preempted");
  assert.deepEqual(freed, [3]);
  assert.equal(sch.numPreemptions, 1);
  assert.equal(sch.reservedBlocks, 6);
  assert.equal(sch.numWaiting, 2);
  sch.update(out2);
  [a, b].forEach((s) => s.tokens.push(7));
  const out3 = sch.schedule()!;
  // c (25 tokens now: 7 blocks) is back at the head and does not fit beside a and b (6); d waits behind it
  assert.deepEqual(out3.entries.map((e) => e.seq.seqId), [1, 2]);
  sch.update(out3);
  sch.finish(a);
  assert.deepEqual(freed, [3, 1]);
  b.tokens.push(7);
  const out4 = sch.schedule()!;
  // c is prefilled again over everything it holds, its last token sampled: it continues where it was
  assert.deepEqual(out4.entries.map((e) => [e.seq.seqId, e.start, e.count, e.prefill, e.sample]), [[2, 10, 1, false, true], [3, 0, 25, true, true]]);
  assert.equal(sch.reservedBlocks, 10);
  assert.throws(() => sch.add(seq(5, 400, 1)), isCode("context_length_exceeded"));
});

test("scheduler: preemption requeues victims at the front, oldest first; the newest may preempt itself", () => {
  const freed: number[] = [];
  const sch = new Scheduler<S>({ maxBatch: 8, maxQueue: 8, maxBatchTokens: 100, blockSize: 2, totalBlocks: 6 }, { freeSeq: (id) => freed.push(id) });
  const [a, b, c] = [1, 2, 3].map((id) => seq(id, 4, 8)); // 2 blocks each: the pool is full
  [a, b, c].forEach((s) => sch.add(s));
  sch.update(sch.schedule()!);
  const later = seq(4, 1, 1);
  sch.add(later);
  a.tokens.push(7, 7, 7, 7, 7); // 9 tokens: 5 blocks, so both others must go, newest first
  const out = sch.schedule()!;
  assert.deepEqual(out.entries.map((e) => [e.seq.seqId, e.count]), [[1, 5]]);
  assert.deepEqual(freed, [3, 2]);
  assert.equal(sch.numPreemptions, 2);
  sch.update(out);
  sch.finish(a);
  const out2 = sch.schedule()!;
  // b then c (admission order) before the request that came after them
  assert.deepEqual(out2.entries.map((e) => [e.seq.seqId, e.count]), [[2, 4], [3, 4], [4, 1]]);
  sch.update(out2);
  sch.finish(later);
  b.tokens.push(7); // 5 tokens: 3 blocks
  c.tokens.push(7, 7, 7); // 7 tokens: 4 blocks, and c is the newest: it preempts itself
  const out3 = sch.schedule()!;
  assert.deepEqual(out3.entries.map((e) => e.seq.seqId), [2]);
  assert.deepEqual(freed, [3, 2, 1, 4, 3]);
  assert.equal(sch.numWaiting, 1);
});

test("scheduler: serving requests go before background ones, which never count against maxQueue", () => {
  const sch = new Scheduler<S>({ maxBatch: 1, maxQueue: 2, maxBatchTokens: 100, blockSize: 2, totalBlocks: 6 }, { freeSeq: () => {} });
  const bg = (id: number): S => ({ ...seq(id, 4, 1), priority: 1, countsAgainstQueue: false });
  const jobs = [1, 2, 3, 4, 5].map(bg);
  jobs.forEach((s) => sch.add(s)); // beyond maxQueue: a job's rollouts are not counted
  const users = [6, 7].map((id) => seq(id, 2, 1));
  users.forEach((s) => sch.add(s));
  assert.throws(() => sch.add(seq(8, 2, 1)), isCode("queue_full"));
  const order: number[] = [];
  for (let out = sch.schedule(); out; out = sch.schedule()) {
    const e = out.entries[0];
    order.push(e.seq.seqId);
    sch.update(out);
    sch.finish(e.seq);
  }
  assert.deepEqual(order, [6, 7, 1, 2, 3, 4, 5]);
});

test("scheduler: a waiting serving request preempts running background ones for a slot", () => {
  const freed: number[] = [];
  const sch = new Scheduler<S>({ maxBatch: 2, maxQueue: 8, maxBatchTokens: 100, blockSize: 2, totalBlocks: 64 }, { freeSeq: (id) => freed.push(id) });
  const jobs = [1, 2, 3].map((id): S => ({ ...seq(id, 4, 4), priority: 1, countsAgainstQueue: false }));
  jobs.forEach((j) => sch.add(j));
  sch.update(sch.schedule()!); // 1 and 2 run, 3 waits
  jobs.forEach((j) => j.tokens.push(7));
  const user = seq(4, 2, 2);
  sch.add(user);
  const out = sch.schedule()!;
  // the newest job (2) makes room; it waits again in front of 3
  assert.deepEqual(out.entries.map((e) => [e.seq.seqId, e.prefill]), [[1, false], [4, true]]);
  assert.deepEqual(freed, [2]);
  sch.update(out);
  sch.finish(user);
  sch.finish(jobs[0]!);
  assert.deepEqual(sch.schedule()!.entries.map((e) => [e.seq.seqId, e.count]), [[2, 5], [3, 5]]);
});

test("scheduler: a background sequence is preempted before a newer serving one", () => {
  const freed: number[] = [];
  const sch = new Scheduler<S>({ maxBatch: 8, maxQueue: 8, maxBatchTokens: 100, blockSize: 2, totalBlocks: 5 }, { freeSeq: (id) => freed.push(id) });
  const job: S = { ...seq(1, 4, 4), priority: 1, countsAgainstQueue: false };
  sch.add(job);
  sch.update(sch.schedule()!);
  const user = seq(2, 4, 4);
  sch.add(user);
  job.tokens.push(7);
  const out = sch.schedule()!;
  sch.update(out);
  user.tokens.push(7);
  job.tokens.push(7);
  // user needs a 3rd block: the job goes, though it is older and was decoding
  const out2 = sch.schedule()!;
  assert.deepEqual(out2.entries.map((e) => e.seq.seqId), [2]);
  assert.deepEqual(freed, [1]);
});

test("scheduler: queue_full at maxQueue waiting", () => {
  const sch = new Scheduler<S>({ maxBatch: 1, maxQueue: 2, maxBatchTokens: 8, blockSize: 4, totalBlocks: 10 }, { freeSeq: () => {} });
  sch.add(seq(1, 2, 2));
  sch.add(seq(2, 2, 2));
  assert.throws(() => sch.add(seq(3, 2, 2)), isCode("queue_full"));
  sch.update(sch.schedule()!); // one admitted: a waiting place frees up
  sch.add(seq(3, 2, 2));
  assert.equal(sch.numWaiting, 2);
});

test("scheduler: a long prompt is prefilled in chunks while decodes keep going", () => {
  const sch = new Scheduler<S>({ maxBatch: 4, maxQueue: 4, maxBatchTokens: 8, blockSize: 4, totalBlocks: 64 }, { freeSeq: () => {} });
  const a = seq(1, 3, 10);
  sch.add(a);
  sch.update(sch.schedule()!);
  a.tokens.push(7);
  const long = seq(2, 20, 4);
  sch.add(long);
  const steps: [number, number, boolean][][] = [];
  for (let i = 0; i < 3; i++) {
    const out = sch.schedule()!;
    steps.push(out.entries.map((e) => [e.seq.seqId, e.count, e.sample]));
    assert.ok(out.numTokens <= 8);
    for (const { seq: s } of sch.update(out)) s.tokens.push(9);
  }
  assert.deepEqual(steps, [
    [[1, 1, true], [2, 7, false]],
    [[1, 1, true], [2, 7, false]],
    [[1, 1, true], [2, 6, true]],
  ]);
});

test("scheduler: finishing a sequence in the step in flight frees it when the step ends", () => {
  const freed: number[] = [];
  const sch = new Scheduler<S>({ maxBatch: 4, maxQueue: 4, maxBatchTokens: 32, blockSize: 4, totalBlocks: 64 }, { freeSeq: (id) => freed.push(id) });
  const a = seq(1, 3, 4);
  const b = seq(2, 3, 4);
  sch.add(a);
  sch.add(b);
  const out = sch.schedule()!;
  assert.equal(sch.finish(a), true);
  assert.deepEqual(freed, [], "not while the native side reads it");
  const toSample = sch.update(out);
  assert.deepEqual(freed, [1]);
  assert.deepEqual(toSample.map((t) => [t.seq.seqId, t.row]), [[2, 1]], "rows keep batch order");
  assert.equal(sch.finish(a), false);
  assert.equal(sch.numRunning, 1);
});

// ---- the Engine on the fabricated model ----

test("engine: greedy output equals the model's, alone and concurrently", async () => {
  const alone: number[][] = [];
  for (const p of prompts) {
    const runner = new FakeRunner();
    const r = await collect(makeEngine(runner).generate({ promptTokens: p, params: params({ maxTokens: 12 }) }));
    assert.equal(r.done.finishReason, "length");
    assert.deepEqual(r.done.usage, { promptTokens: p.length, completionTokens: 12 });
    alone.push(r.tokens);
  }
  assert.deepEqual(alone, prompts.map((p) => expectedGreedy(p, 12)));
  const runner = new FakeRunner();
  const engine = makeEngine(runner, { maxBatchTokens: 8 }); // small budget: chunked prefills interleave
  const together = await Promise.all(prompts.map((p) => collect(engine.generate({ promptTokens: p, params: params({ maxTokens: 12 }) }))));
  assert.deepEqual(together.map((r) => r.tokens), alone);
  assert.equal(together[0].text, new FakeTokenizer().decode(alone[0]));
  assert.ok(runner.calls.some((c) => c.seqIds.length > 1), "requests were batched");
  assert.ok(runner.calls.every((c) => c.counts.reduce((a, b) => a + b, 0) <= 8));
  assert.deepEqual(runner.violations, []);
  assert.equal(runner.kv.size, 0, "every finished sequence was freed");
  assert.equal(engine.stats().kvUsage, 0);
});

test("engine: requests submitted together share the first step (n > 1)", async () => {
  const runner = new FakeRunner();
  const engine = makeEngine(runner);
  const its = [0, 1, 2].map((i) => engine.generate({ promptTokens: [1, 2, 3], params: params({ temperature: 1, seed: i, maxTokens: 4 }) }));
  await Promise.all(its.map(collect));
  assert.equal(runner.calls[0].seqIds.length, 3);
});

test("engine: same seed, same output whatever else runs alongside", async () => {
  const p = params({ temperature: 1.3, topP: 0.9, seed: 1234, maxTokens: 16, presencePenalty: 0.3 });
  const alone = await collect(makeEngine(new FakeRunner()).generate({ promptTokens: [3, 1, 4], params: p }));
  const runner = new FakeRunner();
  const engine = makeEngine(runner);
  const others = [5, 6, 7].map((s) => collect(engine.generate({ promptTokens: [2, 7, 1, 8], params: { ...p, seed: s } })));
  const mine = collect(engine.generate({ promptTokens: [3, 1, 4], params: p }));
  const [r, ...rest] = await Promise.all([mine, ...others]);
  assert.deepEqual(r.tokens, alone.tokens);
  // sampling really happened: different seeds on the same prompt diverge
  assert.ok(new Set(rest.map((x) => x.tokens.join())).size > 1);
  assert.notDeepEqual(alone.tokens, expectedGreedy([3, 1, 4], 16));
});

test("engine: requests join and leave between steps", async () => {
  const runner = new FakeRunner(4, 64, true);
  const engine = makeEngine(runner);
  const a = collect(engine.generate({ promptTokens: [1, 2], params: params({ maxTokens: 4 }) }));
  (await runner.nextCall()).release(); // A prefill
  (await runner.nextCall()).release(); // A decode 1
  const b = collect(engine.generate({ promptTokens: [3, 4, 5], params: params({ maxTokens: 4 }) }));
  runner.goAuto();
  const [ra, rb] = await Promise.all([a, b]);
  assert.deepEqual(ra.tokens, expectedGreedy([1, 2], 4));
  assert.deepEqual(rb.tokens, expectedGreedy([3, 4, 5], 4));
  const ids = runner.calls.map((c) => c.seqIds.length);
  // A alone, A alone, A decode + B prefill, both decode, ..., B alone after A left
  assert.deepEqual(runner.calls[2].counts, [1, 3]);
  assert.equal(ids[0], 1);
  assert.equal(ids[ids.length - 1], 1);
  assert.deepEqual(runner.violations, []);
});

test("engine: EOS ends with stop (not reported), ignoreEos goes on, stop strings cut the text", async () => {
  const prompt = [1, 2, 3];
  const runner = new FakeRunner(4, 64, false, 6); // EOS is the argmax once the sequence holds 6 tokens
  const engine = makeEngine(runner);
  const r = await collect(engine.generate({ promptTokens: prompt, params: params({ maxTokens: 10 }) }));
  assert.equal(r.done.finishReason, "stop");
  assert.deepEqual(r.tokens, expectedGreedy(prompt, 3));
  assert.equal(r.done.usage.completionTokens, 4, "EOS counts as a completion token");
  const r2 = await collect(engine.generate({ promptTokens: prompt, params: params({ maxTokens: 10, ignoreEos: true }) }));
  assert.equal(r2.done.finishReason, "length");
  assert.equal(r2.tokens[3], EOS);
  const full = new FakeTokenizer().decode(expectedGreedy([4], 8));
  const stop = full.slice(3, 5);
  const r3 = await collect(engine.generate({ promptTokens: [4], params: params({ maxTokens: 8, stop: [stop] }) }));
  assert.equal(r3.done.finishReason, "stop");
  assert.equal(r3.text, full.slice(0, full.indexOf(stop)));
  assert.equal(r3.tokens.length, 5, "generation ended at the token completing the stop");
  // a stop string is found while the next step already runs with the sequence in it: its KV
  // goes when that step ends, and the token that step computed for it is never reported
  for (let i = 0; i < 100 && runner.kv.size > 0; i++) await new Promise((res) => setImmediate(res));
  assert.equal(runner.kv.size, 0);
  assert.equal(engine.stats().counters.completionTokens, 4 + 10 + 5);
});

test("engine: a step's tokens are told while the next step already runs", async () => {
  const runner = new FakeRunner();
  // the forward calls made by the time each token's text is made
  const callsAtText: number[] = [];
  const tokenizer = new FakeTokenizer();
  const detokenizer = tokenizer.detokenizer.bind(tokenizer);
  tokenizer.detokenizer = () => {
    const d = detokenizer();
    return { push: (t: number) => (callsAtText.push(runner.calls.length), d.push(t)), flush: () => d.flush() };
  };
  const engine = new Engine({ native: runner, tokenizer, maxContext: 256 }, { maxBatch: 8, maxQueue: 16, maxBatchTokens: 64 });
  const r = await collect(engine.generate({ promptTokens: [1, 2], params: params({ maxTokens: 4 }) }));
  assert.equal(r.tokens.length, 4);
  // token k (from step k) is told once step k + 1 is launched; the last one has no next step
  assert.deepEqual(callsAtText, [2, 3, 4, 4]);
  assert.deepEqual(runner.violations, []);
});

test("engine: logprobs are reported per token", async () => {
  const engine = makeEngine(new FakeRunner());
  let n = 0;
  for await (const ev of engine.generate({ promptTokens: [1], params: params({ maxTokens: 3, logprobs: true, topLogprobs: 2 }) })) {
    if (ev.type !== "delta") continue;
    for (const lp of ev.logprobs) {
      n++;
      assert.equal(lp.top.length, 2);
      assert.equal(lp.top[0].tokenId, lp.tokenId, "greedy picks the most likely");
      assert.ok(lp.logprob < 0 && lp.logprob >= lp.top[1].logprob);
      assert.equal(lp.token, new FakeTokenizer().tokenText(lp.tokenId));
    }
  }
  assert.equal(n, 3);
});

test("engine: submission errors are thrown synchronously by generate()", async () => {
  const runner = new FakeRunner(4, 64, true);
  const engine = makeEngine(runner, { maxBatch: 1, maxQueue: 1, maxContext: 20 });
  assert.throws(() => engine.generate({ promptTokens: [1, 2, 3], params: params({ maxTokens: 18 }) }), (e: unknown) => isCode("context_length_exceeded")(e) && /maximum context length is 20 tokens.*21 tokens/.test((e as Error).message));
  assert.throws(() => engine.generate({ promptTokens: [], params: params() }), isCode("invalid_request"));
  assert.throws(() => engine.generate({ promptTokens: [V], params: params() }), isCode("invalid_request"));
  assert.throws(() => engine.generate({ promptTokens: [1], params: params({ maxTokens: 0 }) }), isCode("invalid_request"));
  assert.throws(() => engine.generate({ promptTokens: [1], params: params(), signal: AbortSignal.abort() }), isCode("cancelled"));
  const first = collect(engine.generate({ promptTokens: [1], params: params({ maxTokens: 2 }) }));
  await runner.nextCall().then((c) => {
    // first is running now; one may wait, the next is refused
    const second = collect(engine.generate({ promptTokens: [2], params: params({ maxTokens: 2 }) }));
    assert.throws(() => engine.generate({ promptTokens: [3], params: params() }), isCode("queue_full"));
    runner.goAuto();
    c.release();
    return second;
  });
  await first;
  assert.ok(engine.stats().counters.rejected >= 6);
});

test("engine: abort frees KV at once (waiting), or as its step in flight ends (running)", async () => {
  const runner = new FakeRunner(4, 64, true);
  const engine = makeEngine(runner, { maxBatch: 1 });
  const ac1 = new AbortController();
  const ac2 = new AbortController();
  const it1 = collect(engine.generate({ promptTokens: [1, 2, 3], params: params({ maxTokens: 50 }), signal: ac1.signal }));
  const it2 = collect(engine.generate({ promptTokens: [4, 5], params: params({ maxTokens: 50 }), signal: ac2.signal }));
  const c1 = await runner.nextCall();
  assert.equal(engine.stats().waiting, 1);
  ac2.abort(); // waiting: gone without ever touching the model
  assert.equal(engine.stats().waiting, 0);
  await assert.rejects(it2, isCode("cancelled"));
  ac1.abort(); // in the step in flight: freed the moment the step ends, not during it
  c1.release();
  await assert.rejects(it1, isCode("cancelled"));
  assert.equal(runner.kv.size, 0);
  assert.deepEqual(runner.violations, []);

  assert.equal(engine.stats().counters.cancelled, 2);
  assert.equal(engine.stats().running, 0);
});

test("engine: breaking out of the iteration cancels and frees", async () => {
  const runner = new FakeRunner();
  const engine = makeEngine(runner);
  let got = 0;
  for await (const ev of engine.generate({ promptTokens: [1], params: params({ maxTokens: 100 }) })) {
    if (ev.type === "delta" && ++got === 3) break;
  }
  // the break may land while a step is in flight: wait for the engine to go idle
  while (engine.stats().running > 0) await new Promise((r) => setImmediate(r));
  assert.equal(runner.kv.size, 0);
  assert.equal(engine.stats().counters.cancelled, 1);
});

test("engine: a pool too small for everyone preempts and recomputes; greedy and seeded outputs are unchanged", async () => {
  // 12 blocks of 4: each request ends holding 4 blocks and 7 are admitted at once on their prompt's 1
  const prompts7 = Array.from({ length: 7 }, (_, i) => [i + 1, 2, 3, 4]);
  const small = new FakeRunner(4, 12);
  const engine = makeEngine(small, { maxBatch: 8, maxQueue: 16 });
  const res = await Promise.all(prompts7.map((p) => collect(engine.generate({ promptTokens: p, params: params({ maxTokens: 12 }) }))));
  res.forEach((r, i) => assert.deepEqual(r.tokens, expectedGreedy(prompts7[i]!, 12)));
  assert.ok(engine.stats().preemptions > 0, "the pool must have run short");
  assert.deepEqual(small.violations, []);
  assert.equal(small.kv.size, 0);
  // seeded sampling with penalties: the same with preemptions as with a pool that never runs short
  const seeded = (i: number): SamplingParams => params({ maxTokens: 12, temperature: 1, seed: 100 + i, frequencyPenalty: 0.5 });
  const run = async (runner: FakeRunner): Promise<number[][]> => {
    const e = makeEngine(runner, { maxBatch: 8, maxQueue: 16 });
    const out = await Promise.all(prompts7.map((p, i) => collect(e.generate({ promptTokens: p, params: seeded(i) }))));
    assert.ok(runner !== small2 || e.stats().preemptions > 0);
    return out.map((r) => r.tokens);
  };
  const small2 = new FakeRunner(4, 12);
  assert.deepEqual(await run(small2), await run(new FakeRunner(4, 64)));
});

test("engine: FIFO — requests start in submission order", async () => {
  const runner = new FakeRunner();
  const engine = makeEngine(runner, { maxBatch: 1 });
  const firstSeen: number[] = [];
  const reqs = [10, 11, 12, 13].map((t) => collect(engine.generate({ promptTokens: [t], params: params({ maxTokens: 2 }) })));
  await Promise.all(reqs);
  for (const c of runner.calls) for (const id of c.seqIds) if (!firstSeen.includes(id)) firstSeen.push(id);
  assert.deepEqual(firstSeen, [...firstSeen].sort((a, b) => a - b));
  assert.equal(firstSeen.length, 4);
});

test("engine: close() fails waiting and running requests and frees everything", async () => {
  const runner = new FakeRunner(4, 64, true);
  const engine = makeEngine(runner, { maxBatch: 1 });
  const a = collect(engine.generate({ promptTokens: [1], params: params({ maxTokens: 50 }) }));
  const b = collect(engine.generate({ promptTokens: [2], params: params({ maxTokens: 50 }) }));
  const c = await runner.nextCall();
  const closing = engine.close();
  await assert.rejects(b, isCode("engine_closed"));
  c.release();
  await closing;
  await assert.rejects(a, isCode("engine_closed"));
  assert.equal(runner.kv.size, 0);
  assert.throws(() => engine.generate({ promptTokens: [1], params: params() }), isCode("engine_closed"));
});

test("engine: a failing forward fails its requests with internal and frees them", async () => {
  const runner = new FakeRunner(4, 64);
  const engine = makeEngine(runner);
  runner.forward = () => Promise.reject(new Error("boom"));
  await assert.rejects(collect(engine.generate({ promptTokens: [1], params: params() })), (e: unknown) => isCode("internal")(e) && /boom/.test((e as Error).message));
  assert.equal(engine.stats().running, 0);
});
