// Stored completions over real HTTP with the official client: on by default, `store: false`
// per request, a server without a store, streamed completions, retrieve/list/messages in
// OpenAI's shapes, and 404s in the OpenAI error shape.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { ErrorBody } from "../server/http/errors.js";
import { holdOnceRunning } from "./api-helpers.js";
import { getJson, MODEL, serveWithStore, type StoreServing } from "./store-helpers.js";

const prompt = [{ role: "user" as const, content: "Once upon a time" }];

describe("with a store", () => {
  let s: StoreServing;
  before(async () => {
    s = await serveWithStore();
  });
  after(async () => {
    await s.close();
  });

  test("a chat completion is stored by default and retrieved exactly as it was returned", async () => {
    const created = await s.client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 12, temperature: 0, metadata: { topic: "retrieve" } });
    const got = await s.client.chat.completions.retrieve(created.id);
    assert.deepEqual(got, created);
    const rec = s.store!.completions.get(created.id)!;
    assert.equal(rec.model, MODEL);
    assert.equal(rec.adapter, null);
    assert.equal(rec.systemFingerprint, created.system_fingerprint);
    assert.deepEqual(rec.metadata, { topic: "retrieve" });
    assert.deepEqual(rec.promptMessages, prompt);
    assert.equal(rec.request.max_tokens, 12, "the request's parameters are kept");
    assert.deepEqual(rec.choices, [{ index: 0, text: created.choices[0]!.message.content, finishReason: created.choices[0]!.finish_reason }]);
    assert.equal(rec.completionTokens, created.usage!.completion_tokens);
    assert.ok(rec.timings.totalMs >= rec.timings.ttftMs && rec.timings.ttftMs > 0 && rec.timings.queuedMs >= 0, JSON.stringify(rec.timings));
    assert.equal(rec.streamed, false);
  });

  test("store: false keeps nothing; retrieve is a 404 in the OpenAI shape", async () => {
    const created = await s.client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 4, store: false });
    assert.equal(s.store!.completions.get(created.id), null);
    await assert.rejects(s.client.chat.completions.retrieve(created.id), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, "completion_not_found");
      assert.equal(e.param, "completion_id");
      return true;
    });
  });

  test("a streamed completion is stored once it finished, as the object its chunks add up to", async () => {
    const stream = await s.client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 16, temperature: 0, n: 2, stream: true, stream_options: { include_usage: true } });
    let id = "";
    const texts = ["", ""];
    const finish: (string | null)[] = [null, null];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      id = chunk.id;
      for (const c of chunk.choices) {
        texts[c.index] += c.delta.content ?? "";
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    const got = await s.client.chat.completions.retrieve(id);
    assert.equal(got.object, "chat.completion");
    assert.deepEqual(got.choices.map((c) => c.message.content), texts);
    assert.deepEqual(got.choices.map((c) => c.finish_reason), finish);
    assert.deepEqual(got.usage, usage);
    // the same greedy request, not streamed, gives the same answer
    const plain = await s.client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 16, temperature: 0 });
    assert.equal(plain.choices[0]!.message.content, texts[0]);
    assert.equal(s.store!.completions.get(id)!.streamed, true);
  });

  test("a request that fails or is cancelled is not stored", async () => {
    const before = s.store!.completions.list({ object: "chat.completion", limit: 100, order: "asc" }).items.length;
    const release = holdOnceRunning(s.engine);
    try {
      const controller = new AbortController();
      const res = await fetch(`${s.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, messages: prompt, max_tokens: 400, ignore_eos: true, stream: true }),
        signal: controller.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
      await reader.read().catch(() => undefined);
    } finally {
      await release();
    }
    const bad = await fetch(`${s.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: prompt, max_tokens: 100_000 }),
    });
    assert.equal(bad.status, 400);
    // give the cancelled stream time to wind down, then count
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(s.store!.completions.list({ object: "chat.completion", limit: 100, order: "asc" }).items.length, before);
  });

  test("list: OpenAI's page shape, after/limit/order, model and metadata filters; the client pages through", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await s.client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 2, metadata: { batch: "list", i: String(i) } })).id);
    const page = await s.client.chat.completions.list({ metadata: { batch: "list" }, limit: 2 });
    assert.deepEqual(page.data.map((c) => c.id), ids.slice(0, 2));
    assert.equal(page.has_more, true);
    const all: string[] = [];
    for await (const c of s.client.chat.completions.list({ metadata: { batch: "list" }, limit: 1 })) all.push(c.id);
    assert.deepEqual(all, ids, "auto-pagination follows `after`");
    const desc = await s.client.chat.completions.list({ metadata: { batch: "list" }, order: "desc" });
    assert.deepEqual(desc.data.map((c) => c.id), [...ids].reverse());
    const one = await s.client.chat.completions.list({ metadata: { batch: "list", i: "1" } });
    assert.deepEqual(one.data.map((c) => c.id), [ids[1]]);
    assert.equal((await s.client.chat.completions.list({ model: "other-model" })).data.length, 0);
    const raw = await getJson<{ object: string; first_id: string; last_id: string; has_more: boolean }>(s.baseUrl, "/v1/chat/completions?metadata[batch]=list&limit=3");
    assert.deepEqual({ ...raw.json, data: undefined }, { object: "list", data: undefined, first_id: ids[0], last_id: ids[2], has_more: false });
    const badCursor = await getJson<ErrorBody>(s.baseUrl, "/v1/chat/completions?after=chatcmpl-nope");
    assert.equal(badCursor.status, 404);
    assert.equal(badCursor.json.error.param, "after");
    const badLimit = await getJson<ErrorBody>(s.baseUrl, "/v1/chat/completions?limit=0");
    assert.equal(badLimit.status, 400);
    assert.equal(badLimit.json.error.param, "limit");
  });

  test("messages: the request's messages with OpenAI's ids, paged", async () => {
    const messages = [
      { role: "system" as const, content: "Tell a story." },
      { role: "user" as const, content: [{ type: "text" as const, text: "Once upon" }, { type: "text" as const, text: "a time" }] },
    ];
    const created = await s.client.chat.completions.create({ model: MODEL, messages, max_tokens: 2 });
    const page = await s.client.chat.completions.messages.list(created.id);
    assert.deepEqual(page.data, [
      { id: `${created.id}-0`, role: "system", content: "Tell a story.", name: null, content_parts: null },
      { id: `${created.id}-1`, role: "user", content: "Once upon\na time", name: null, content_parts: messages[1]!.content },
    ]);
    const second = await s.client.chat.completions.messages.list(created.id, { after: `${created.id}-0` });
    assert.deepEqual(second.data.map((m) => m.id), [`${created.id}-1`]);
    await assert.rejects(s.client.chat.completions.messages.list("chatcmpl-nope"), OpenAI.NotFoundError);
  });

  test("text completions are stored too (and are not chat completions)", async () => {
    const created = await s.client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 5, temperature: 0 });
    const rec = s.store!.completions.get(created.id)!;
    assert.equal(rec.object, "text_completion");
    assert.deepEqual(rec.response, created);
    assert.equal(rec.promptMessages, null);
    const r = await getJson<ErrorBody>(s.baseUrl, `/v1/chat/completions/${created.id}`);
    assert.equal(r.status, 404);
  });

  test("metadata: at most 16 pairs of strings", async () => {
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    await assert.rejects(s.client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 2, metadata: many }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, "metadata");
      return true;
    });
    await assert.rejects(
      s.client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 2, metadata: { k: 1 as unknown as string } }),
      OpenAI.BadRequestError,
    );
  });
});

describe("without a store (--no-store)", () => {
  let s: StoreServing;
  before(async () => {
    s = await serveWithStore({ store: false });
  });
  after(async () => {
    await s.close();
  });

  test("completions are served and nothing is kept; the store's routes say why", async () => {
    const created = await s.client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 4, store: true });
    assert.equal(created.object, "chat.completion");
    for (const path of [`/v1/chat/completions/${created.id}`, "/v1/chat/completions", "/v1/feedback"]) {
      const r = await getJson<ErrorBody>(s.baseUrl, path);
      assert.equal(r.status, 404, path);
      assert.equal(r.json.error.code, "store_disabled");
    }
  });
});
