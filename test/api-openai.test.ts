// Conformance through the official `openai` client on a real socket, against the real
// stories260K model: greedy output equals its README token for token, streamed and not.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { README, serveModel, sseData, type TestServing } from "./api-helpers.js";

let s: TestServing;
let client: OpenAI;
let baseUrl: string;
const MODEL = "stories260K";
const prompt = [{ role: "user" as const, content: "Once upon a time" }];
/** tokens of README.continuation after the 5 prompt tokens */
const CONTINUATION_TOKENS = 57;

before(async () => {
  s = await serveModel();
  baseUrl = await s.app.listen({ host: "127.0.0.1", port: 0 });
  client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(async () => {
  await s.close();
});

async function rawStream(path: string, body: unknown): Promise<unknown[]> {
  const res = await fetch(`${baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  return sseData(await res.text());
}

/** The invariants every chat stream keeps, for `n` choices; returns each choice's text. */
function checkChatStream(events: unknown[], n: number, includeUsage: boolean): { texts: string[]; finish: string[]; usage: OpenAI.CompletionUsage | null } {
  assert.equal(events.at(-1), "[DONE]", "the stream ends with [DONE]");
  const chunks = events.slice(0, -1) as OpenAI.ChatCompletionChunk[];
  assert.ok(!chunks.includes("[DONE]" as never), "[DONE] only once, last");
  const id = chunks[0]!.id;
  const texts = Array.from({ length: n }, () => "");
  const finish: string[] = Array.from({ length: n }, () => "");
  const sawRole = new Set<number>();
  let usage: OpenAI.CompletionUsage | null = null;
  chunks.forEach((c, k) => {
    assert.equal(c.object, "chat.completion.chunk");
    assert.equal(c.id, id, "one id for the whole stream");
    assert.match(c.id, /^chatcmpl-/);
    assert.equal(c.model, MODEL);
    assert.equal(typeof c.created, "number");
    if (c.choices.length === 0) {
      assert.ok(includeUsage, "a choice-less chunk only for include_usage");
      assert.equal(k, chunks.length - 1, "the usage chunk is the last before [DONE]");
      usage = c.usage!;
      return;
    }
    assert.equal(c.choices.length, 1);
    const ch = c.choices[0]!;
    assert.ok(ch.index >= 0 && ch.index < n);
    if (!sawRole.has(ch.index)) {
      // the first chunk of each choice carries the role and nothing else
      assert.deepEqual(ch.delta, { role: "assistant", content: "" });
      assert.equal(ch.finish_reason, null);
      sawRole.add(ch.index);
      return;
    }
    assert.equal(finish[ch.index], "", `nothing after choice ${ch.index}'s finish_reason`);
    assert.equal(ch.delta.role, undefined, "role only in the first chunk");
    if (ch.finish_reason) finish[ch.index] = ch.finish_reason;
    texts[ch.index] += ch.delta.content ?? "";
    if (includeUsage) assert.equal(c.usage, null);
  });
  assert.equal(sawRole.size, n);
  assert.ok(finish.every((f) => f === "stop" || f === "length"), `one finish_reason per choice: ${JSON.stringify(finish)}`);
  if (includeUsage) assert.ok(usage, "a usage chunk when include_usage");
  return { texts, finish, usage };
}

describe("models", () => {
  test("GET /v1/models lists the directory's base name", async () => {
    const list = await client.models.list();
    assert.deepEqual(
      list.data.map((m) => ({ id: m.id, object: m.object, owned_by: m.owned_by })),
      [{ id: MODEL, object: "model", owned_by: "hybridchat" }],
    );
    assert.equal(typeof list.data[0]!.created, "number");
    const one = await client.models.retrieve(MODEL);
    assert.equal(one.id, MODEL);
    await assert.rejects(client.models.retrieve("nope"), (e: unknown) => e instanceof OpenAI.NotFoundError);
  });
});

describe("chat completions", () => {
  test("greedy: the README continuation, token for token", async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: prompt, temperature: 0, max_tokens: CONTINUATION_TOKENS });
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, "chat.completion");
    assert.equal(r.model, MODEL);
    assert.equal(typeof r.system_fingerprint, "string");
    assert.equal(r.choices.length, 1);
    const c = r.choices[0]!;
    assert.equal(c.index, 0);
    assert.equal(c.message.role, "assistant");
    assert.equal(c.message.content, README.continuation);
    assert.equal(c.finish_reason, "length");
    assert.equal(c.logprobs, null);
    assert.deepEqual(r.usage, { prompt_tokens: 5, completion_tokens: CONTINUATION_TOKENS, total_tokens: 5 + CONTINUATION_TOKENS });
    // max_completion_tokens is the newer name of the same budget
    const r2 = await client.chat.completions.create({ model: MODEL, messages: prompt, temperature: 0, max_completion_tokens: 12 });
    assert.ok(README.continuation.startsWith(r2.choices[0]!.message.content!));
    assert.equal(r2.usage!.completion_tokens, 12);
  });

  test("greedy streamed: same text, OpenAI stream invariants", async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: prompt,
      temperature: 0,
      max_tokens: CONTINUATION_TOKENS,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: unknown[] = [];
    for await (const c of stream) chunks.push(c);
    const { texts, finish, usage } = checkChatStream([...chunks, "[DONE]"], 1, true);
    assert.equal(texts[0], README.continuation);
    assert.deepEqual(finish, ["length"]);
    assert.deepEqual(usage, { prompt_tokens: 5, completion_tokens: CONTINUATION_TOKENS, total_tokens: 62 });
    // the raw wire format: [DONE] last, usage chunk only when asked for
    const raw = await rawStream("/v1/chat/completions", { model: MODEL, messages: prompt, temperature: 0, max_tokens: 10, stream: true });
    const checked = checkChatStream(raw, 1, false);
    assert.ok(README.continuation.startsWith(checked.texts[0]!));
    assert.ok((raw.slice(0, -1) as OpenAI.ChatCompletionChunk[]).every((c) => c.choices.length === 1 && !("usage" in c)));
  });

  test("content as an array of text parts equals the string form", async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: [{ type: "text", text: "Once upon a time" }] }],
      temperature: 0,
      max_tokens: 8,
    });
    assert.ok(README.continuation.startsWith(r.choices[0]!.message.content!));
  });

  test("n=2: two choices, streamed and not; greedy choices agree", async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: prompt, temperature: 0, max_tokens: 20, n: 2 });
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
    assert.equal(r.choices[0]!.message.content, r.choices[1]!.message.content);
    assert.ok(README.continuation.startsWith(r.choices[0]!.message.content!));
    assert.deepEqual(r.usage, { prompt_tokens: 5, completion_tokens: 40, total_tokens: 45 });

    const raw = await rawStream("/v1/chat/completions", {
      model: MODEL,
      messages: prompt,
      temperature: 0.9,
      seed: 7,
      max_tokens: 20,
      n: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const { texts, usage } = checkChatStream(raw, 2, true);
    assert.equal(usage!.completion_tokens, 40);
    // the same seeded request, not streamed, gives the same two texts
    const again = await client.chat.completions.create({ model: MODEL, messages: prompt, temperature: 0.9, seed: 7, max_tokens: 20, n: 2 });
    assert.deepEqual(again.choices.map((c) => c.message.content), texts);
  });

  test("seeded sampling repeats; another seed differs", async () => {
    const ask = (seed: number) =>
      client.chat.completions.create({ model: MODEL, messages: prompt, temperature: 1.5, seed, max_tokens: 40 }).then((r) => r.choices[0]!.message.content);
    const a = await ask(1234);
    const b = await ask(1234);
    const c = await ask(99);
    assert.equal(a, b);
    assert.notEqual(a, c);
  });

  test("stop strings end the text and are not included", async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: prompt, temperature: 0, max_tokens: 40, stop: ["Lily"] });
    assert.equal(r.choices[0]!.message.content, ", there was a little girl named ");
    assert.equal(r.choices[0]!.finish_reason, "stop");
  });

  test("logprobs: one entry per token, greedy token is the top alternative", async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: prompt, temperature: 0, max_tokens: 10, logprobs: true, top_logprobs: 3 });
    const c = r.choices[0]!;
    const lp = c.logprobs!.content!;
    assert.equal(lp.length, 10);
    assert.equal(lp.map((t) => t.token).join(""), c.message.content);
    for (const t of lp) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 3);
      assert.equal(t.top_logprobs[0]!.token, t.token);
      assert.ok(Math.abs(t.top_logprobs[0]!.logprob - t.logprob) < 1e-6);
      assert.ok(t.top_logprobs[1]!.logprob <= t.top_logprobs[0]!.logprob);
      assert.deepEqual(t.bytes, [...Buffer.from(t.token, "utf8")]);
    }
  });

  test("concurrent requests give the same greedy outputs as one at a time", async () => {
    const prompts = ["Once upon a time", "Tom had a dog", "The sun was", "Lily and Ben went"];
    const one = async (p: string) =>
      (await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: p }], temperature: 0, max_tokens: 24 })).choices[0]!.message.content;
    const sequential: (string | null)[] = [];
    for (const p of prompts) sequential.push(await one(p));
    const concurrent = await Promise.all(prompts.map(one));
    assert.deepEqual(concurrent, sequential);
    assert.equal(new Set(sequential).size, prompts.length);
  });
});

