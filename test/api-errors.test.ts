// Every bad request gets its OpenAI-shaped error, status and `param`; nothing crashes
// the app (all through app.inject against the real stories260K model).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { serveModel, waitFor, type TestServing } from "./api-helpers.js";

let s: TestServing;
const MODEL = "stories260K";
const msgs = [{ role: "user", content: "Once upon a time" }];

before(async () => {
  s = await serveModel({ app: { maxBodyBytes: 64 * 1024 } });
});
after(async () => {
  await s.close();
});

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function post(url: string, payload: unknown, headers: Record<string, string> = {}) {
  const body = typeof payload === "string" ? payload : JSON.stringify(payload);
  return s.app.inject({ method: "POST", url, payload: body, headers: { "content-type": "application/json", ...headers } });
}

function assertError(res: { statusCode: number; body: string; headers: Record<string, unknown> }, status: number, param: string | null, code?: string): ErrorBody["error"] {
  assert.equal(res.statusCode, status, res.body);
  assert.match(String(res.headers["content-type"]), /application\/json/);
  const body = JSON.parse(res.body) as ErrorBody;
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 10, body.error.message);
  assert.equal(body.error.param, param, body.error.message);
  if (code !== undefined) assert.equal(body.error.code, code);
  return body.error;
}

describe("400 invalid_request_error names the offending param", () => {
  const chat = (over: Record<string, unknown>) => ({ model: MODEL, messages: msgs, max_tokens: 4, ...over });
  const cases: [string, Record<string, unknown>, string, string?][] = [
    ["unknown role", chat({ messages: [{ role: "robot", content: "x" }] }), "messages[0].role"],
    ["missing role", chat({ messages: [{ content: "x" }] }), "messages[0].role", "missing_required_parameter"],
    ["second message bad", chat({ messages: [msgs[0], { role: "user", content: 7 }] }), "messages[1].content", "invalid_type"],
    ["image part", chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), "messages[0].content[0].type"],
    ["messages a string", chat({ messages: "hello" }), "messages", "invalid_type"],
    ["messages empty", chat({ messages: [] }), "messages"],
    ["messages missing", { model: MODEL }, "messages", "missing_required_parameter"],
    ["model missing", { messages: msgs }, "model", "missing_required_parameter"],
    ["model a number", chat({ model: 5 }), "model", "invalid_type"],
    ["temperature too high", chat({ temperature: 2.5 }), "temperature", "invalid_value"],
    ["temperature negative", chat({ temperature: -0.1 }), "temperature"],
    ["temperature a string", chat({ temperature: "0.5" }), "temperature", "invalid_type"],
    ["temperature an array", chat({ temperature: [1] }), "temperature", "invalid_type"],
    ["top_p over 1", chat({ top_p: 1.5 }), "top_p"],
    ["n zero", chat({ n: 0 }), "n"],
    ["n too many", chat({ n: 1000 }), "n"],
    ["n fractional", chat({ n: 1.5 }), "n", "invalid_type"],
    ["stop five strings", chat({ stop: ["a", "b", "c", "d", "e"] }), "stop"],
    ["stop a number", chat({ stop: 5 }), "stop", "invalid_type"],
    ["stop list of numbers", chat({ stop: [5] }), "stop[0]", "invalid_type"],
    ["presence_penalty", chat({ presence_penalty: 3 }), "presence_penalty"],
    ["frequency_penalty", chat({ frequency_penalty: -2.5 }), "frequency_penalty"],
    ["max_tokens zero", chat({ max_tokens: 0 }), "max_tokens"],
    ["max_tokens fractional", chat({ max_tokens: 2.5 }), "max_tokens", "invalid_type"],
    ["max_tokens huge", chat({ max_tokens: 1e20 }), "max_tokens"],
    ["max_completion_tokens", chat({ max_completion_tokens: -1 }), "max_completion_tokens"],
    ["seed fractional", chat({ seed: 0.5 }), "seed", "invalid_type"],
    ["logprobs not boolean", chat({ logprobs: 3 }), "logprobs", "invalid_type"],
    ["top_logprobs over 20", chat({ logprobs: true, top_logprobs: 21 }), "top_logprobs"],
    ["top_logprobs without logprobs", chat({ top_logprobs: 2 }), "top_logprobs"],
    ["logit_bias value", chat({ logit_bias: { "5": 200 } }), "logit_bias.5"],
    ["logit_bias key not a token", chat({ logit_bias: { abc: 1 } }), "logit_bias"],
    ["logit_bias id beyond vocab", chat({ logit_bias: { "99999": 1 } }), "logit_bias"],
    ["stream not boolean", chat({ stream: "yes" }), "stream", "invalid_type"],
    ["include_usage not boolean", chat({ stream: true, stream_options: { include_usage: 1 } }), "stream_options.include_usage", "invalid_type"],
    ["top_k below -1", chat({ top_k: -2 }), "top_k"],
    ["min_p over 1", chat({ min_p: 2 }), "min_p"],
    ["user a number", chat({ user: 1 }), "user", "invalid_type"],
    ["n over 128", chat({ n: 129 }), "n"],
    ["an unknown field", chat({ best_effort: true }), "best_effort", "unsupported_parameter"],
    ["an unknown message field", chat({ messages: [{ role: "user", content: "x", audio: {} }] }), "messages[0].audio", "unsupported_parameter"],
    ["functions (deprecated)", chat({ functions: [{ name: "f" }] }), "functions", "unsupported_parameter"],
    ["audio modality", chat({ modalities: ["text", "audio"] }), "modalities", "unsupported_parameter"],
    ["reasoning_effort", chat({ reasoning_effort: "high" }), "reasoning_effort", "unsupported_parameter"],
    ["stream_options without stream", chat({ stream_options: { include_usage: true } }), "stream_options"],
    ["stream_options with stream false", chat({ stream: false, stream_options: {} }), "stream_options"],
    ["logit_bias key in exponent form", chat({ logit_bias: { "1e2": 1 } }), "logit_bias"],
    ["logit_bias key in hex", chat({ logit_bias: { "0x10": 1 } }), "logit_bias"],
    ["logit_bias key empty", chat({ logit_bias: { "": 1 } }), "logit_bias"],
    ["logit_bias key with a space", chat({ logit_bias: { " 5": 1 } }), "logit_bias"],
    ["response_format of an unknown type", chat({ response_format: { type: "sound" } }), "response_format.type"],
    ["tool_choice a number", chat({ tool_choice: 12345 }), "tool_choice"],
  ];
  for (const [name, payload, param, code] of cases) {
    test(`chat: ${name} -> ${param}`, async () => {
      assertError(await post("/v1/chat/completions", payload), 400, param, code);
    });
  }

  const comp = (over: Record<string, unknown>) => ({ model: MODEL, prompt: "Once", max_tokens: 4, ...over });
  const compCases: [string, Record<string, unknown>, string, string?][] = [
    ["prompt missing", { model: MODEL }, "prompt", "missing_required_parameter"],
    ["prompt an object", comp({ prompt: { a: 1 } }), "prompt", "invalid_type"],
    ["prompt mixed list", comp({ prompt: [1, "a"] }), "prompt", "invalid_type"],
    ["prompt token beyond vocab", comp({ prompt: [1, 99999] }), "prompt"],
    ["second token prompt beyond vocab", comp({ prompt: [[1], [1, 600]] }), "prompt[1]"],
    ["prompt negative token", comp({ prompt: [1, -3] }), "prompt[1]"],
    ["logprobs over 5", comp({ logprobs: 6 }), "logprobs"],
    ["logprobs boolean", comp({ logprobs: true }), "logprobs", "invalid_type"],
    ["suffix", comp({ suffix: "the end" }), "suffix"],
    ["best_of above n", comp({ best_of: 3 }), "best_of", "unsupported_parameter"],
    ["an unknown field", comp({ guided_json: {} }), "guided_json", "unsupported_parameter"],
    ["stream_options without stream", comp({ stream_options: { include_usage: true } }), "stream_options"],
    ["n over 128", comp({ n: 129 }), "n"],
  ];
  for (const [name, payload, param, code] of compCases) {
    test(`completions: ${name} -> ${param}`, async () => {
      assertError(await post("/v1/completions", payload), 400, param, code);
    });
  }
});

