// The store on a real SQLite file: pragmas, versioned migrations, completions and
// feedback round trips, pagination and filters, idempotency, export lines.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { DB_FILE, openDb, schemaVersion, StoreError } from "../server/store/db.js";
import { MIGRATIONS } from "../server/store/migrations.js";
import { Store } from "../server/store/store.js";
import { UnknownCursorError } from "../server/store/completions.js";
import { exportLines } from "../server/store/export.js";
import { jsonlErrors, trainingLineError } from "../engine/train/data/training-format.js";
import type { CompletionRecord, PromptMessage } from "../server/store/types.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "hybridchat-db-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
function completion(o: Partial<CompletionRecord> & { messages?: PromptMessage[]; texts?: string[] } = {}): CompletionRecord {
  const id = o.id ?? `chatcmpl-test${++n}`;
  const messages = o.messages ?? [{ role: "user", content: "Once upon a time" }];
  const texts = o.texts ?? ["a story"];
  const response = {
    id,
    object: "chat.completion" as const,
    created: 1_700_000_000 + n,
    model: o.model ?? "m",
    system_fingerprint: "fp_x",
    choices: texts.map((t, i) => ({ index: i, message: { role: "assistant" as const, content: t, refusal: null }, logprobs: null, finish_reason: "stop" as const })),
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  };
  return {
    id,
    object: "chat.completion",
    created: response.created,
    model: o.model ?? "m",
    adapter: null,
    systemFingerprint: "fp_x",
    request: { model: o.model ?? "m", messages },
    promptMessages: messages,
    choices: texts.map((t, i) => ({ index: i, text: t, finishReason: "stop" })),
    promptTokens: 3,
    completionTokens: 2,
    timings: { queuedMs: 1, ttftMs: 2, totalMs: 3 },
    streamed: false,
    metadata: o.metadata ?? {},
    owner: o.owner ?? null,
    response,
  };
}