describe("text completions", () => {
  test('prompt "" greedy: the README text from BOS alone, streamed and not', async () => {
    const r = await client.completions.create({ model: MODEL, prompt: "", temperature: 0, max_tokens: 29 });
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.object, "text_completion");
    assert.equal(r.choices[0]!.text, README.fromBos);
    assert.equal(r.choices[0]!.finish_reason, "length");
    assert.deepEqual(r.usage, { prompt_tokens: 1, completion_tokens: 29, total_tokens: 30 });

    const stream = await client.completions.create({ model: MODEL, prompt: "", temperature: 0, max_tokens: 29, stream: true, stream_options: { include_usage: true } });
    let text = "";
    const finishes: string[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of stream) {
      assert.equal(c.object, "text_completion");
      if (c.choices.length === 0) usage = c.usage;
      for (const ch of c.choices) {
        text += ch.text;
        if (ch.finish_reason) finishes.push(ch.finish_reason);
      }
    }
    assert.equal(text, README.fromBos);
    assert.deepEqual(finishes, ["length"]);
    assert.deepEqual(usage, { prompt_tokens: 1, completion_tokens: 29, total_tokens: 30 });
  });

  test("token-id prompts, several prompts x n, echo, logprobs", async () => {
    const ids = await client.completions.create({ model: MODEL, prompt: [1, 403, 407, 261, 378], temperature: 0, max_tokens: CONTINUATION_TOKENS });
    assert.equal(ids.choices[0]!.text, README.continuation);

    const multi = await client.completions.create({ model: MODEL, prompt: ["Once upon a time", ""], temperature: 0, max_tokens: 6, n: 2 });
    assert.deepEqual(multi.choices.map((c) => c.index), [0, 1, 2, 3]);
    assert.equal(multi.choices[0]!.text, multi.choices[1]!.text);
    assert.ok(README.continuation.startsWith(multi.choices[0]!.text));
    assert.ok(README.fromBos.startsWith(multi.choices[2]!.text));
    assert.deepEqual(multi.usage, { prompt_tokens: 6, completion_tokens: 24, total_tokens: 30 });

    const echo = await client.completions.create({ model: MODEL, prompt: "Once upon a time", temperature: 0, max_tokens: 3, echo: true });
    assert.equal(echo.choices[0]!.text, "Once upon a time, there was");

    // the same, streamed: per-choice text, one finish_reason each, echo first
    const raw = await rawStream("/v1/completions", { model: MODEL, prompt: ["Once upon a time", ""], temperature: 0, max_tokens: 6, n: 2, stream: true, echo: true });
    assert.equal(raw.at(-1), "[DONE]");
    const texts = ["", "", "", ""];
    const finishes: string[][] = [[], [], [], []];
    for (const c of raw.slice(0, -1) as OpenAI.Completion[]) {
      assert.equal(c.object, "text_completion");
      assert.equal(c.choices.length, 1);
      const ch = c.choices[0]!;
      assert.equal(finishes[ch.index]!.length, 0, "nothing after a choice's finish_reason");
      texts[ch.index] += ch.text;
      if (ch.finish_reason) finishes[ch.index]!.push(ch.finish_reason);
    }
    assert.deepEqual(finishes, [["length"], ["length"], ["length"], ["length"]]);
    assert.deepEqual(texts, [0, 1, 2, 3].map((i) => (i < 2 ? "Once upon a time" : "") + multi.choices[i]!.text));

    const lp = await client.completions.create({ model: MODEL, prompt: "Once upon a time", temperature: 0, max_tokens: 5, logprobs: 2 });
    const l = lp.choices[0]!.logprobs!;
    assert.equal(l.tokens!.length, 5);
    assert.equal(l.tokens!.join(""), lp.choices[0]!.text);
    assert.deepEqual(l.text_offset, [0, 1, 7, 11, 13]);
    for (let i = 0; i < 5; i++) {
      assert.equal(Object.keys(l.top_logprobs![i]!).length, 2);
      assert.ok(Math.abs(l.top_logprobs![i]![l.tokens![i]!]! - l.token_logprobs![i]!) < 1e-6);
    }
  });
});
