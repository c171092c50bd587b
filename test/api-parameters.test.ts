// Every field the chat and text completion schemas declare is handled, accepted-and-ignored
// (docs/serving.md says why) or refused by name with code unsupported_parameter; none is left
// undecided, and a field in no schema is refused too.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ChatCompletionRequestSchema } from "../server/http/schemas/chat.js";
import { CompletionRequestSchema } from "../server/http/schemas/completions.js";
import { CHAT_PARAMETERS, COMPLETION_PARAMETERS, type Disposition } from "../server/http/schemas/parameters.js";
import { repoRoot, serveModel, type TestServing } from "./api-helpers.js";

const MODEL = "stories260K";
const tools = [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] } } }];

/** a value for each handled field (and what it needs beside it) that the server must take */
const HANDLED: Record<string, { value: unknown; with?: Record<string, unknown> }> = {
  model: { value: MODEL },
  max_tokens: { value: 3 },
  max_completion_tokens: { value: 3 },
  temperature: { value: 0.5 },
  top_p: { value: 0.9 },
  n: { value: 2 },
  stop: { value: ["."] },
  seed: { value: 7 },
  presence_penalty: { value: 0.5 },
  frequency_penalty: { value: 0.5 },
  logit_bias: { value: { "5": -100 } },
  stream: { value: true },
  stream_options: { value: { include_usage: true }, with: { stream: true } },
  top_k: { value: 5 },
  min_p: { value: 0.1 },
  ignore_eos: { value: true },
  store: { value: false },
  metadata: { value: { k: "v" } },
  messages: { value: [{ role: "user", content: "Once upon a time" }] },
  logprobs: { value: true },
  top_logprobs: { value: 2, with: { logprobs: true } },
  response_format: { value: { type: "json_object" } },
  tools: { value: tools },
  tool_choice: { value: "required", with: { tools } },
  parallel_tool_calls: { value: false, with: { tools } },
  prompt: { value: "Once upon a time" },
  echo: { value: true },
};
/** values of refused fields that ask for something (null is always accepted as absent) */
const REFUSED_VALUES: Record<string, unknown> = { modalities: ["text", "audio"], best_of: 3, suffix: "the end" };

let s: TestServing;
const servingDoc = readFileSync(join(repoRoot, "docs", "serving.md"), "utf8");
const requestFields = servingDoc.slice(servingDoc.indexOf("## Request fields"), servingDoc.indexOf("## Limits that keep one client"));

before(async () => {
  s = await serveModel();
});
after(async () => s.close());

const endpoints: [string, string, Record<string, unknown>, Record<string, Disposition>, Record<string, unknown>][] = [
  ["/v1/chat/completions", "chat", ChatCompletionRequestSchema.properties, CHAT_PARAMETERS, { model: MODEL, messages: HANDLED.messages!.value, max_tokens: 3 }],
  ["/v1/completions", "completions", CompletionRequestSchema.properties, COMPLETION_PARAMETERS, { model: MODEL, prompt: "Once", max_tokens: 3 }],
];
/** the legacy endpoint's own meaning of a field */
const COMPLETION_SAMPLES: Record<string, { value: unknown; with?: Record<string, unknown> }> = { logprobs: { value: 2 } };

for (const [url, name, properties, table, base] of endpoints) {
  describe(`${name}: every request field is decided`, () => {
    test("the table names exactly the schema's fields", () => {
      assert.deepEqual(Object.keys(table).sort(), Object.keys(properties).sort());
    });

    for (const [field, d] of Object.entries(table)) {
      test(`${field}: ${d.kind}`, async () => {
        const post = (payload: Record<string, unknown>) => s.app.inject({ method: "POST", url, payload });
        if (d.kind === "refused") {
          const r = await post({ ...base, [field]: REFUSED_VALUES[field] ?? "x" });
          assert.equal(r.statusCode, 400, r.body);
          const e = (JSON.parse(r.body) as { error: { param: string; code: string; type: string } }).error;
          assert.deepEqual([e.param, e.code, e.type], [field, "unsupported_parameter", "invalid_request_error"]);
          // null counts as absent
          assert.equal((await post({ ...base, [field]: null })).statusCode, 200);
          return;
        }
        if (d.kind === "ignored") {
          assert.ok(requestFields.includes(`\`${field}\``), `docs/serving.md "Request fields" does not say why '${field}' is ignored`);
          const r = await post({ ...base, [field]: "anything" });
          assert.equal(r.statusCode, 200, r.body);
          return;
        }
        const sample = (name === "completions" ? COMPLETION_SAMPLES[field] : undefined) ?? HANDLED[field];
        assert.ok(sample, `no sample value for the handled field '${field}'`);
        const r = await post({ ...base, ...sample.with, [field]: sample.value });
        assert.equal(r.statusCode, 200, r.body);
      });
    }

    test("a field in no schema is refused by name", async () => {
      const r = await s.app.inject({ method: "POST", url, payload: { ...base, guided_choice: ["a", "b"] } });
      assert.equal(r.statusCode, 400, r.body);
      const e = (JSON.parse(r.body) as { error: { param: string; code: string } }).error;
      assert.deepEqual([e.param, e.code], ["guided_choice", "unsupported_parameter"]);
    });
  });
}

test("n = 128 is served (choices beyond the batch wait in the queue)", async () => {
  const q = await serveModel({ engine: { maxQueue: 256 } });
  try {
    const r = await q.app.inject({ method: "POST", url: "/v1/completions", payload: { model: MODEL, prompt: "Once", n: 128, max_tokens: 2, seed: 1 } });
    assert.equal(r.statusCode, 200, r.body);
    const body = JSON.parse(r.body) as { choices: { index: number }[] };
    assert.deepEqual(body.choices.map((c) => c.index), [...Array(128).keys()]);
  } finally {
    await q.close();
  }
});

test("every request body schema refuses fields it does not declare", async () => {
  const { FeedbackRequestSchema } = await import("../server/http/schemas/feedback.js");
  const { CreateJobSchema } = await import("../server/http/schemas/fine-tuning.js");
  const { TokenizeRequestSchema, DetokenizeRequestSchema } = await import("../server/http/schemas/tokenize.js");
  const bodies: Record<string, { additionalProperties?: unknown; anyOf?: { additionalProperties?: unknown }[] }> = {
    ChatCompletionRequestSchema,
    CompletionRequestSchema,
    FeedbackRequestSchema,
    CreateJobSchema,
    TokenizeRequestSchema,
    DetokenizeRequestSchema,
  };
  for (const [name, schema] of Object.entries(bodies)) {
    const objects = schema.anyOf ?? [schema];
    for (const o of objects) assert.equal(o.additionalProperties, false, `${name} accepts undeclared fields`);
  }
});
