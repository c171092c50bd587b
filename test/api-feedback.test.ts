// POST /v1/feedback over real HTTP on completions made with the official client: each
// kind, n=2 preferences, 404/400/422 cases, Idempotency-Key retries, listing, and the
// export parsing as valid training lines.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type OpenAI from "openai";
import type { ErrorBody } from "../server/http/errors.js";
import type { FeedbackBody, ListPageBody } from "../server/http/schemas/store-responses.js";
import { jsonlErrors } from "../engine/train/data/training-format.js";
import { getJson, MODEL, postJson, serveWithStore, type StoreServing } from "./store-helpers.js";

let s: StoreServing;
const story = [{ role: "user" as const, content: "Once upon a time" }];
const other = [{ role: "user" as const, content: "The dog" }];
let pair: OpenAI.ChatCompletion; // n = 2
let a: OpenAI.ChatCompletion;
let b: OpenAI.ChatCompletion; // same prompt as a
let c: OpenAI.ChatCompletion; // another prompt

before(async () => {
  s = await serveWithStore();
  const chat = (messages: typeof story, seed: number, n = 1) => s.client.chat.completions.create({ model: MODEL, messages, max_tokens: 10, n, seed, temperature: 1 });
  [pair, a, b, c] = await Promise.all([chat(story, 1, 2), chat(story, 5), chat(story, 9), chat(other, 13)]);
  // distinct answers (choice i samples with seed + i), so a swapped chosen/rejected would show
  const texts = [pair.choices[0], pair.choices[1], a.choices[0], b.choices[0]].map((ch) => ch!.message.content);
  assert.equal(new Set(texts).size, 4, JSON.stringify(texts));
});
after(async () => {
  await s.close();
});

const feedback = (body: unknown, headers: Record<string, string> = {}) => postJson<FeedbackBody>(s.baseUrl, "/v1/feedback", body, headers);
const failure = async (body: unknown, status: number, param: string | null, code?: string, headers: Record<string, string> = {}) => {
  const r = await postJson<ErrorBody>(s.baseUrl, "/v1/feedback", body, headers);
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(r.json.error.param, param, r.json.error.message);
  if (code !== undefined) assert.equal(r.json.error.code, code, r.json.error.message);
  assert.equal(typeof r.json.error.message, "string");
  return r.json.error;
};

