// The engine with a grammar (engine/grammar/) on stories260K: every token follows it, its
// state is freed with the request however the request ends (done, cancelled, failed, refused
// at submission), and a grammar that breaks fails its request only, never the engine.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../engine/engine.js";
import { EngineError } from "../engine/errors.js";
import { loadModel, type LoadedModel } from "../engine/model.js";
import { Grammars, type GrammarSpec } from "../engine/grammar/grammars.js";
import type { TokenConstraint } from "../engine/types.js";
import { collect, samplingParams } from "./generation-helpers.js";
import { storiesDir } from "./test-model.js";

let model: LoadedModel;
let engine: Engine;
let grammars: Grammars;
const spec: GrammarSpec = { kind: "json_schema", schema: { type: "object", properties: { ok: { type: "boolean" }, n: { enum: [1, 2] } }, required: ["ok", "n"], additionalProperties: false } };

before(async () => {
  model = await loadModel(storiesDir, { threads: 2 });
  engine = new Engine(model, { maxBatch: 8, maxQueue: 32, maxBatchTokens: 128 });
  grammars = new Grammars(model.tokenizer, model.config.vocabSize);
});
after(async () => {
  await engine.close();
  model.dispose();
});

/** a real constraint that counts its disposals and the tokens it accepted */
async function counted(): Promise<TokenConstraint & { disposed: number; accepted: number[] }> {
  const inner = await grammars.constraint(spec);
  const c = {
    disposed: 0,
    accepted: [] as number[],
    nextMask: () => inner.nextMask(),
    accept: (t: number) => {
      c.accepted.push(t);
      return inner.accept(t);
    },
    dispose: () => {
      c.disposed++;
      inner.dispose();
    },
  };
  return c;
}

const prompt = () => model.tokenizer.encode("Once upon a time", true);

test("constrained generations: valid JSON, sampled or greedy, side by side with free ones; each grammar freed once", async () => {
  const cs = await Promise.all([counted(), counted(), counted()]);
  const runs = cs.map((c, i) => collect(engine.generate({ promptTokens: prompt(), params: samplingParams({ temperature: i === 0 ? 0 : 1, seed: i, maxTokens: 64 }), constraint: c })));
  const free = collect(engine.generate({ promptTokens: prompt(), params: samplingParams({ maxTokens: 20 }) }));
  const done = await Promise.all(runs);
  for (const [i, r] of done.entries()) {
    assert.equal(r.done.type === "done" && r.done.finishReason, "stop");
    const v = JSON.parse(r.text) as { ok: unknown; n: unknown };
    assert.equal(typeof v.ok, "boolean");
    assert.ok(v.n === 1 || v.n === 2);
    assert.equal(cs[i]!.disposed, 1);
    // the EOS that ended it was accepted by the grammar too
    assert.deepEqual(cs[i]!.accepted, [...r.tokens, r.done.type === "done" ? r.done.eosTokenId : -1]);
  }
  assert.ok(!(await free).text.startsWith("{"));
});

test("a grammar is freed when its request is cancelled, or refused at submission", async () => {
  const c = await counted();
  const ac = new AbortController();
  const it = engine.generate({ promptTokens: prompt(), params: samplingParams({ maxTokens: 64 }), constraint: c, signal: ac.signal })[Symbol.asyncIterator]();
  await it.next();
  ac.abort();
  await assert.rejects(async () => {
    for (;;) if ((await it.next()).done) break;
  });
  assert.equal(c.disposed, 1);
  const refused = await counted();
  assert.throws(() => engine.generate({ promptTokens: prompt(), params: samplingParams({ maxTokens: 100_000 }), constraint: refused }), EngineError);
  assert.equal(refused.disposed, 1);
});

test("a grammar that refuses a token its mask allowed fails that request only, and is freed", async () => {
  const c = await counted();
  const broken: TokenConstraint = { nextMask: c.nextMask, accept: () => false, dispose: c.dispose };
  const bad = collect(engine.generate({ promptTokens: prompt(), params: samplingParams({ maxTokens: 8 }), constraint: broken }));
  const good = collect(engine.generate({ promptTokens: prompt(), params: samplingParams({ maxTokens: 8 }) }));
  await assert.rejects(bad, (e: unknown) => e instanceof EngineError && e.code === "internal");
  assert.equal((await good).tokens.length, 8);
  assert.equal(c.disposed, 1);
});
