// Issue 16 item 6 (part): Idempotency-Keys belong to the API key that sent them (another
// key reusing the same header value neither replays nor is refused by the first key's
// request), and expired keys are swept on a timer while the server runs, not only at start.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { serveModel, type TestServing } from "./api-helpers.js";
import { Store } from "../server/store/store.js";
import { openDb } from "../server/store/db.js";
import { IdempotencyStore } from "../server/store/idempotency.js";
import { apiKeyId } from "../server/http/auth.js";

const A = "key-scope-user-a";
const B = "key-scope-user-b";
let s: TestServing;
const store = Store.open(":memory:");

before(async () => {
  s = await serveModel({ app: { store, apiKeys: [{ key: A, role: "user" }, { key: B, role: "user" }] } });
});
after(async () => {
  await s.close();
  store.close();
});

async function post(key: string, url: string, body: unknown, headers: Record<string, string> = {}) {
  return s.app.inject({ method: "POST", url, payload: body as object, headers: { authorization: `Bearer ${key}`, ...headers } });
}

test("one Idempotency-Key value under two API keys: two requests, neither sees the other's answer", async () => {
  const chat = await post(A, "/v1/chat/completions", { model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 3 });
  assert.equal(chat.statusCode, 200, chat.body);
  const id = (JSON.parse(chat.body) as { id: string }).id;
  const rate = { completion_id: id, rating: 1 };
  const first = await post(A, "/v1/feedback", rate, { "idempotency-key": "retry-1" });
  assert.equal(first.statusCode, 200, first.body);
  // the same key from A replays
  const again = await post(A, "/v1/feedback", rate, { "idempotency-key": "retry-1" });
  assert.equal(again.headers["idempotent-replayed"], "true");
  assert.equal(JSON.parse(again.body).id, JSON.parse(first.body).id);
  // the same header value from B (on B's own completion: A's is not B's to rate): B's own row, not A's response
  const chatB = await post(B, "/v1/chat/completions", { model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 3 });
  const idB = (JSON.parse(chatB.body) as { id: string }).id;
  const other = await post(B, "/v1/feedback", { completion_id: idB, rating: 1 }, { "idempotency-key": "retry-1" });
  assert.equal(other.statusCode, 200, other.body);
  assert.equal(other.headers["idempotent-replayed"], undefined);
  assert.notEqual(JSON.parse(other.body).id, JSON.parse(first.body).id);
  // ... and with another body: not refused because of A's use of the value
  const otherBody = await post(B, "/v1/feedback", { completion_id: idB, rating: -1 }, { "idempotency-key": "retry-2" });
  assert.equal(otherBody.statusCode, 200);
  const otherBody2 = await post(A, "/v1/feedback", { completion_id: id, rating: 1 }, { "idempotency-key": "retry-2" });
  assert.equal(otherBody2.statusCode, 200, otherBody2.body);
});

test("key ids are stable, distinct, and never contain the key", () => {
  assert.equal(apiKeyId(A), apiKeyId(A));
  assert.notEqual(apiKeyId(A), apiKeyId(B));
  assert.match(apiKeyId(A), /^key_[0-9a-f]{16}$/);
  assert.ok(!apiKeyId(A).includes(A));
});

test("expired Idempotency-Keys are swept on a timer", async () => {
  const db = openDb(":memory:");
  const keys = new IdempotencyStore(db, 50, 20);
  try {
    keys.run("scope", "k", { a: 1 }, () => ({ status: 200, body: {} }));
    const count = () => (db.prepare("SELECT COUNT(*) AS n FROM idempotency_keys").get() as { n: number }).n;
    assert.equal(count(), 1);
    await sleep(300);
    assert.equal(count(), 0, "swept without any new request");
  } finally {
    keys.close();
    db.close();
  }
});

test("each key may start --key-rate-limit requests a minute; the next is told when to retry; other keys are not affected", async () => {
  const limited = await serveModel({ app: { keyRequestsPerMinute: 3, apiKeys: [{ key: A, role: "user" }, { key: B, role: "user" }] } });
  try {
    const get = (key: string) => limited.app.inject({ method: "GET", url: "/v1/models", headers: { authorization: `Bearer ${key}` } });
    for (let i = 0; i < 3; i++) assert.equal((await get(A)).statusCode, 200);
    const over = await get(A);
    assert.equal(over.statusCode, 429);
    assert.equal(JSON.parse(over.body).error.code, "rate_limit_exceeded");
    const retry = Number(over.headers["retry-after"]);
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    assert.equal((await get(B)).statusCode, 200, "another key has its own budget");
    assert.equal((await limited.app.inject({ method: "GET", url: "/health" })).statusCode, 200, "public routes are not counted");
  } finally {
    await limited.close();
  }
});
