// Health while loading, a client that goes away (streamed or not) cancels its generation
// and frees its KV cache, a full queue answers 429, and the embeddable server starts and stops.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request, type ClientRequest } from "node:http";
import { connect } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { Engine } from "../engine/engine.js";
import { loadModel } from "../engine/model.js";
import { attachModel, buildApp } from "../server/http/app.js";
import { createServer } from "../server/server.js";
import { README, serveModel, sseData, testModelDir, waitFor, type TestServing } from "./api-helpers.js";

describe("/health", () => {
  test("503 loading until the model is attached, then 200; completions wait for it too", async () => {
    const app = buildApp();
    try {
      const h = await app.inject({ method: "GET", url: "/health" });
      assert.equal(h.statusCode, 503);
      assert.deepEqual(h.json(), { status: "loading" });
      const chat = await app.inject({ method: "POST", url: "/v1/chat/completions", payload: { model: "stories260K", messages: [{ role: "user", content: "x" }] } });
      assert.equal(chat.statusCode, 503);
      assert.equal(chat.json().error.code, "model_loading");
      assert.equal((await app.inject({ method: "GET", url: "/v1/models" })).statusCode, 503);

      const model = await loadModel(testModelDir, { threads: 2 });
      const engine = new Engine(model, { maxBatch: 4, maxQueue: 8, maxBatchTokens: 256 });
      attachModel(app, engine, model, "renamed");
      const ok = await app.inject({ method: "GET", url: "/health" });
      assert.equal(ok.statusCode, 200);
      assert.deepEqual(ok.json(), { status: "ok", model: "renamed", device: "cpu", deviceName: "cpu", devices: 0, kvDtype: "f32" });
      // --served-model-name replaces the directory's name everywhere
      assert.equal((await app.inject({ method: "GET", url: "/v1/models" })).json().data[0].id, "renamed");
      const r = await app.inject({ method: "POST", url: "/v1/completions", payload: { model: "renamed", prompt: "", temperature: 0, max_tokens: 29 } });
      assert.equal(r.json().choices[0].text, README.fromBos);
      assert.equal((await app.inject({ method: "POST", url: "/v1/completions", payload: { model: "stories260K", prompt: "" } })).statusCode, 404);
      await app.close();
      await engine.close();
      model.dispose();
    } finally {
      await app.close();
    }
  });

  test("a model that fails to load: 503 with the reason", async () => {
    const server = createServer({ model: join(tmpdir(), "hybridchat-no-such-model-dir"), logger: false });
    await assert.rejects(server.ready);
    const h = await server.app.inject({ method: "GET", url: "/health" });
    assert.equal(h.statusCode, 503);
    assert.equal(h.json().status, "error");
    assert.match(h.json().message, /config\.json|no such|missing/i);
    await server.close(0);
  });
});