describe("the database file", () => {
  test("WAL, synchronous FULL, foreign keys, busy timeout; migrations recorded once", () => {
    const sub = join(dir, "fresh");
    const db = openDb(sub);
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    assert.equal(db.pragma("synchronous", { simple: true }), 2, "FULL");
    assert.equal(db.pragma("foreign_keys", { simple: true }), 1);
    assert.equal(db.pragma("busy_timeout", { simple: true }), 5000);
    assert.equal(schemaVersion(db), MIGRATIONS.length);
    db.close();
    // reopening applies nothing twice
    const again = openDb(sub);
    const rows = again.prepare("SELECT version FROM schema_migrations").all();
    assert.equal(rows.length, MIGRATIONS.length);
    again.close();
  });

  test("migration 3 keeps a version-2 database's files and admits prompt files", () => {
    const sub = join(dir, "v2-files");
    const v2 = openDb(sub, MIGRATIONS.slice(0, 2));
    v2.prepare("INSERT INTO files (id, filename, purpose, bytes, created_at, format, examples) VALUES ('file-a', 'a.jsonl', 'fine-tune', 10, 1, 'dpo', 2)").run();
    assert.throws(() => v2.prepare("INSERT INTO files (id, filename, purpose, bytes, created_at, format, examples) VALUES ('file-b', 'b.jsonl', 'fine-tune', 1, 1, 'prompts', 1)").run(), /CHECK/);
    v2.close();
    const db = openDb(sub);
    assert.deepEqual(db.prepare("SELECT seq, id, format, examples FROM files").all(), [{ seq: 1, id: "file-a", format: "dpo", examples: 2 }]);
    db.prepare("INSERT INTO files (id, filename, purpose, bytes, created_at, format, examples) VALUES ('file-b', 'b.jsonl', 'fine-tune', 1, 1, 'prompts', 1)").run();
    assert.equal(db.prepare("SELECT seq FROM files WHERE id = 'file-b'").pluck().get(), 2);
    assert.throws(() => db.prepare("INSERT INTO files (id, filename, purpose, bytes, created_at, format, examples) VALUES ('file-c', 'c.jsonl', 'fine-tune', 1, 1, 'text', 1)").run(), /CHECK/);
    db.close();
  });

  test("feedback from before provenance: classed by its form, approved, without an owner", () => {
    const sub = join(dir, "provenance");
    const old = openDb(sub, MIGRATIONS.slice(0, 3));
    const c = completion();
    old.prepare("INSERT INTO completions (id, object, created, model, system_fingerprint, request, response, prompt_tokens, completion_tokens, queued_ms, ttft_ms, total_ms, streamed, metadata) VALUES (?, 'chat.completion', 1, 'm', 'fp', '{}', '{}', 1, 1, 0, 0, 0, 0, '{}')").run(c.id);
    const fb = old.prepare("INSERT INTO feedback (id, type, created, completion_id, rating, prompt_messages, answer, chosen_id, chosen, rejected_id, rejected) VALUES (?, ?, 1, ?, ?, '[]', ?, ?, ?, ?, ?)");
    fb.run("fb_r", "rating", c.id, 1, "a", null, null, null, null);
    fb.run("fb_p", "preference", null, null, null, c.id, "x", c.id, "y");
    fb.run("fb_t", "preference", null, null, null, null, "x", null, "y");
    old.close();
    const store = Store.open(sub);
    try {
      const rows = store.feedback.list({ limit: 10, order: "asc" }).items;
      assert.deepEqual(rows.map((f) => [f.id, f.source, f.status, f.owner]), [["fb_r", "rating", "approved", null], ["fb_p", "pairwise", "approved", null], ["fb_t", "text", "approved", null]]);
    } finally {
      store.close();
    }
  });

  test("a later migration is applied to an older database; a newer database is refused", () => {
    const sub = join(dir, "versions");
    openDb(sub, MIGRATIONS).close();
    const extra = [...MIGRATIONS, { version: MIGRATIONS.length + 1, name: "test column", up: "ALTER TABLE feedback ADD COLUMN extra TEXT" }];
    const db = openDb(sub, extra);
    assert.equal(schemaVersion(db), extra.length);
    assert.ok((db.prepare("PRAGMA table_info(feedback)").all() as { name: string }[]).some((c) => c.name === "extra"));
    db.close();
    assert.throws(() => openDb(sub, MIGRATIONS), (e: unknown) => e instanceof StoreError && e.code === "schema_too_new");
  });

  test("a failing migration leaves the database at the last good version", () => {
    const sub = join(dir, "broken");
    const bad = [...MIGRATIONS, { version: MIGRATIONS.length + 1, name: "broken", up: "CREATE TABLE t (x); THIS IS NOT SQL" }];
    assert.throws(() => openDb(sub, bad), (e: unknown) => e instanceof StoreError && e.code === "migration_failed");
    const raw = new Database(join(sub, DB_FILE));
    assert.equal(raw.prepare("SELECT max(version) AS v FROM schema_migrations").pluck().get(), MIGRATIONS.length);
    assert.equal(raw.prepare("SELECT count(*) FROM sqlite_master WHERE name = 't'").pluck().get(), 0, "the broken migration's table was rolled back");
    raw.close();
  });
});

describe("completions", () => {
  let store: Store;
  before(() => {
    store = Store.open(join(dir, "completions"));
  });
  after(() => store.close());

  test("insert and get round-trip every field", () => {
    const c = completion({ metadata: { user: "u1" }, texts: ["one", "two"] });
    store.completions.insert(c);
    assert.deepEqual(store.completions.get(c.id), c);
    assert.equal(store.completions.get("chatcmpl-nope"), null);
    // the id is unique: a second insert fails and changes nothing
    assert.throws(() => store.completions.insert(c), /UNIQUE/);
    assert.deepEqual(store.completions.get(c.id), c);
  });

  test("list: pages with after, both orders, model and metadata filters", () => {
    const mine = Array.from({ length: 5 }, (_, i) => completion({ model: "list-model", metadata: { k: i % 2 ? "odd" : "even" } }));
    for (const c of mine) store.completions.insert(c);
    const ids = mine.map((c) => c.id);
    const q = { object: "chat.completion" as const, model: "list-model", limit: 2 };
    const p1 = store.completions.list({ ...q, order: "asc" });
    assert.deepEqual(p1.items.map((c) => c.id), ids.slice(0, 2));
    assert.equal(p1.hasMore, true);
    const p3 = store.completions.list({ ...q, order: "asc", after: ids[3] });
    assert.deepEqual(p3.items.map((c) => c.id), ids.slice(4));
    assert.equal(p3.hasMore, false);
    const desc = store.completions.list({ ...q, order: "desc", after: ids[4] });
    assert.deepEqual(desc.items.map((c) => c.id), [ids[3], ids[2]]);
    const odd = store.completions.list({ ...q, limit: 10, order: "asc", metadata: { k: "odd" } });
    assert.deepEqual(odd.items.map((c) => c.id), [ids[1], ids[3]]);
    assert.equal(store.completions.list({ ...q, order: "asc", metadata: { k: "odd", other: "x" } }).items.length, 0);
    assert.throws(() => store.completions.list({ ...q, order: "asc", after: "chatcmpl-nope" }), UnknownCursorError);
  });
});

