// Forward steps queued behind one another on the same model (native/src/addon.cc StepLine):
// they run back to back in call order, a step's input tokens can come from the step before's
// own samples (ForwardBatch.feed), a failed step fails the steps fed from it, and freeSeq,
// training calls and the KV pool stay correct while steps are queued.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { SAMPLE_FIELDS } from "../native/index.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { storiesDir } from "./test-model.js";

let m: LoadedModel;
before(async () => {
  m = await loadModel(storiesDir, { threads: 2, kvBlocks: 64 });
});
after(() => m.dispose());

/** greedy rows for `n` sequences, one row each */
function greedy(n: number): Float64Array {
  const p = new Float64Array(n * SAMPLE_FIELDS);
  for (let i = 0; i < n; i++) p.set([i, 0, 0, 1, 0, 0], i * SAMPLE_FIELDS);
  return p;
}

const prompts = [[1, 403, 407, 261, 378], [1, 403], [1, 296, 285]];

/** `steps` greedy decode steps after the prompts, awaiting each before the next (the reference) */
async function serial(ids: number[], steps: number): Promise<{ tokens: number[][]; logits: Float32Array[] }> {
  const n = ids.length;
  const seqIds = Int32Array.from(ids);
  const picked = new Int32Array(n);
  const logits: Float32Array[] = [];
  logits.push(
    (await m.native.forward({ seqIds, tokens: Int32Array.from(prompts.flat()), counts: Int32Array.from(prompts.map((p) => p.length)), logits: "last", sample: { params: greedy(n), tokens: picked } })).slice(),
  );
  const tokens: number[][] = [Array.from(picked)];
  for (let s = 1; s < steps; s++) {
    const fed = picked.slice();
    logits.push((await m.native.forward({ seqIds, tokens: fed, counts: new Int32Array(n).fill(1), logits: "last", sample: { params: greedy(n), tokens: picked } })).slice());
    tokens.push(Array.from(picked));
  }
  return { tokens, logits };
}

test("steps queued before the last settles, fed from its samples, equal the serial steps bit for bit", async () => {
  const steps = 12;
  const want = await serial([1, 2, 3], steps);
  for (const id of [1, 2, 3]) m.native.freeSeq(id);
  const free0 = m.native.kvStats().freeBlocks;

  const n = prompts.length;
  const seqIds = Int32Array.from([11, 12, 13]);
  const samples = Array.from({ length: steps }, () => new Int32Array(n).fill(-1));
  const calls: Promise<Float32Array>[] = [];
  calls.push(m.native.forward({ seqIds, tokens: Int32Array.from(prompts.flat()), counts: Int32Array.from(prompts.map((p) => p.length)), logits: "last", sample: { params: greedy(n), tokens: samples[0]! } }));
  // every later step queued at once, none awaited: its tokens are placeholders the feed replaces
  const feed = Int32Array.from([0, 0, 1, 1, 2, 2]);
  for (let s = 1; s < steps; s++) {
    calls.push(m.native.forward({ seqIds, tokens: new Int32Array(n), counts: new Int32Array(n).fill(1), logits: "last", sample: { params: greedy(n), tokens: samples[s]! }, feed }));
  }
  const got = await Promise.all(calls);
  for (let s = 0; s < steps; s++) {
    assert.deepEqual(Array.from(samples[s]!), want.tokens[s], `step ${s}'s tokens`);
    assert.deepEqual(got[s], want.logits[s], `step ${s}'s logits`);
  }
  // the stories260K fact: greedy after "Once upon a time" goes on ", there was a ..."
  assert.deepEqual(samples.slice(0, 4).map((t) => t[0]), [432, 383, 286, 261]);
  for (const id of seqIds) m.native.freeSeq(id);
  assert.equal(m.native.kvStats().freeBlocks, free0 + 0, "every block back");
});

