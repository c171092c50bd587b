// response_format on the real stories260K model and on a random one: json_object and
// json_schema outputs parse and validate (ajv) whatever the weights; a keyword outside the
// subset is a 400 naming the parameter and the keyword; streaming follows the same grammar.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { Grammars, type GrammarSpec } from "../engine/grammar/grammars.js";
import { xgrammar } from "../engine/grammar/xgrammar.js";
import { serveModel, sseData, type TestServing } from "./api-helpers.js";

const ajv = new Ajv({ strict: false });
const msgs = [{ role: "user", content: "Once upon a time" }];

/** schemas of the OpenAI subset */
const SCHEMAS: { name: string; schema: Record<string, unknown> }[] = [
  {
    name: "flat",
    schema: {
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" }, happy: { type: "boolean" }, color: { enum: ["red", "blue"] } },
      required: ["name", "age", "happy", "color"],
      additionalProperties: false,
    },
  },
  {
    name: "refs-anyOf-arrays",
    schema: {
      type: "object",
      $defs: { point: { type: "object", properties: { x: { type: "integer" }, y: { type: ["number", "null"] } }, required: ["x", "y"], additionalProperties: false } },
      properties: {
        points: { type: "array", items: { $ref: "#/$defs/point" } },
        kind: { anyOf: [{ type: "boolean" }, { enum: ["a", "b", 3] }, { type: "null" }] },
        fixed: { const: "yes" },
      },
      required: ["points", "kind", "fixed"],
      additionalProperties: false,
    },
  },
  {
    name: "nested-enums",
    schema: {
      type: "object",
      properties: {
        mood: { enum: ["happy", "sad"] },
        inner: { type: "object", properties: { n: { type: "integer" }, ok: { type: "boolean" } }, required: ["n", "ok"], additionalProperties: false },
      },
      required: ["mood", "inner"],
      additionalProperties: false,
    },
  },
];

interface Choice {
  finish_reason: string;
  message: { content: string };
}

async function structured(s: TestServing, model: string, responseFormat: unknown, over: Record<string, unknown>): Promise<Choice[]> {
  const r = await s.app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    payload: { model, messages: msgs, response_format: responseFormat, ...over },
  });
  assert.equal(r.statusCode, 200, r.body);
  return (JSON.parse(r.body) as { choices: Choice[] }).choices;
}

const jsonSchema = (schema: unknown) => ({ type: "json_schema", json_schema: { name: "out", schema, strict: true } });

/**
 * Every choice that ended by itself parses and validates; one cut off by max_tokens or the
 * context ("length") is a prefix the grammar accepts (checked by a fresh xgrammar matcher).
 * Returns how many ended by themselves.
 */
async function checkAll(s: TestServing, spec: GrammarSpec, choices: Choice[], validate: (v: unknown) => boolean, what: string): Promise<number> {
  let ended = 0;
  const grammars = new Grammars(s.model.tokenizer, s.model.config.vocabSize);
  for (const c of choices) {
    if (c.finish_reason === "length") {
      const matcher = await xgrammar().GrammarMatcher.createGrammarMatcher(await grammars.compiled(spec));
      assert.ok(matcher._acceptString(c.message.content), `${what}: the grammar refuses ${c.message.content}`);
      matcher.dispose();
      continue;
    }
    assert.equal(c.finish_reason, "stop");
    ended++;
    const value = JSON.parse(c.message.content) as unknown;
    assert.ok(validate(value), `${what}: ${c.message.content} does not validate: ${ajv.errorsText((validate as { errors?: null }).errors)}`);
  }
  return ended;
}