describe("POST /v1/feedback", () => {
  test("rating", async () => {
    const r = await feedback({ completion_id: a.id, rating: 1, comment: "lovely" });
    assert.equal(r.status, 200);
    const { id, created, ...rest } = r.json;
    assert.match(id, /^fb_/);
    assert.ok(Math.abs(created - Date.now() / 1000) < 60);
    assert.deepEqual(rest, { object: "feedback", type: "rating", model: MODEL, source: "rating", status: "approved", owner: null, completion_id: a.id, choice_index: 0, rating: 1, comment: "lovely" });
    const down = await feedback({ completion_id: pair.id, choice_index: 1, rating: -1 });
    assert.equal(down.status, 200);
    assert.equal(down.json.type === "rating" && down.json.choice_index, 1);
  });

  test("correction", async () => {
    const r = await feedback({ completion_id: b.id, correction: "Once upon a time, there was a cat." });
    assert.equal(r.status, 200);
    assert.equal(r.json.type, "correction");
    assert.equal(r.json.type === "correction" && r.json.correction, "Once upon a time, there was a cat.");
  });

  test("preference between two stored completions of the same prompt", async () => {
    const r = await feedback({ chosen_id: a.id, rejected_id: b.id });
    assert.equal(r.status, 200);
    const { id: _id, created: _c, ...rest } = r.json;
    assert.deepEqual(rest, { object: "feedback", type: "preference", model: MODEL, source: "pairwise", status: "approved", owner: null, chosen_id: a.id, chosen_index: 0, rejected_id: b.id, rejected_index: 0 });
  });

  test("preference between the two choices of an n=2 completion", async () => {
    const r = await feedback({ completion_id: pair.id, chosen_index: 1, rejected_index: 0 });
    assert.equal(r.status, 200);
    assert.ok(r.json.type === "preference");
    assert.deepEqual([r.json.chosen_id, r.json.chosen_index, r.json.rejected_id, r.json.rejected_index], [pair.id, 1, pair.id, 0]);
  });

  test("preference given as text", async () => {
    const r = await feedback({ prompt: "Tell me a story", chosen: "Once upon a time...", rejected: "No." });
    assert.equal(r.status, 200);
    assert.ok(r.json.type === "preference");
    assert.equal(r.json.chosen_id, null);
    assert.equal(r.json.model, null);
    assert.deepEqual(r.json.prompt, [{ role: "user", content: "Tell me a story" }]);
    const conv = await feedback({ prompt: [{ role: "system", content: "Be kind." }, ...story], chosen: "x", rejected: "y", type: "preference" });
    assert.equal(conv.status, 200);
  });

  test("unknown ids: 404 naming the parameter", async () => {
    await failure({ completion_id: "chatcmpl-nope", rating: 1 }, 404, "completion_id", "completion_not_found");
    await failure({ completion_id: "chatcmpl-nope", correction: "x" }, 404, "completion_id", "completion_not_found");
    await failure({ chosen_id: "chatcmpl-nope", rejected_id: a.id }, 404, "chosen_id", "completion_not_found");
    await failure({ chosen_id: a.id, rejected_id: "chatcmpl-nope" }, 404, "rejected_id", "completion_not_found");
    await failure({ completion_id: "chatcmpl-nope", chosen_index: 0, rejected_index: 1 }, 404, "completion_id", "completion_not_found");
  });

  test("bad combinations: 400 in the OpenAI shape", async () => {
    await failure({ chosen_id: a.id, rejected_id: c.id }, 400, "rejected_id", "different_prompts");
    await failure({ chosen_id: a.id, rejected_id: a.id }, 400, "rejected_index");
    await failure({ completion_id: pair.id, chosen_index: 0, rejected_index: 2 }, 400, "rejected_index");
    await failure({ completion_id: a.id, rating: 1, choice_index: 1 }, 400, "choice_index");
    await failure({ completion_id: a.id, rating: 2 }, 400, "rating");
    await failure({ completion_id: a.id, rating: "1" }, 400, "rating");
    await failure({ rating: 1 }, 400, "completion_id", "missing_required_parameter");
    await failure({ chosen_id: a.id }, 400, "rejected_id", "missing_required_parameter");
    await failure({ prompt: "x", chosen: "y" }, 400, "rejected", "missing_required_parameter");
    await failure({ completion_id: a.id, rating: 1, correction: "x" }, 400, "correction", "conflicting_parameters");
    await failure({ completion_id: a.id, rating: 1, type: "correction" }, 400, "type");
    await failure({ completion_id: a.id }, 400, null, "missing_required_parameter");
    await failure({ completion_id: a.id, rating: 1, mood: "happy" }, 400, "mood");
    await failure({ prompt: 5, chosen: "y", rejected: "z" }, 400, "prompt", "invalid_type");
    const text = await s.client.completions.create({ model: MODEL, prompt: "Once", max_tokens: 2 });
    await failure({ completion_id: text.id, rating: 1 }, 400, "completion_id", "unsupported_completion");
  });

  test("Idempotency-Key: a retry returns the first response and stores nothing new; another body is 422", async () => {
    const count = () => s.store!.feedback.list({ limit: 100, order: "asc" }).items.length;
    const key = { "idempotency-key": `key-${Date.now()}` };
    const first = await feedback({ completion_id: a.id, rating: -1, comment: "meh" }, key);
    assert.equal(first.status, 200);
    const n = count();
    const retry = await feedback({ comment: "meh", rating: -1, completion_id: a.id }, key);
    assert.equal(retry.status, 200);
    assert.deepEqual(retry.json, first.json, "the same feedback id");
    assert.equal(retry.headers.get("idempotent-replayed"), "true");
    assert.equal(first.headers.get("idempotent-replayed"), null);
    assert.equal(count(), n);
    await failure({ completion_id: a.id, rating: 1 }, 422, "Idempotency-Key", "idempotency_key_reused", key);
    assert.equal(count(), n);
    // a request that failed does not use up its key
    const key2 = { "idempotency-key": `key2-${Date.now()}` };
    await failure({ completion_id: "chatcmpl-nope", rating: 1 }, 404, "completion_id", undefined, key2);
    assert.equal((await feedback({ completion_id: a.id, rating: 1 }, key2)).status, 200);
    await failure({ completion_id: a.id, rating: 1 }, 400, "Idempotency-Key", "invalid_idempotency_key", { "idempotency-key": "x".repeat(256) });
  });
});