describe("feedback, idempotency and export", () => {
  let store: Store;
  before(() => {
    store = Store.open(join(dir, "feedback"));
  });
  after(() => store.close());

  test("a feedback row must name a stored completion (foreign key)", () => {
    assert.throws(
      () =>
        store.feedback.insert(
          { owner: null, status: "approved", type: "rating", completionId: "chatcmpl-missing", choiceIndex: 0, rating: 1, comment: null, answer: "x", model: "m", promptMessages: [] },
          1,
        ),
      /FOREIGN KEY/,
    );
  });

  test("list filters by type, completion, model and time; export writes valid training lines", () => {
    const a = completion({ model: "A", texts: ["good answer", "bad answer"] });
    const b = completion({ model: "B" });
    store.completions.insert(a);
    store.completions.insert(b);
    const prompt = a.promptMessages!;
    const sys: PromptMessage[] = [{ role: "developer", content: "be brief" }, ...prompt];
    const r1 = store.feedback.insert({ owner: null, status: "approved", type: "rating", completionId: a.id, choiceIndex: 0, rating: 1, comment: "nice", answer: "good answer", model: "A", promptMessages: prompt }, 100);
    const r2 = store.feedback.insert({ owner: null, status: "approved", type: "rating", completionId: b.id, choiceIndex: 0, rating: -1, comment: null, answer: "a story", model: "B", promptMessages: prompt }, 200);
    const c1 = store.feedback.insert({ owner: null, status: "approved", type: "correction", completionId: b.id, choiceIndex: 0, correction: "a better story", answer: "a story", model: "B", promptMessages: sys }, 300);
    const p1 = store.feedback.insert(
      { owner: null, status: "approved", type: "preference", chosenId: a.id, chosenIndex: 0, rejectedId: a.id, rejectedIndex: 1, chosen: "good answer", rejected: "bad answer", model: "A", rejectedModel: "A", promptMessages: prompt, tools: null, parallelToolCalls: null, chosenToolCalls: null, rejectedToolCalls: null },
      400,
    );
    const list = (f: Parameters<typeof store.feedback.list>[0]) => store.feedback.list(f).items.map((x) => x.id);
    const all = { limit: 10, order: "asc" as const };
    assert.deepEqual(list(all), [r1.id, r2.id, c1.id, p1.id]);
    assert.deepEqual(store.feedback.list(all).items[0], r1, "a record reads back as it was written");
    assert.deepEqual(list({ ...all, type: "rating" }), [r1.id, r2.id]);
    assert.deepEqual(list({ ...all, completionId: b.id }), [r2.id, c1.id]);
    assert.deepEqual(list({ ...all, completionId: a.id }), [r1.id, p1.id], "as the chosen/rejected completion too");
    assert.deepEqual(list({ ...all, model: "B" }), [r2.id, c1.id]);
    assert.deepEqual(list({ ...all, since: 200, until: 400 }), [r2.id, c1.id]);
    assert.deepEqual(list({ limit: 2, order: "desc", after: p1.id }), [c1.id, r2.id]);

    const sft = [...exportLines(store.feedback, "sft")].join("");
    assert.deepEqual(jsonlErrors("sft", sft), []);
    assert.deepEqual(
      sft.trim().split("\n").map((l) => JSON.parse(l)),
      [
        { messages: [...prompt, { role: "assistant", content: "good answer" }] },
        // "developer" is "system" in the fine-tuning format; the -1 rating is not an example
        { messages: [{ role: "system", content: "be brief" }, ...prompt, { role: "assistant", content: "a better story" }] },
      ],
    );
    const dpo = [...exportLines(store.feedback, "dpo")].join("");
    assert.deepEqual(jsonlErrors("dpo", dpo), []);
    assert.deepEqual(JSON.parse(dpo), {
      input: { messages: prompt },
      preferred_output: [{ role: "assistant", content: "good answer" }],
      non_preferred_output: [{ role: "assistant", content: "bad answer" }],
    });
    assert.equal([...exportLines(store.feedback, "sft", { model: "A" })].length, 1);
    assert.equal([...exportLines(store.feedback, "sft", { since: 301 })].length, 0);
  });

  test("export reads past its batch size", () => {
    const c = completion({ model: "many" });
    store.completions.insert(c);
    store.transaction(() => {
      for (let i = 0; i < 600; i++)
        store.feedback.insert({ owner: null, status: "approved", type: "correction", completionId: c.id, choiceIndex: 0, correction: `fix ${i}`, answer: "a story", model: "many", promptMessages: c.promptMessages! }, 500);
    });
    const lines = [...exportLines(store.feedback, "sft", { model: "many" })];
    assert.equal(lines.length, 600);
    assert.equal(JSON.parse(lines[599]!).messages.at(-1).content, "fix 599");
  });

  test("idempotency: replay on the same body, mismatch on another, nothing kept when the write throws", () => {
    let writes = 0;
    const write = () => ({ status: 200, body: { n: ++writes } });
    assert.deepEqual(store.idempotency.run("s", "k", { a: 1, b: [1, 2] }, write), { kind: "fresh", status: 200, body: { n: 1 } });
    // key order does not matter
    assert.deepEqual(store.idempotency.run("s", "k", { b: [1, 2], a: 1 }, write), { kind: "replay", status: 200, body: { n: 1 } });
    assert.deepEqual(store.idempotency.run("s", "k", { a: 2 }, write), { kind: "mismatch" });
    assert.deepEqual(store.idempotency.run("other scope", "k", { a: 2 }, write), { kind: "fresh", status: 200, body: { n: 2 } });
    assert.throws(() =>
      store.idempotency.run("s", "k2", {}, () => {
        throw new Error("write failed");
      }),
    );
    assert.equal(store.idempotency.run("s", "k2", { x: 1 }, write).kind, "fresh", "a failed write does not claim the key");
    assert.equal(writes, 3);
  });
});

