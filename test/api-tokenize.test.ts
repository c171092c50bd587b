// POST /tokenize and /detokenize as vLLM offers them, on stories260K: the same tokens a
// completion is charged for, and back.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { serveModel, type TestServing } from "./api-helpers.js";

const MODEL = "stories260K";
let s: TestServing;
before(async () => {
  s = await serveModel();
});
after(async () => s.close());

const post = async (url: string, payload: unknown) => {
  const r = await s.app.inject({ method: "POST", url, payload: payload as Record<string, unknown> });
  return { status: r.statusCode, body: JSON.parse(r.body) as Record<string, unknown> };
};

test("tokenize a prompt: the tokenizer's ids (BOS included by default), their texts, and back", async () => {
  const text = "Once upon a time, a cat sat.";
  const r = await post("/tokenize", { model: MODEL, prompt: text, return_token_strs: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const ids = s.model.tokenizer.encode(text, true);
  assert.deepEqual(r.body.tokens, ids);
  assert.equal(r.body.count, ids.length);
  assert.equal(r.body.max_model_len, 512);
  assert.deepEqual(r.body.token_strs, ids.map((t) => s.model.tokenizer.tokenText(t)));
  const bare = await post("/tokenize", { model: MODEL, prompt: text, add_special_tokens: false });
  assert.deepEqual(bare.body.tokens, ids.slice(1));
  const back = await post("/detokenize", { model: MODEL, tokens: bare.body.tokens });
  assert.equal(back.status, 200);
  assert.equal(back.body.prompt, text);
  // special tokens are kept, as vLLM decodes
  assert.equal((await post("/detokenize", { model: MODEL, tokens: ids })).body.prompt, s.model.tokenizer.decode(ids, false));
});

test("tokenize messages: exactly what a chat completion is charged for", async () => {
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Once upon a time" },
  ];
  const r = await post("/tokenize", { model: MODEL, messages });
  const chat = await post("/v1/chat/completions", { model: MODEL, messages, max_tokens: 1 });
  assert.equal(r.body.count, (chat.body.usage as { prompt_tokens: number }).prompt_tokens);
  // tools are rendered as a completion would render them: more tokens
  const tools = [{ type: "function", function: { name: "f", parameters: { type: "object", properties: {} } } }];
  const withTools = await post("/tokenize", { model: MODEL, messages, tools });
  const chatTools = await post("/v1/chat/completions", { model: MODEL, messages, tools, max_tokens: 1 });
  assert.equal(withTools.body.count, (chatTools.body.usage as { prompt_tokens: number }).prompt_tokens);
  assert.ok((withTools.body.count as number) > (r.body.count as number));
});

test("bad requests: an id beyond the vocabulary, an unknown model, an unknown field", async () => {
  const bad = await post("/detokenize", { model: MODEL, tokens: [1, 99999] });
  assert.equal(bad.status, 400);
  assert.equal((bad.body.error as { param: string }).param, "tokens[1]");
  assert.equal((await post("/tokenize", { model: "gpt-4o", prompt: "x" })).status, 404);
  const unknown = await post("/detokenize", { model: MODEL, tokens: [1], skip_special_tokens: true });
  assert.equal(unknown.status, 400);
  assert.equal((unknown.body.error as { code: string }).code, "unsupported_parameter");
});