describe("other statuses", () => {
  test("404 model_not_found for an unknown model", async () => {
    const e = assertError(await post("/v1/chat/completions", { model: "gpt-4o", messages: msgs }), 404, "model", "model_not_found");
    assert.match(e.message, /gpt-4o/);
    assertError(await post("/v1/completions", { model: "stories", prompt: "x" }), 404, "model", "model_not_found");
    assertError(await s.app.inject({ method: "GET", url: "/v1/models/gpt-4o" }), 404, "model", "model_not_found");
  });

  test("400 context_length_exceeded: prompt + max_tokens over the context", async () => {
    const e = assertError(
      await post("/v1/chat/completions", { model: MODEL, messages: msgs, max_tokens: 600 }),
      400,
      "messages",
      "context_length_exceeded",
    );
    assert.match(e.message, /maximum context length is 512 tokens/);
    assert.match(e.message, /605 tokens \(5 in the messages, 600 in the completion\)/);
    // a prompt that alone fills the context, with no max_tokens
    const long = Array.from({ length: 600 }, () => 300);
    assertError(await post("/v1/completions", { model: MODEL, prompt: long }), 400, "prompt", "context_length_exceeded");
    assertError(
      await post("/v1/completions", { model: MODEL, prompt: ["short", "once ".repeat(600)] }),
      400,
      "prompt[1]",
      "context_length_exceeded",
    );
  });

  test("413 for too large a body", async () => {
    const big = { model: MODEL, messages: [{ role: "user", content: "x".repeat(100 * 1024) }] };
    assertError(await post("/v1/chat/completions", big), 413, null, "request_too_large");
  });

  test("malformed bodies and content types get 400/415, never a crash", async () => {
    assertError(await post("/v1/chat/completions", "{not json"), 400, null, "invalid_json");
    assertError(await post("/v1/chat/completions", ""), 400, null, "invalid_json");
    assertError(await post("/v1/chat/completions", '{"model":"m","messages":[}'), 400, null, "invalid_json");
    assertError(await post("/v1/chat/completions", '{"__proto__":{"admin":true},"model":"stories260K"}'), 400, null);
    assertError(await post("/v1/chat/completions", "null"), 400, null, "invalid_type");
    assertError(await post("/v1/chat/completions", "[1,2,3]"), 400, null, "invalid_type");
    assertError(await post("/v1/chat/completions", '"a string"'), 400, null, "invalid_type");
    // numbers JSON cannot hold as finite doubles
    assertError(await post("/v1/chat/completions", `{"model":"${MODEL}","messages":[{"role":"user","content":"x"}],"max_tokens":1e400}`), 400, "max_tokens");
    assertError(await post("/v1/chat/completions", `{"model":"${MODEL}","messages":[{"role":"user","content":"x"}],"temperature":-1e999}`), 400, "temperature");
    assertError(await post("/v1/chat/completions", `{"model":"${MODEL}","messages":[{"role":"user","content":"x"}],"seed":123456789012345678901234567890}`), 400, "seed");
    assertError(await post("/v1/chat/completions", "model=x", { "content-type": "application/x-www-form-urlencoded" }), 415, null, "unsupported_media_type");
    assertError(await post("/v1/chat/completions", "hello", { "content-type": "text/plain" }), 400, null);
    // the app still answers normally afterwards
    const ok = await post("/v1/chat/completions", { model: MODEL, messages: msgs, max_tokens: 2 });
    assert.equal(ok.statusCode, 200, ok.body);
  });

  test("unknown routes: 404, known route with another method: 405, both OpenAI-shaped", async () => {
    assertError(await s.app.inject({ method: "GET", url: "/v1/nothing" }), 404, null, "unknown_url");
    assertError(await s.app.inject({ method: "POST", url: "/v2/chat/completions", payload: {} }), 404, null, "unknown_url");
    // (GET /v1/chat/completions lists stored completions)
    const r = await s.app.inject({ method: "GET", url: "/v1/completions" });
    assertError(r, 405, null, "method_not_allowed");
    assert.equal(r.headers.allow, "POST");
    assertError(await s.app.inject({ method: "DELETE", url: "/v1/models" }), 405, null, "method_not_allowed");
    assertError(await s.app.inject({ method: "GET", url: "/v1/models/%zz" }), 400, null, "invalid_url");
  });

  test("a full queue answers 429 and leaves nothing behind; a request that can never fit is a 400", async () => {
    // n choices are submitted together: more than the queue can ever hold is refused as a whole
    const q = await serveModel({ engine: { maxBatch: 1, maxQueue: 2 } });
    try {
      const never = await q.app.inject({
        method: "POST",
        url: "/v1/chat/completions",
        payload: { model: MODEL, messages: msgs, n: 3, max_tokens: 8 },
      });
      assertError(never, 400, "n", "invalid_value");
      const neverPrompts = await q.app.inject({
        method: "POST",
        url: "/v1/completions",
        payload: { model: MODEL, prompt: ["a", "b", "c"], max_tokens: 8, stream: true },
      });
      assertError(neverPrompts, 400, "n", "invalid_value");
      // the engine held by an exclusive task: two choices of one request fill the queue
      let release!: () => void;
      const held = q.engine.runExclusive(() => new Promise<void>((res) => (release = res)));
      const busy = [q.app.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt: "b", n: 2, max_tokens: 8 } })];
      await waitFor(() => q.engine.stats().waiting === 2, "the queue to fill");
      const r = await q.app.inject({ method: "POST", url: "/v1/chat/completions", payload: { model: MODEL, messages: msgs, max_tokens: 8 } });
      release();
      await held;
      const e = assertError(r, 429, null, "queue_full");
      assert.equal(e.type, "rate_limit_error");
      assert.equal(r.headers["retry-after"], "1");
      for (const b of await Promise.all(busy)) assert.equal(b.statusCode, 200, b.body);
      // nothing of the refused request stayed behind
      const st = q.engine.stats();
      assert.equal(st.running + st.waiting, 0);
      assert.equal(q.model.native.kvStats().sequences, 0);
      const ok = await q.app.inject({ method: "POST", url: "/v1/chat/completions", payload: { model: MODEL, messages: msgs, n: 2, max_tokens: 4 } });
      assert.equal(ok.statusCode, 200, ok.body);
    } finally {
      await q.close();
    }
  });
});

describe("a chat template that refuses a conversation", () => {
  test("400 naming messages, not a 500", async () => {
    const root = await mkdtemp(join(tmpdir(), "hybridchat-tpl-"));
    const dir = join(root, "strict");
    try {
      await initCheckpoint({ config: preset("tiny"), out: dir, seed: 1 });
      const cfgFile = join(dir, "tokenizer_config.json");
      const cfg = JSON.parse(await readFile(cfgFile, "utf8")) as Record<string, unknown>;
      cfg.chat_template =
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
        "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}";
      await writeFile(cfgFile, JSON.stringify(cfg));
      const t = await serveModel({ dir });
      try {
        const bad = await t.app.inject({
          method: "POST",
          url: "/v1/chat/completions",
          payload: { model: "strict", messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }], max_tokens: 2 },
        });
        assertError(bad, 400, "messages");
        const ok = await t.app.inject({ method: "POST", url: "/v1/chat/completions", payload: { model: "strict", messages: [{ role: "user", content: "hi" }], max_tokens: 2 } });
        assert.equal(ok.statusCode, 200, ok.body);
      } finally {
        await t.close();
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