describe("training line validator", () => {
  test("accepts OpenAI's formats and names what is wrong otherwise", () => {
    assert.equal(trainingLineError("sft", { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }] }), null);
    assert.match(trainingLineError("sft", { messages: [{ role: "user", content: "q" }] })!, /assistant/);
    assert.match(trainingLineError("sft", { messages: [{ role: "developer", content: "q" }] })!, /messages\[0\]\.role/);
    assert.match(trainingLineError("sft", { messages: [{ role: "user", content: 1 }] })!, /content/);
    assert.match(trainingLineError("sft", { messages: [], extra: 1 })!, /extra/);
    const dpo = { input: { messages: [{ role: "user", content: "q" }] }, preferred_output: [{ role: "assistant", content: "a" }], non_preferred_output: [{ role: "assistant", content: "b" }] };
    assert.equal(trainingLineError("dpo", dpo), null);
    assert.match(trainingLineError("dpo", { ...dpo, preferred_output: [] })!, /preferred_output/);
    assert.match(trainingLineError("dpo", { ...dpo, non_preferred_output: [{ role: "user", content: "b" }] })!, /non_preferred_output\[0\]\.role/);
    assert.deepEqual(
      jsonlErrors("sft", '{"messages":[{"role":"assistant","content":"a"}]}\n\nnot json\n[]\n'),
      [
        { line: 3, message: jsonlErrors("sft", "not json")[0]!.message },
        { line: 4, message: "a line must be a JSON object" },
      ],
    );
  });
});
