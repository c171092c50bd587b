// stories260K against numbers nobody here wrote: logits from llama2.c's own run.c (Karpathy's
// C forward pass, compiled from its repository by test/fixtures/llama2c/generate.py on the
// checkpoint turned back into llama2.c's format) at every position of three sequences — the
// README's greedy story, a sentence of our tokenizer's, 47 random ids — and run.c's greedy ids
// from BOS, which must equal the ones the model's README publishes and the engine's own.
// Tolerance: run.c sums in float32 in plain loop order, the engine with FMA in blocks, so a
// logit may differ by a few float32 roundings of its partial sums; ATOL + RTOL·|ref| covers
// that with room, while a wrong RoPE pairing, head grouping or norm is off by 0.1 or more.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { repoRoot, storiesDir } from "./test-model.js";

const ATOL = 1e-4;
const RTOL = 1e-4;
const dir = join(repoRoot, "test", "fixtures", "llama2c");
const meta = JSON.parse(readFileSync(join(dir, "stories260k.json"), "utf8")) as { model_sha256: string; vocab: number; greedy: number[]; lengths: number[] };
const cases = JSON.parse(readFileSync(join(dir, "cases.json"), "utf8")) as { greedySteps: number; sequences: number[][] };
const raw = readFileSync(join(dir, "stories260k.logits.f32"));
const all = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
const V = meta.vocab;

/** the reference rows of sequence s */
function rows(s: number): Float32Array {
  const start = meta.lengths.slice(0, s).reduce((a, n) => a + n, 0);
  return all.subarray(start * V, (start + meta.lengths[s]) * V);
}

/** the largest |got − ref|; fails at the first logit outside ATOL + RTOL·|ref| */
function compare(what: string, got: Float32Array, ref: Float32Array): number {
  assert.equal(got.length, ref.length, what);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(got[i] - ref[i]);
    if (!(err <= ATOL + RTOL * Math.abs(ref[i]))) assert.fail(`${what}: position ${Math.floor(i / V)} token ${i % V}: ${got[i]}, run.c ${ref[i]}`);
    worst = Math.max(worst, err);
  }
  return worst;
}

let model: LoadedModel;
before(async () => {
  model = await loadModel(storiesDir, { threads: 2, kvBlocks: 16 });
});
after(() => model?.dispose());

test("the fixture was made from this checkpoint, and its sequences are the ones it lists", () => {
  const sha = createHash("sha256").update(readFileSync(join(storiesDir, "model.safetensors"))).digest("hex");
  assert.equal(sha, meta.model_sha256, "stories260K changed: rerun test/fixtures/llama2c/generate.py");
  assert.deepEqual(meta.lengths, cases.sequences.map((s) => s.length));
  assert.equal(all.length, meta.lengths.reduce((a, n) => a + n, 0) * V);
});

test("run.c's greedy ids from BOS are the model README's, and the engine's", async () => {
  const readme = readFileSync(join(storiesDir, "README.md"), "utf8");
  const published = /Greedy decoding from BOS alone yields the token ids\s*`([\d,]+)`/.exec(readme);
  assert.ok(published, "the model README no longer lists its greedy ids");
  assert.deepEqual(meta.greedy, published[1].split(",").map(Number));
  const ids = [1];
  let logits = await model.native.forward({ seqIds: Int32Array.of(1), tokens: Int32Array.of(1), counts: Int32Array.of(1), logits: "last" });
  while (ids.length < meta.greedy.length) {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    ids.push(best);
    logits = await model.native.forward({ seqIds: Int32Array.of(1), tokens: Int32Array.of(best), counts: Int32Array.of(1), logits: "last" });
  }
  model.native.freeSeq(1);
  assert.deepEqual(ids, meta.greedy);
});

for (const [s, seq] of cases.sequences.entries())
  test(`logits at every position of sequence ${s} (${seq.length} tokens) match run.c's, prefilled and decoded`, async (t) => {
    const ref = rows(s);
    const got = await model.native.forward({ seqIds: Int32Array.of(10 + s), tokens: Int32Array.from(seq), counts: Int32Array.of(seq.length), logits: "all" });
    model.native.freeSeq(10 + s);
    let worst = compare("prefill", got, ref);
    // token by token through the KV cache
    for (let i = 0; i < seq.length; i++) {
      const row = await model.native.forward({ seqIds: Int32Array.of(20 + s), tokens: Int32Array.of(seq[i]), counts: Int32Array.of(1), logits: "last" });
      worst = Math.max(worst, compare(`decode step ${i}`, row, ref.subarray(i * V, (i + 1) * V)));
    }
    model.native.freeSeq(20 + s);
    t.diagnostic(`max |logit − run.c| = ${worst.toExponential(2)}`);
  });
