// Issue 16 item 6: each key sees only its own stored completions and feedback; an admin
// key sees all. Over a real socket with the official `openai` client (HybridchatClient is
// that client plus the feedback calls): two user keys A and B and an admin. Another key's
// id answers 404 (never 403), and list pages, cursors and has_more never show it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { HybridchatClient } from "../clients/client.js";
import { apiKeyId } from "../server/http/auth.js";
import { Store } from "../server/store/store.js";
import { serveModel, type TestServing } from "./api-helpers.js";

const A = "ownership-user-a";
const B = "ownership-user-b";
const ADMIN = "ownership-admin";
const MODEL = "stories260K";

let s: TestServing;
let baseURL: string;
const store = Store.open(":memory:");
const client = (key: string) => new HybridchatClient({ baseURL, apiKey: key, maxRetries: 0 });
let a: HybridchatClient;
let b: HybridchatClient;
let admin: HybridchatClient;

/** ids of the chat completions each key made (A: 1, B: 2) and of the feedback */
const made = { a: [] as string[], b: [] as string[], legacy: "chatcmpl-before-owners" };

const chat = async (c: HybridchatClient, content: string, n = 1) =>
  (await c.chat.completions.create({ model: MODEL, messages: [{ role: "user", content }], max_tokens: 4, n })).id;

const notFound = (e: unknown): boolean => e instanceof OpenAI.NotFoundError;

before(async () => {
  s = await serveModel({ app: { store, apiKeys: [{ key: A, role: "user" }, { key: B, role: "user" }, { key: ADMIN, role: "admin" }] } });
  baseURL = `${await s.app.listen({ host: "127.0.0.1", port: 0 })}/v1`;
  [a, b, admin] = [client(A), client(B), client(ADMIN)];
  made.a.push(await chat(a, "Once upon a time", 2));
  made.b.push(await chat(b, "Tom had a dog"), await chat(b, "Tom had a dog"));
  // a row stored before completions had owners (or by a server without keys): admins only
  const old = store.completions.get(made.a[0]!)!;
  store.completions.insert({ ...old, id: made.legacy, owner: null, response: { ...old.response, id: made.legacy } });
});
after(async () => {
  await s.close();
  store.close();
});

test("rows record the key id that stored them, never the key", () => {
  assert.equal(store.completions.get(made.a[0]!)!.owner, apiKeyId(A));
  assert.equal(store.completions.get(made.b[0]!)!.owner, apiKeyId(B));
  assert.ok(!JSON.stringify(store.completions.get(made.a[0]!)).includes(A));
});

test("stored completions: a user key lists and reads only its own; an admin sees all", async () => {
  const ids = async (c: HybridchatClient, q: OpenAI.Chat.Completions.ChatCompletionListParams = {}) => {
    const page = await c.chat.completions.list(q);
    return { ids: page.data.map((x) => x.id), hasMore: page.has_more };
  };
  assert.deepEqual((await ids(a)).ids, made.a);
  assert.deepEqual((await ids(b)).ids, made.b);
  assert.deepEqual(new Set((await ids(admin)).ids), new Set([...made.a, ...made.b, made.legacy]));
  // a page's has_more counts only the key's own rows
  assert.deepEqual(await ids(a, { limit: 1 }), { ids: made.a, hasMore: false });
  assert.deepEqual(await ids(b, { limit: 1 }), { ids: [made.b[0]!], hasMore: true });
  // another key's id as a cursor is as unknown as a made-up one
  await assert.rejects(a.chat.completions.list({ after: made.b[0]! }), notFound);
  await assert.rejects(a.chat.completions.list({ after: made.legacy }), notFound);
  assert.deepEqual((await ids(b, { after: made.b[0]! })).ids, [made.b[1]!]);

  await assert.rejects(b.chat.completions.retrieve(made.a[0]!), notFound);
  await assert.rejects(b.chat.completions.messages.list(made.a[0]!), notFound);
  await assert.rejects(a.chat.completions.retrieve(made.legacy), notFound);
  assert.equal((await a.chat.completions.retrieve(made.a[0]!)).id, made.a[0]);
  assert.equal((await admin.chat.completions.retrieve(made.a[0]!)).id, made.a[0]);
  assert.equal((await admin.chat.completions.retrieve(made.legacy)).id, made.legacy);
  assert.equal((await admin.chat.completions.messages.list(made.b[0]!)).data.length, 1);
});

