// Structured outputs and tool calls through real clients against a server on 127.0.0.1: the
// official openai SDK (chat.completions.parse, runTools, the streaming helper) and LangChain
// (bindTools, withStructuredOutput), on a random tiny model whose chat template renders tools
// (Qwen2.5-style: tools listed in the system turn, calls as <tool_call> blocks).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { Ajv } from "ajv";
import { ChatOpenAI } from "@langchain/openai";
import { initCheckpoint } from "../engine/init-checkpoint.js";
import { preset } from "../engine/presets.js";
import { serveModel, type TestServing } from "./api-helpers.js";

/** a cut-down Qwen2.5 template: what matters is that it reads `tools` and the history's calls */
export const TOOLS_TEMPLATE =
  "{%- if tools %}<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n<tools>" +
  "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n</tools>\n" +
  "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags.<|im_end|>\n{%- endif %}" +
  "{%- for message in messages %}" +
  '{%- if message.role == "assistant" and message.tool_calls %}<|im_start|>assistant\n{{ message.content }}' +
  '{%- for tc in message.tool_calls %}\n<tool_call>\n{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}\n</tool_call>{%- endfor %}<|im_end|>\n' +
  '{%- elif message.role == "tool" %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n' +
  "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}" +
  "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}";

const ajv = new Ajv({ strict: false });
// closed schemas (no free strings or digits): whatever the random weights, every answer ends,
// so every call below must come back whole (free-form values are covered by structured-output.test)
const weatherParams = {
  type: "object",
  properties: {
    city: { type: "string", enum: ["Oslo", "Rome", "Lima"], description: "the city" },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
    days: { anyOf: [{ enum: [1, 2, 3] }, { type: "null" }] },
  },
  required: ["city", "unit", "days"],
  additionalProperties: false,
};
const validWeather = ajv.compile(weatherParams);
const tools: OpenAI.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "The weather forecast", parameters: weatherParams, strict: true } },
  { type: "function", function: { name: "noop", parameters: { type: "object", properties: {} } } },
];
const personSchema = {
  type: "object",
  properties: { name: { enum: ["Ann", "Bo"] }, age: { enum: [7, 30, 65] }, pets: { type: "array", items: { enum: ["cat", "dog"] } } },
  required: ["name", "age", "pets"],
  additionalProperties: false,
};

