// API keys over real HTTP with the official client: 401 without or with a wrong key, 403 for
// a user key on an admin route, user keys chat and give feedback, admin keys reach jobs,
// files, promote and /metrics; the job WebSocket checks the header and the browser's
// subprotocol; without keys the server listens on loopback only.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import WebSocket from "ws";
import { HybridchatClient } from "../clients/client.js";
import { JobStreamError } from "../clients/job-stream.js";
import { parseApiKeys, WS_KEY_PROTOCOL_PREFIX, WS_PROTOCOL } from "../server/http/auth.js";
import { createServer, type HybridchatServer } from "../server/server.js";
import { apiFailure, testModelDir } from "./api-helpers.js";
import { CLI, serve, stop } from "./serve-process.js";

const ADMIN = "admin-key-0123456789";
const USER = "user-key-0123456789";
const MODEL = "stories260K";
const story = [{ role: "user" as const, content: "Once upon a time" }];

const dir = mkdtempSync(join(tmpdir(), "hc-auth-"));
let server: HybridchatServer;
let url: string;
const client = (apiKey?: string): HybridchatClient => new HybridchatClient({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });

before(async () => {
  server = createServer({ model: testModelDir, dataDir: join(dir, "data"), threads: 2, apiKeys: parseApiKeys(`${ADMIN}:admin,${USER}:user`) });
  url = await server.listen({ port: 0 });
  await server.ready;
});
after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("API keys", () => {
  test("no key and a wrong key: 401 in OpenAI's shape, on user and admin routes alike", async () => {
    const none = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: story, max_tokens: 4 }),
    });
    assert.equal(none.status, 401);
    assert.deepEqual(((await none.json()) as { error: { type: string; code: string } }).error.code, "missing_api_key");
    const wrong = await apiFailure(client("not-a-key-at-all").fineTuning.jobs.list());
    assert.ok(wrong instanceof OpenAI.AuthenticationError);
    assert.equal(wrong.code, "invalid_api_key");
    assert.doesNotMatch(wrong.message, /not-a-key-at-all/, "the message does not echo the whole key");

    const raw = await fetch(`${url}/v1/models`, { headers: { authorization: "Basic Zm9vOmJhcg==" } });
    assert.equal(raw.status, 401);
    assert.match(raw.headers.get("www-authenticate") ?? "", /^Bearer/);
    const body = (await raw.json()) as { error: Record<string, unknown> };
    assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  });

  test("a user key chats, lists models, rates and lists feedback, reads stored completions", async () => {
    const hc = client(USER);
    const r = await hc.chat.completions.create({ model: MODEL, messages: story, max_tokens: 8, temperature: 0 });
    assert.ok(r.choices[0]!.message.content!.length > 0);
    assert.ok((await hc.models.list()).data.some((m) => m.id === MODEL));
    const fb = await hc.feedback.rate(r.id, 1);
    assert.equal(fb.type, "rating");
    assert.equal((await hc.feedback.list({ completionId: r.id })).data.length, 1);
    assert.equal((await hc.chat.completions.retrieve(r.id)).id, r.id);
    const text = await hc.completions.create({ model: MODEL, prompt: "Once", max_tokens: 4 });
    assert.equal(text.object, "text_completion");
  });

  test("HybridchatClient takes its key from HYBRIDCHAT_API_KEY when none is given", async () => {
    process.env.HYBRIDCHAT_API_KEY = USER;
    let hc: HybridchatClient;
    try {
      hc = new HybridchatClient({ baseURL: `${url}/v1`, maxRetries: 0 });
    } finally {
      delete process.env.HYBRIDCHAT_API_KEY;
    }
    assert.deepEqual((await hc.models.list()).data.map((m) => m.id), [MODEL]);
    assert.equal((await apiFailure(new HybridchatClient({ baseURL: `${url}/v1`, maxRetries: 0 }).models.list())).status, 401, "and without it, none");
  });

  test("a user key on admin routes: 403 insufficient_permissions", async () => {
    const hc = client(USER);
    for (const p of [hc.fineTuning.jobs.list(), hc.files.list(), hc.versions.promote(MODEL)]) {
      const e = await apiFailure(p);
      assert.ok(e instanceof OpenAI.PermissionDeniedError, String(e));
      assert.equal(e.code, "insufficient_permissions");
    }
    const metrics = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${USER}` } });
    assert.equal(metrics.status, 403);
  });

  test("an admin key reaches jobs, files, promote and /metrics; /health and the page need no key", async () => {
    const hc = client(ADMIN);
    assert.equal((await hc.fineTuning.jobs.list()).data.length, 0);
    assert.ok(Array.isArray((await hc.files.list()).data));
    assert.equal((await hc.versions.promote(MODEL)).serves, MODEL);
    assert.equal((await hc.chat.completions.create({ model: MODEL, messages: story, max_tokens: 2 })).object, "chat.completion");
    const metrics = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(metrics.status, 200);
    assert.equal((await fetch(`${url}/health`)).status, 200);
    assert.equal((await fetch(`${url}/`)).status, 200);
    assert.equal((await fetch(`${url}/web/app.js`)).status, 200);
    // an unknown URL with a valid user key is a 404, not a 403
    assert.equal((await fetch(`${url}/v1/nothing-here`, { headers: { authorization: `Bearer ${USER}` } })).status, 404);
  });

  test("the job WebSocket: refused without a key (401) or with a user key (403); admin by header or subprotocol", async () => {
    const streamError = async (hc: HybridchatClient): Promise<JobStreamError> => {
      try {
        for await (const _m of hc.jobs.stream("ftjob-nope")) assert.fail("no message expected");
      } catch (e) {
        assert.ok(e instanceof JobStreamError, String(e));
        return e;
      }
      return assert.fail("the stream ended without an error");
    };
    assert.equal((await streamError(client("wrong-key-0000"))).status, 401);
    assert.equal((await streamError(client(USER))).status, 403);
    // past auth: the server upgrades, then says the job does not exist
    assert.equal((await streamError(client(ADMIN))).status, 404);

    const ws = new WebSocket(`${url.replace("http", "ws")}/v1/fine_tuning/jobs/ftjob-nope/events/stream`, [WS_PROTOCOL, WS_KEY_PROTOCOL_PREFIX + ADMIN]);
    const opened = new Promise<string>((res, rej) => {
      ws.on("open", () => res(ws.protocol));
      ws.on("error", rej);
    });
    assert.equal(await opened, WS_PROTOCOL, "the key protocol is never echoed back");
    const [code] = (await new Promise((res) => ws.on("close", (c) => res([c])))) as [number];
    assert.equal(code, 4404);
  });
});

describe("the bind rule", () => {
  test("without keys only loopback: listen() refuses 0.0.0.0; with keys it may bind anywhere", async () => {
    const open = createServer({ model: testModelDir, store: false, threads: 1 });
    await assert.rejects(open.listen({ host: "0.0.0.0", port: 0 }), /without API keys/);
    await open.close(0);
    assert.match(url, /^http:\/\/127\.0\.0\.1:/);
    const keyed = createServer({ model: testModelDir, store: false, threads: 1, apiKeys: parseApiKeys(`${ADMIN}:admin`) });
    const anywhere = await keyed.listen({ host: "0.0.0.0", port: 0 });
    assert.match(anywhere, /^http:\/\//);
    await keyed.close(0);
  });

  test("`serve --host 0.0.0.0` without keys exits saying what to do; without keys it says it is loopback only", async () => {
    const r = spawnSync(process.execPath, [CLI, "serve", "--host", "0.0.0.0", "--no-store"], { encoding: "utf8", env: { ...process.env, HYBRIDCHAT_API_KEYS: "" } });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /refusing to listen on 0\.0\.0\.0 without API keys.*--api-key KEY:admin/s);
    const bad = spawnSync(process.execPath, [CLI, "serve", "--api-key", "no-role-here", "--no-store"], { encoding: "utf8" });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /expected KEY:user or KEY:admin/);

    const s = await serve(["--model", testModelDir, "--no-store"]);
    try {
      assert.match(s.stderr(), /no API keys: every route is open, so listening on loopback only/);
    } finally {
      await stop(s, "SIGTERM");
    }
  });
});