test("feedback: a key rates, corrects and compares only its own completions, and lists and exports only its own feedback", async () => {
  const [cA] = made.a;
  const [cB0, cB1] = made.b;
  // on another key's completion: 404 naming the parameter, nothing stored
  const before = store.feedback.list({ limit: 100, order: "asc" }).items.length;
  await assert.rejects(b.feedback.rate(cA!, 1), (e: unknown) => notFound(e) && (e as InstanceType<typeof OpenAI.APIError>).param === "completion_id");
  await assert.rejects(b.feedback.correct(cA!, "a dragon"), notFound);
  await assert.rejects(b.feedback.prefer({ completionId: cA!, chosenIndex: 1, rejectedIndex: 0 }), notFound);
  await assert.rejects(b.feedback.prefer({ chosenId: cB0!, rejectedId: cA! }), (e: unknown) => notFound(e) && (e as InstanceType<typeof OpenAI.APIError>).param === "rejected_id");
  await assert.rejects(a.feedback.rate(made.legacy, 1), notFound);
  assert.equal(store.feedback.list({ limit: 100, order: "asc" }).items.length, before);

  const fa = [
    await a.feedback.rate(cA!, 1),
    await a.feedback.correct(cA!, "Once upon a time, A's own story."),
    await a.feedback.prefer({ completionId: cA!, chosenIndex: 1, rejectedIndex: 0 }),
  ];
  const fb = [await b.feedback.rate(cB0!, 1), await b.feedback.prefer({ chosenId: cB1!, rejectedId: cB0! })];
  assert.equal(store.feedback.list({ limit: 100, order: "asc", ownedBy: apiKeyId(A) }).items.length, 3);
  // the admin judges anyone's
  const fAdmin = await admin.feedback.rate(cB0!, -1);

  const listed = async (c: HybridchatClient, q: Parameters<HybridchatClient["feedback"]["list"]>[0] = {}) => (await c.feedback.list(q)).data.map((f) => f.id);
  assert.deepEqual(await listed(a), fa.map((f) => f.id));
  assert.deepEqual(await listed(b), fb.map((f) => f.id));
  assert.deepEqual(new Set(await listed(admin)), new Set([...fa, ...fb, fAdmin].map((f) => f.id)));
  // filtering on another key's completion finds nothing of it (the admin's rating of B's answer neither)
  assert.deepEqual(await listed(a, { completionId: cB0! }), []);
  assert.deepEqual(await listed(b, { completionId: cB0! }), fb.map((f) => f.id));
  assert.equal((await a.feedback.list({ limit: 1 })).has_more, true);
  assert.equal((await b.feedback.list({ limit: 1, after: fb[0]!.id })).has_more, false);
  await assert.rejects(a.feedback.list({ after: fb[0]!.id }), notFound);
  await assert.rejects(b.feedback.list({ after: fAdmin.id }), notFound);

  // exports: A's lines are A's texts only; the admin's hold both keys'
  const sftA = await a.feedback.export("sft");
  const sftB = await b.feedback.export("sft");
  const sftAll = await admin.feedback.export("sft");
  assert.ok(sftA.includes("A's own story"));
  assert.ok(!sftB.includes("A's own story"));
  assert.ok(sftAll.includes("A's own story"));
  const lines = (t: string) => t.trim().split("\n").filter(Boolean).length;
  assert.equal(lines(sftA) + lines(sftB), lines(sftAll));
  const dpoA = await a.feedback.export("dpo");
  const dpoB = await b.feedback.export("dpo");
  assert.equal(lines(dpoA), 1);
  assert.equal(lines(dpoB), 1);
  assert.equal(lines(await admin.feedback.export("dpo")), 2);
  assert.ok(dpoA.includes("Once upon a time") && !dpoA.includes("Tom had a dog"));
  assert.ok(dpoB.includes("Tom had a dog") && !dpoB.includes("Once upon a time"));
});

test("files and fine-tuning jobs stay admin-only (403 for user keys); the admin's record its key id", async () => {
  const upload = new File(['{"prompt":"Once upon a time","completion":" there was a cat."}\n'], "one.jsonl");
  await assert.rejects(a.files.create({ file: upload, purpose: "fine-tune" }), (e: unknown) => e instanceof OpenAI.PermissionDeniedError);
  await assert.rejects(a.files.list(), (e: unknown) => e instanceof OpenAI.PermissionDeniedError);
  await assert.rejects(a.fineTuning.jobs.list(), (e: unknown) => e instanceof OpenAI.PermissionDeniedError);
  const file = await admin.files.create({ file: upload, purpose: "fine-tune" });
  assert.equal(store.files.get(file.id)!.owner, apiKeyId(ADMIN));
  const job = await admin.fineTuning.jobs.create({ model: MODEL, training_file: file.id, method: { type: "supervised" } });
  assert.equal(store.jobs.get(job.id)!.owner, apiKeyId(ADMIN));
  await admin.fineTuning.jobs.cancel(job.id);
  await assert.rejects(a.fineTuning.jobs.retrieve(job.id), (e: unknown) => e instanceof OpenAI.PermissionDeniedError);
});

test("without keys nothing changes: every row is everyone's", async () => {
  const open = Store.open(":memory:");
  const keyless = await serveModel({ app: { store: open } });
  try {
    const hc = new HybridchatClient({ baseURL: `${await keyless.app.listen({ host: "127.0.0.1", port: 0 })}/v1`, maxRetries: 0 });
    const id = await chat(hc, "Once upon a time");
    assert.equal(open.completions.get(id)!.owner, null);
    await hc.feedback.rate(id, 1);
    assert.deepEqual((await hc.chat.completions.list()).data.map((c) => c.id), [id]);
    assert.equal((await hc.chat.completions.retrieve(id)).id, id);
    assert.equal((await hc.feedback.list()).data.length, 1);
    assert.equal(open.feedback.list({ limit: 10, order: "asc" }).items[0]!.owner, null);
    assert.equal((await hc.feedback.export("sft")).trim().split("\n").length, 1);
  } finally {
    await keyless.close();
    open.close();
  }
});