let s: TestServing;
let dir: string;
let client: OpenAI;
let baseURL: string;
let model: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "hc-tools-"));
  // room for the tools' JSON in the prompt (the generated tokenizer spends many tokens on it)
  await initCheckpoint({ config: { ...preset("tiny"), max_position_embeddings: 2048 }, out: dir, seed: 5, std: 0.5 });
  const cfgFile = join(dir, "tokenizer_config.json");
  const cfg = JSON.parse(await readFile(cfgFile, "utf8")) as Record<string, unknown>;
  await writeFile(cfgFile, JSON.stringify({ ...cfg, chat_template: TOOLS_TEMPLATE }));
  s = await serveModel({ dir });
  model = s.model.id;
  baseURL = `${await s.app.listen({ host: "127.0.0.1", port: 0 })}/v1`;
  client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
});
after(async () => {
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

const question: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Oslo?" }];
/** bounds each answer: random weights may write digits until the context ends */
const max_tokens = 300;

describe("openai SDK", () => {
  test("chat.completions.parse with a JSON schema: message.parsed validates", async () => {
    const validate = ajv.compile(personSchema);
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.parse({
        model,
        messages: question,
        seed,
        max_tokens,
        response_format: { type: "json_schema", json_schema: { name: "person", schema: personSchema, strict: true } },
      });
      assert.equal(r.choices[0]!.finish_reason, "stop");
      assert.ok(validate(r.choices[0]!.message.parsed), JSON.stringify(r.choices[0]!.message));
    }
  });

  test("a named tool_choice forces a call whose arguments validate; the history with its result renders", async () => {
    const r = await client.chat.completions.create({ model, messages: question, tools, tool_choice: { type: "function", function: { name: "get_weather" } }, seed: 4, max_tokens });
    const c = r.choices[0]!;
    assert.equal(c.finish_reason, "tool_calls");
    const call = c.message.tool_calls![0]!;
    assert.equal(call.type, "function");
    assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
    assert.equal(call.type === "function" && call.function.name, "get_weather");
    assert.ok(call.type === "function" && validWeather(JSON.parse(call.function.arguments)), JSON.stringify(call));
    const next = await client.chat.completions.create({
      model,
      messages: [...question, c.message, { role: "tool", tool_call_id: call.id, content: "-3 degrees" }],
      tools,
      max_tokens: 4,
    });
    assert.equal(next.object, "chat.completion");
  });

  /** a call's arguments are valid for its tool */
  const validCall = (c: OpenAI.ChatCompletionMessageToolCall): boolean =>
    c.type === "function" && (c.function.name === "get_weather" ? validWeather(JSON.parse(c.function.arguments)) : JSON.stringify(JSON.parse(c.function.arguments)) === "{}");

  test("required: with parallel_tool_calls one or more valid calls, without it exactly one; streamed as OpenAI streams them", async () => {
    const counts: Record<string, number[]> = { parallel: [], single: [] };
    for (const parallel of [true, false])
      for (const seed of [7, 8, 9, 10, 11, 12]) {
        const params = { model, messages: question, tools, tool_choice: "required" as const, parallel_tool_calls: parallel, seed, temperature: 0.7, max_tokens };
        const whole = await client.chat.completions.create(params);
        const stream = client.chat.completions.stream(params);
        const fragments = new Map<number, string[]>();
        stream.on("tool_calls.function.arguments.delta", (e) => fragments.set(e.index, [...(fragments.get(e.index) ?? []), e.arguments_delta]));
        const streamed = await stream.finalChatCompletion();
        // the same request, the same seed: the same calls (ids are per completion)
        const [a, b] = [whole.choices[0]!, streamed.choices[0]!];
        const plain = (c: OpenAI.ChatCompletionMessageToolCall) => (c.type === "function" ? { name: c.function.name, arguments: c.function.arguments } : null);
        const calls = a.message.tool_calls!;
        assert.equal(a.message.content, null);
        assert.equal(b.finish_reason, a.finish_reason);
        if (a.finish_reason === "length") {
          // cut inside a further call: the stream had begun it (a stream cannot take a call back)
          assert.deepEqual(b.message.tool_calls!.slice(0, calls.length).map(plain), calls.map(plain));
          continue;
        }
        assert.equal(a.finish_reason, "tool_calls", JSON.stringify(a));
        assert.deepEqual(b.message.tool_calls!.map(plain), calls.map(plain));
        assert.ok(calls.every(validCall), JSON.stringify(calls));
        assert.equal(new Set(calls.map((c) => c.id)).size, calls.length, "distinct ids");
        counts[parallel ? "parallel" : "single"]!.push(calls.length);
        calls.forEach((c, k) => {
          const parts = fragments.get(k) ?? [];
          assert.equal(parts.join(""), c.type === "function" ? c.function.arguments : null);
          // the arguments as the tokens came: several fragments for more than a token's worth
          if (c.type === "function" && c.function.arguments.length > 2) assert.ok(parts.length > 1, JSON.stringify(parts));
        });
      }
    assert.deepEqual(counts.single, counts.single.map(() => 1));
    assert.ok(counts.parallel.every((n) => n >= 1));
    // the grammar lets answers go on to more calls (random weights take that path for some seeds)
    assert.ok(counts.parallel.some((n) => n > 1), JSON.stringify(counts));
  });

  test("auto: the model chooses; whatever it writes comes back (text or valid calls), streamed and not, never an error", async () => {
    for (const parallel of [true, false])
      for (const seed of [41, 42, 43, 44]) {
        const params = { model, messages: question, tools, tool_choice: "auto" as const, parallel_tool_calls: parallel, seed, temperature: 1.5, max_tokens: 40 };
        const whole = (await client.chat.completions.create(params)).choices[0]!;
        // the raw chunks (the SDK's helper refuses answers cut at max_tokens when tools are strict)
        let content = "";
        const names: string[] = [];
        let finish: string | null = null;
        for await (const chunk of await client.chat.completions.create({ ...params, stream: true })) {
          const ch = chunk.choices[0];
          if (!ch) continue;
          content += ch.delta.content ?? "";
          for (const t of ch.delta.tool_calls ?? []) if (t.function?.name) names[t.index] = t.function.name;
          finish = ch.finish_reason ?? finish;
        }
        const calls = whole.message.tool_calls ?? [];
        if (calls.length === 0) {
          assert.equal(typeof whole.message.content, "string");
          assert.ok(whole.finish_reason === "stop" || whole.finish_reason === "length", whole.finish_reason);
        } else assert.ok(calls.every((x) => x.type === "function" && tools.some((t) => t.type === "function" && t.function.name === x.function.name)));
        if (!parallel) assert.ok(calls.length <= 1 && names.length <= 1);
        assert.equal(content, whole.message.content ?? "");
        assert.equal(finish, whole.finish_reason);
      }
  });

  test("a named function with parallel_tool_calls: every call is to that function", async () => {
    for (const seed of [13, 14, 15, 16]) {
      const r = await client.chat.completions.create({ model, messages: question, tools, tool_choice: { type: "function", function: { name: "get_weather" } }, seed, temperature: 0.9, max_tokens });
      const calls = r.choices[0]!.message.tool_calls!;
      assert.ok(calls.length >= 1);
      assert.ok(r.choices[0]!.finish_reason === "tool_calls" || r.choices[0]!.finish_reason === "length");
      assert.ok(calls.every((c) => c.type === "function" && c.function.name === "get_weather" && validCall(c)), JSON.stringify(calls));
    }
  });

  test("runTools, streamed and not, runs the forced function with valid arguments and sends its result back", async () => {
    for (const stream of [false, true]) {
      const seen: unknown[] = [];
      const body = {
        parallel_tool_calls: false,
        model,
        messages: question,
        seed: 11,
        max_tokens,
        tool_choice: { type: "function" as const, function: { name: "get_weather" } },
        tools: [
          {
            type: "function" as const,
            function: {
              name: "get_weather",
              description: "The weather forecast",
              parameters: weatherParams,
              parse: (args: string) => JSON.parse(args) as unknown,
              function: (args: unknown) => {
                seen.push(args);
                return "-3 degrees";
              },
            },
          },
        ],
      };
      const runner = stream ? client.chat.completions.runTools({ ...body, stream: true }) : client.chat.completions.runTools({ ...body, stream: false });
      await runner.done();
      assert.equal(seen.length, 1);
      assert.ok(validWeather(seen[0]), JSON.stringify(seen[0]));
      const toolTurn = runner.messages.find((m) => m.role === "tool");
      assert.equal(toolTurn && "content" in toolTurn ? toolTurn.content : null, "-3 degrees");
    }
  });
});

describe("LangChain", () => {
  const chat = (seed: number) =>
    new ChatOpenAI({ model, apiKey: "unused", configuration: { baseURL }, maxRetries: 0, temperature: 0.7, maxTokens: max_tokens, modelKwargs: { seed } });

  test("bindTools with a forced tool: AIMessage.tool_calls with validated args", async () => {
    for (const seed of [21, 22, 23]) {
      const bound = chat(seed).bindTools([tools[0]!], { tool_choice: "get_weather" });
      const msg = await bound.invoke("What is the weather in Oslo?");
      // parallel_tool_calls is OpenAI's default: one or more calls, all to the forced tool
      assert.ok((msg.tool_calls?.length ?? 0) >= 1, JSON.stringify(msg));
      for (const call of msg.tool_calls!) {
        assert.equal(call.name, "get_weather");
        assert.ok(validWeather(call.args), JSON.stringify(msg.tool_calls));
      }
    }
  });

  test("withStructuredOutput (JSON schema): the object validates", async () => {
    const validate = ajv.compile(personSchema);
    for (const seed of [31, 32, 33]) {
      const structured = chat(seed).withStructuredOutput({ title: "person", ...personSchema }, { method: "jsonSchema", strict: true });
      const out = await structured.invoke("Describe a person.");
      assert.ok(validate(out), JSON.stringify(out));
    }
  });
});