test("a failed step fails the step fed from it; a step not fed from it still runs", async () => {
  const free0 = m.native.kvStats().freeBlocks;
  const tokens = new Int32Array(1);
  const a = m.native.forward({ seqIds: Int32Array.of(21), tokens: Int32Array.of(1, 99999), counts: Int32Array.of(2), logits: "last", sample: { params: greedy(1), tokens } });
  const b = m.native.forward({ seqIds: Int32Array.of(21), tokens: Int32Array.of(0), counts: Int32Array.of(1), logits: "last", feed: Int32Array.of(0, 0) });
  const c = m.native.forward({ seqIds: Int32Array.of(22), tokens: Int32Array.of(1), counts: Int32Array.of(1), logits: "last" });
  // all three awaited together: b may settle before a's rejection is looked at
  const [, , logits] = await Promise.all([assert.rejects(a, { code: "invalid_batch" }), assert.rejects(b, { code: "feed_failed" }), c]);
  assert.equal(logits.length, 512);
  m.native.freeSeq(22);
  assert.equal(m.native.seqLength(21), 0);
  assert.equal(m.native.kvStats().freeBlocks, free0);
});

test("a feed is checked when queued: pairs, token indexes, and the step before's sample rows", async () => {
  const base = { seqIds: Int32Array.of(31), tokens: Int32Array.of(1), counts: Int32Array.of(1), logits: "last" as const };
  const first = m.native.forward({ ...base, sample: { params: greedy(1), tokens: new Int32Array(1) } });
  await assert.rejects(m.native.forward({ ...base, feed: Int32Array.of(0) }), { code: "invalid_argument", message: /pairs/ });
  await assert.rejects(m.native.forward({ ...base, feed: Int32Array.of(1, 0) }), { code: "invalid_argument", message: /token 1/ });
  await assert.rejects(m.native.forward({ ...base, feed: Int32Array.of(0, 1) }), { code: "invalid_argument", message: /sample row 1/ });
  await first;
  m.native.freeSeq(31);
});

test("a sequence freed while two steps are queued is read whole by both and freed after them; training waits for the queue", async () => {
  const prompt = Int32Array.from([1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317]);
  const ref = [new Int32Array(1), new Int32Array(1)];
  await m.native.forward({ seqIds: Int32Array.of(42), tokens: prompt, counts: Int32Array.of(prompt.length), logits: "last", sample: { params: greedy(1), tokens: ref[0]! } });
  await m.native.forward({ seqIds: Int32Array.of(42), tokens: ref[0]!.slice(), counts: Int32Array.of(1), logits: "last", sample: { params: greedy(1), tokens: ref[1]! } });
  m.native.freeSeq(42);
  const free0 = m.native.kvStats().freeBlocks;
  const picked = [new Int32Array(1), new Int32Array(1)];
  const a = m.native.forward({ seqIds: Int32Array.of(41), tokens: prompt, counts: Int32Array.of(prompt.length), logits: "last", sample: { params: greedy(1), tokens: picked[0]! } });
  const b = m.native.forward({ seqIds: Int32Array.of(41), tokens: Int32Array.of(0), counts: Int32Array.of(1), logits: "last", sample: { params: greedy(1), tokens: picked[1]! }, feed: Int32Array.of(0, 0) });
  // exclusive work is refused while forwards are queued (the engine runs it between steps)
  assert.throws(() => m.native.zeroGrad(), { code: "busy" });
  m.native.freeSeq(41);
  await Promise.all([a, b]);
  // freed before either step reserved: both still read it whole (the README's greedy path)
  assert.deepEqual([picked[0]![0], picked[1]![0]], [ref[0]![0], ref[1]![0]]);
  assert.deepEqual([picked[0]![0], picked[1]![0]], [426, 338]);
  assert.equal(m.native.seqLength(41), 0, "neither queued step re-created it");
  assert.equal(m.native.kvStats().freeBlocks, free0);
  m.native.zeroGrad(); // the queue drained: no longer busy
});