describe("response_format on stories260K", () => {
  let s: TestServing;
  before(async () => {
    s = await serveModel();
  });
  after(async () => s.close());

  for (const { name, schema } of SCHEMAS) {
    test(`json_schema ${name}: every choice, greedy and sampled, validates`, async () => {
      const validate = ajv.compile(schema);
      let ended = 0;
      let total = 0;
      for (const over of [{ temperature: 0 }, { temperature: 1, seed: 3, n: 6 }, { temperature: 1.5, top_p: 0.95, seed: 9, n: 6 }]) {
        const choices = await structured(s, "stories260K", jsonSchema(schema), over);
        ended += await checkAll(s, { kind: "json_schema", schema }, choices, validate, name);
        total += choices.length;
      }
      // most end by themselves; a tiny model may also loop inside a string or a number
      assert.ok(ended * 2 > total, `${ended} of ${total} ended`);
    });
  }

  test("json_object: an object, whatever the prompt", async () => {
    const choices = await structured(s, "stories260K", { type: "json_object" }, { temperature: 1, seed: 5, n: 6 });
    const isObject = (v: unknown) => v !== null && typeof v === "object" && !Array.isArray(v);
    // a story model rarely closes a free-form object: what it wrote so far must still be one
    await checkAll(s, { kind: "json_object" }, choices, isObject, "json_object");
    for (const c of choices) assert.ok(c.message.content.startsWith("{"), c.message.content);
    // and without response_format the same request is plain story text
    const free = await structured(s, "stories260K", { type: "text" }, { temperature: 0, max_tokens: 12 });
    assert.ok(!free[0].message.content.trimStart().startsWith("{"), free[0].message.content);
  });

  test("streamed: the deltas add up to valid JSON", async () => {
    const schema = SCHEMAS[0].schema;
    const r = await s.app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      payload: { model: "stories260K", messages: msgs, temperature: 1, seed: 2, n: 2, stream: true, response_format: jsonSchema(schema) },
    });
    assert.equal(r.statusCode, 200, r.body);
    const text = ["", ""];
    const finish: string[] = [];
    for (const d of sseData(r.body)) {
      if (d === "[DONE]") continue;
      for (const c of (d as { choices: { index: number; delta: { content?: string }; finish_reason: string | null }[] }).choices) {
        text[c.index] += c.delta.content ?? "";
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
    }
    assert.deepEqual(finish, ["stop", "stop"]);
    const validate = ajv.compile(schema);
    for (const t of text) assert.ok(validate(JSON.parse(t)), t);
  });

  test("a keyword outside the subset, or an unknown type, is a 400 naming the parameter and the keyword", async () => {
    for (const [schema, keyword] of [
      [{ type: "object", properties: { s: { type: "string", maxLength: 3 } } }, "maxLength"],
      [{ type: "object", patternProperties: { "^a": { type: "string" } } }, "patternProperties"],
      [{ type: "string", format: "email" }, "format"],
      [{ type: "date" }, "date"],
      [{ oneOf: [{ type: "string" }] }, "oneOf"],
      [{ $ref: "https://example.com/schema.json" }, "https://example.com/schema.json"],
    ] as const) {
      const r = await s.app.inject({
        method: "POST",
        url: "/v1/chat/completions",
        payload: { model: "stories260K", messages: msgs, response_format: jsonSchema(schema) },
      });
      assert.equal(r.statusCode, 400, r.body);
      const e = (JSON.parse(r.body) as { error: { param: string; message: string; type: string } }).error;
      assert.equal(e.param, "response_format.json_schema.schema");
      assert.equal(e.type, "invalid_request_error");
      assert.ok(e.message.includes(keyword), e.message);
    }
  });
});

describe("response_format on a random model", () => {
  let s: TestServing;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "hc-structured-"));
    // larger weights than HF's init: sharp, arbitrary distributions rather than uniform ones
    await initCheckpoint({ config: preset("tiny"), out: dir, seed: 11, std: 0.5 });
    s = await serveModel({ dir });
  });
  after(async () => {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const { name, schema } of SCHEMAS) {
    test(`json_schema ${name}: whatever the weights, what ends validates`, async () => {
      const validate = ajv.compile(schema);
      const model = s.model.id;
      let ended = 0;
      let total = 0;
      for (const over of [{ temperature: 0 }, { temperature: 1, seed: 1, n: 8 }]) {
        const choices = await structured(s, model, jsonSchema(schema), over);
        ended += await checkAll(s, { kind: "json_schema", schema }, choices, validate, name);
        total += choices.length;
      }
      // random text inside a string (or digits of a number) may run to the context's end
      // (finish_reason "length", a valid prefix), as with any server; most end by themselves
      assert.ok(ended * 2 > total, `${ended} of ${total} ended`);
    });
  }
});