describe("cancellation and the queue (a tiny model with a long context, so generations run long)", () => {
  let dir: string;
  let s: TestServing;
  let base: string;
  const MODEL = "long-ctx";
  // long enough that no generation here ends on its own before the test acts on it
  const LONG = 8000;

  before(async () => {
    dir = join(await mkdtemp(join(tmpdir(), "hybridchat-api-")), MODEL);
    await initCheckpoint({ config: { ...preset("tiny"), max_position_embeddings: 8192 }, out: dir, seed: 3 });
    s = await serveModel({ dir, engine: { maxBatch: 1, maxQueue: 1, maxBatchTokens: 256 } });
    base = await s.app.listen({ host: "127.0.0.1", port: 0 });
  });
  after(async () => {
    await s.close();
    await rm(join(dir, ".."), { recursive: true, force: true });
  });

  const idle = () => {
    const st = s.engine.stats();
    return st.running === 0 && st.waiting === 0 && s.model.native.kvStats().sequences === 0;
  };

  /** Sends a long generation; resolves on the response head; the body is left unread. */
  function longRequest(stream: boolean, onData?: (chunk: string) => void): { req: ClientRequest; status: Promise<number> } {
    const body = JSON.stringify({ model: MODEL, prompt: "a", max_tokens: LONG, ignore_eos: true, temperature: 0, stream });
    let req!: ClientRequest;
    const status = new Promise<number>((res, rej) => {
      req = request(`${base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" } }, (r) => {
        r.setEncoding("utf8");
        r.on("data", (c: string) => onData?.(c));
        r.on("error", () => undefined);
        res(r.statusCode ?? 0);
      });
      req.on("error", (e) => (req.destroyed ? undefined : rej(e)));
      req.end(body);
    });
    return { req, status };
  }

  test("a client that disconnects mid-stream cancels its request and frees its KV cache", async () => {
    const before = s.engine.stats().counters;
    let received = "";
    const { req, status } = longRequest(true, (c) => (received += c));
    assert.equal(await status, 200);
    await waitFor(() => received.includes('"text"'), "the first streamed tokens");
    assert.equal(s.engine.stats().running, 1);
    assert.ok(s.model.native.kvStats().sequences >= 1);
    req.destroy();
    await waitFor(idle, "the engine to drop the request");
    const after = s.engine.stats().counters;
    assert.equal(after.cancelled, before.cancelled + 1);
    assert.equal(after.completed, before.completed);
    assert.equal(s.engine.stats().kvUsage, 0);
  });

  test("a client that disconnects from a non-streamed request cancels it too", async () => {
    const before = s.engine.stats().counters;
    const { req } = longRequest(false);
    await waitFor(() => s.engine.stats().running === 1 && s.model.native.kvStats().sequences === 1, "generation to start");
    req.destroy();
    await waitFor(idle, "the engine to drop the request");
    assert.equal(s.engine.stats().counters.cancelled, before.cancelled + 1);
    assert.equal(s.engine.stats().counters.completed, before.completed);
  });

  test("429 when the queue is full; running and waiting requests are unaffected and freed on disconnect", async () => {
    // max-batch 1, max-queue 1: one runs, one waits, the third is refused
    const a = longRequest(true);
    await waitFor(() => s.engine.stats().running === 1, "A to run");
    const b = longRequest(true);
    await waitFor(() => s.engine.stats().waiting === 1, "B to wait");
    const c = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 4 }),
    });
    assert.equal(c.status, 429);
    assert.equal(c.headers.get("retry-after"), "1");
    const body = (await c.json()) as { error: { type: string; code: string; param: null } };
    assert.equal(body.error.code, "queue_full");
    assert.equal(body.error.type, "rate_limit_error");
    assert.equal(s.engine.stats().running, 1);
    assert.equal(s.engine.stats().waiting, 1);
    a.req.destroy();
    b.req.destroy();
    await waitFor(idle, "both requests to be dropped");
    assert.equal(s.engine.stats().kvUsage, 0);
  });
  test("HTTP the parser rejects still gets an OpenAI-shaped 400", async () => {
    const { port } = new URL(base);
    const reply = await new Promise<string>((res, rej) => {
      const sock = connect(Number(port), "127.0.0.1", () => sock.write("NOT HTTP AT ALL\r\n\r\n"));
      let got = "";
      sock.setEncoding("utf8").on("data", (c: string) => (got += c));
      sock.on("close", () => res(got));
      sock.on("error", rej);
    });
    assert.match(reply, /^HTTP\/1\.1 400 /);
    const body = JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4)) as { error: { type: string; code: string } };
    assert.equal(body.error.type, "invalid_request_error");
    assert.equal(body.error.code, "bad_http_request");
  });

  test("shutdown: running streams end with an engine_closed error event once the grace period is over", async () => {
    const server = createServer({ model: dir, threads: 2, logger: false });
    const url = await server.listen({ port: 0 });
    await server.ready;
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "a", max_tokens: LONG, ignore_eos: true, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.ok(!first.done);
    const closed = server.close(0);
    let text = new TextDecoder().decode(first.value);
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      text += new TextDecoder().decode(r.value);
    }
    await closed;
    const events = sseData(text);
    const last = events.at(-1) as { error?: { code: string } };
    assert.equal(last.error?.code, "engine_closed");
    assert.ok(!events.includes("[DONE]"));
  });
});

describe("createServer", () => {
  test("listens before the model is loaded, serves it, closes cleanly", async () => {
    const server = createServer({ model: testModelDir, threads: 2, logger: false });
    const url = await server.listen({ port: 0 });
    await server.ready;
    const r = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "stories260K", prompt: "", temperature: 0, max_tokens: 29 }),
    });
    assert.equal(((await r.json()) as { choices: { text: string }[] }).choices[0]!.text, README.fromBos);
    assert.equal((await fetch(`${url}/health`)).status, 200);
    await server.close();
    await assert.rejects(fetch(`${url}/health`));
  });
});
