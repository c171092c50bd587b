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

test("tool-call grammars: auto leaves text free but holds an opened <tool_call> to a valid call (once without parallel calls); required repeats calls", async () => {
  const { chatPrompt } = await import("../server/serving/tools/tool-prompt.js");
  const tools = [{ type: "function" as const, function: { name: "pick", parameters: { type: "object", properties: { animal: { enum: ["cat", "dog"] } }, required: ["animal"], additionalProperties: false } } }];
  const messages = [{ role: "user" as const, content: "Pick one." }];
  const plan = (o: { tool_choice: "auto" | "required"; parallel_tool_calls: boolean }) => chatPrompt({ messages, tools, ...o }, model.chatTemplate).plan!;
  /** whether the grammar takes `text` as the tokenizer writes it, token by token (and may end there) */
  const takes = async (spec: GrammarSpec, text: string): Promise<boolean> => {
    const c = await grammars.constraint(spec);
    try {
      // the tokenizer's leading "▁" is a space of free text (only the auto grammars' texts start free)
      return model.tokenizer.encode(text, false).every((t) => c.accept(t));
    } finally {
      c.dispose();
    }
  };
  const call = (animal: string) => `<tool_call>\n{"name": "pick", "arguments": {"animal": "${animal}"}}\n</tool_call>`;
  const auto = plan({ tool_choice: "auto", parallel_tool_calls: true }).auto!;
  const autoOnce = plan({ tool_choice: "auto", parallel_tool_calls: false }).auto!;
  assert.equal(await takes(auto, "Once upon a time, a cat."), true);
  assert.equal(await takes(auto, `Sure. ${call("cat")}`), true);
  assert.equal(await takes(auto, `Sure. ${call("cat")}\n${call("dog")}`), true);
  assert.equal(await takes(autoOnce, `Sure. ${call("cat")}\n${call("dog")}`), false);
  assert.equal(await takes(auto, `Sure. ${call("cow")}`), false);
  assert.equal(await takes(auto, 'Sure. <tool_call>\n{"name": "rm", "arguments": {}}'), false);
  // required: the prompt ends with "<tool_call>\n"; the grammar writes the JSON and any further blocks
  const required = plan({ tool_choice: "required", parallel_tool_calls: true }).forced!;
  const single = plan({ tool_choice: "required", parallel_tool_calls: false }).forced!;
  const after = (s: string) => s.slice("<tool_call>\n".length);
  const two = after(`${call("cat")}\n${call("dog")}`);
  // the tokenizer puts "▁" before a text: join to a real token boundary ("{" then the rest)
  const takesForced = async (spec: GrammarSpec, text: string) => {
    const c = await grammars.constraint(spec);
    try {
      const all = [...model.tokenizer.encode(`x${text}`, false)];
      const ids = all.slice(all.findIndex((_, k) => model.tokenizer.decode(all.slice(k), true) === text));
      assert.equal(model.tokenizer.decode(ids, true), text);
      return ids.every((t) => c.accept(t));
    } finally {
      c.dispose();
    }
  };
  assert.equal(await takesForced(required, two), true);
  assert.equal(await takesForced(single, after(call("cat"))), true);
  assert.equal(await takesForced(single, two), false);
  assert.equal(await takesForced(required, "Hello"), false);
});
