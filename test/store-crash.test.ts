// Crash safety: `hybridchat serve` in a child process answers chat completions (plain,
// streamed, n=2) and feedback, and is killed with SIGKILL the moment the last response
// arrived. Reopening its database finds every completion and every piece of feedback.
// A restart then serves them again, and SIGTERM closes the database cleanly.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { DB_FILE } from "../server/store/db.js";
import type { FeedbackBody } from "../server/http/schemas/store-responses.js";
import { Store } from "../server/store/store.js";
import { testModelDir, waitFor } from "./api-helpers.js";
import { serve, stop } from "./serve-process.js";
import { MODEL, postJson } from "./store-helpers.js";

let dataDir = "";
after(async () => {
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const prompt = [{ role: "user" as const, content: "Once upon a time" }];

describe("crash safety", () => {
  test("SIGKILL right after the responses loses no completion and no feedback", async () => {
    dataDir = await mkdtemp(join(tmpdir(), "hybridchat-crash-"));
    const s = await serve(["--model", testModelDir, "--data-dir", dataDir]);
    // the ready line (it follows /health's 200 by a moment) says where
    await waitFor(() => s.stderr().includes(`storing completions and feedback in ${join(dataDir, DB_FILE)}`), "the ready line");
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const plain = async (i: number) => (await client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 8, seed: i, n: 1 + (i % 2) })).id;
    const streamed = async (i: number) => {
      const stream = await client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 8, seed: i, stream: true });
      let id = "";
      for await (const chunk of stream) id = chunk.id;
      return id;
    };
    const completionIds: string[] = [];
    const feedbackIds: string[] = [];
    let killed = false;
    try {
      completionIds.push(...(await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? streamed(i) : plain(i))))));
      const fb = await Promise.all(
        completionIds.map((id, i) =>
          postJson<FeedbackBody>(s.url, "/v1/feedback", i % 3 === 0 ? { completion_id: id, correction: `better ${i}` } : { completion_id: id, rating: i % 2 ? 1 : -1 }),
        ),
      );
      for (const r of fb) assert.equal(r.status, 200);
      feedbackIds.push(...fb.map((r) => r.json.id));
      // the last word: a streamed completion and a preference; kill as soon as they answered
      const [lastStream, pref] = await Promise.all([
        streamed(100),
        postJson<FeedbackBody>(s.url, "/v1/feedback", { chosen_id: completionIds[0], rejected_id: completionIds[2] }),
      ]);
      s.child.kill("SIGKILL");
      killed = true;
      completionIds.push(lastStream);
      assert.equal(pref.status, 200);
      feedbackIds.push(pref.json.id);
    } finally {
      if (!killed) s.child.kill("SIGKILL");
      if (s.child.exitCode === null && s.child.signalCode === null) await once(s.child, "exit");
    }
    assert.equal(s.child.signalCode, "SIGKILL");

    const store = Store.open(dataDir);
    try {
      for (const id of completionIds) {
        const c = store.completions.get(id);
        assert.ok(c, `completion ${id} is in the database`);
        assert.equal(c.response.id, id);
      }
      const stored = new Set(store.feedback.list({ limit: 100, order: "asc" }).items.map((f) => f.id));
      for (const id of feedbackIds) assert.ok(stored.has(id), `feedback ${id} is in the database`);
      assert.equal(stored.size, feedbackIds.length);
    } finally {
      store.close();
    }
  });

  test("after a restart the same completions are served; SIGTERM closes the database", async () => {
    assert.ok(dataDir, "runs after the crash test");
    const before = Store.open(dataDir);
    const ids = before.completions.list({ object: "chat.completion", limit: 100, order: "asc" }).items.map((c) => c.response);
    before.close();
    assert.ok(ids.length > 0);
    const s = await serve(["--model", testModelDir, "--data-dir", dataDir]);
    try {
      const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused", maxRetries: 0 });
      for (const c of ids) assert.deepEqual(await client.chat.completions.retrieve(c.id), c);
    } finally {
      assert.equal(await stop(s, "SIGTERM"), 0, s.stderr());
    }
    // closed by the server: its WAL was folded back into the database file
    const wal = join(dataDir, `${DB_FILE}-wal`);
    assert.ok(!existsSync(wal) || statSync(wal).size === 0, "no WAL left behind");
  });
});