describe("GET /v1/feedback and the export", () => {
  test("list filters by type, completion and model; pages with after", async () => {
    const list = async (q: string) => {
      const r = await getJson<ListPageBody<FeedbackBody>>(s.baseUrl, `/v1/feedback${q}`);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.equal(r.json.object, "list");
      return r.json;
    };
    const all = await list("?limit=100");
    assert.ok(all.data.length >= 8);
    assert.ok((await list("?type=correction")).data.every((f) => f.type === "correction"));
    const forA = await list(`?completion_id=${a.id}&limit=100`);
    assert.ok(forA.data.length > 0);
    for (const f of forA.data) assert.ok(JSON.stringify(f).includes(a.id));
    assert.equal((await list(`?model=${MODEL}&limit=100`)).data.length, all.data.filter((f) => f.model === MODEL).length);
    assert.equal((await list("?model=nobody")).data.length, 0);
    const p1 = await list("?limit=3");
    assert.equal(p1.has_more, true);
    const p2 = await list(`?limit=3&after=${p1.last_id}`);
    assert.deepEqual(p2.data[0]!.id, all.data[3]!.id);
    assert.equal((await list(`?since=${Math.floor(Date.now() / 1000) + 10}`)).data.length, 0);
    const bad = await getJson<ErrorBody>(s.baseUrl, "/v1/feedback?type=praise");
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "type");
    const badAfter = await getJson<ErrorBody>(s.baseUrl, "/v1/feedback?after=fb_nope");
    assert.equal(badAfter.status, 404);
    assert.equal(badAfter.json.error.code, "feedback_not_found");
  });

  test("export: sft and dpo JSONL that parse as valid training lines", async () => {
    const get = async (q: string) => {
      const res = await fetch(`${s.baseUrl}/v1/feedback/export${q}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /jsonl/);
      return res.text();
    };
    const sft = await get("?format=sft");
    assert.deepEqual(jsonlErrors("sft", sft), []);
    const sftLines = sft.trim().split("\n").map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] });
    const answers = sftLines.map((l) => l.messages.at(-1)!.content);
    assert.ok(answers.includes("Once upon a time, there was a cat."), "the correction");
    assert.ok(answers.includes(a.choices[0]!.message.content!), "the +1-rated answer");
    assert.ok(!answers.includes(pair.choices[1]!.message.content!), "no -1-rated answer");
    for (const l of sftLines) assert.deepEqual(l.messages.slice(0, -1), story);

    const dpo = await get("?format=dpo");
    assert.deepEqual(jsonlErrors("dpo", dpo), []);
    const dpoLines = dpo.trim().split("\n").map((l) => JSON.parse(l) as { input: { messages: unknown[] }; preferred_output: { content: string }[]; non_preferred_output: { content: string }[] });
    // the two pairwise choices; the text preferences are not the server's answers, so by
    // default (--rlhf-sources rating,pairwise) they do not train (test/api-feedback-review.test.ts)
    assert.equal(dpoLines.length, 2);
    assert.deepEqual(dpoLines[0], {
      input: { messages: story },
      preferred_output: [{ role: "assistant", content: a.choices[0]!.message.content }],
      non_preferred_output: [{ role: "assistant", content: b.choices[0]!.message.content }],
    });
    assert.deepEqual(
      [dpoLines[1]!.preferred_output[0]!.content, dpoLines[1]!.non_preferred_output[0]!.content],
      [pair.choices[1]!.message.content, pair.choices[0]!.message.content],
    );
    assert.equal(await get("?format=dpo&model=nobody"), "");
    assert.equal(await get(`?format=sft&since=${Math.floor(Date.now() / 1000) + 10}`), "");
    const bad = await getJson<ErrorBody>(s.baseUrl, "/v1/feedback/export?format=ppo");
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, "format");
    const missing = await getJson<ErrorBody>(s.baseUrl, "/v1/feedback/export");
    assert.equal(missing.status, 400);
    assert.equal(missing.json.error.param, "format");
  });
});
