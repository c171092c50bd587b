// The live loop sees tools too: a tool-call completion is stored with its calls, rated, and
// exported as OpenAI's function-calling fine-tuning line (tools + assistant tool_calls),
// which the SFT loader takes and encodes as serving renders it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { jsonlErrors } from "../engine/train/data/training-format.js";
import { parseSftJsonl } from "../engine/train/data/sft-data.js";
import { encodeExample } from "../engine/train/data/sft-encode.js";
import { getJson, MODEL, postJson, serveWithStore, type StoreServing } from "./store-helpers.js";

let s: StoreServing;
before(async () => {
  s = await serveWithStore();
});
after(async () => s.close());

const tools = [
  {
    type: "function" as const,
    function: { name: "pick", parameters: { type: "object", properties: { animal: { enum: ["cat", "dog"] } }, required: ["animal"], additionalProperties: false } },
  },
];

test("a rated tool call is stored with its calls and exported with tools and tool_calls; the loader takes the line", async () => {
  const history = [
    { role: "user" as const, content: "Pick an animal." },
    { role: "assistant" as const, content: null, tool_calls: [{ id: "call_0", type: "function" as const, function: { name: "pick", arguments: '{"animal": "cat"}' } }] },
    { role: "tool" as const, tool_call_id: "call_0", content: "The cat is asleep." },
    { role: "user" as const, content: "Pick again." },
  ];
  const r = await s.client.chat.completions.create({ model: MODEL, messages: history, tools, tool_choice: "required", parallel_tool_calls: false, seed: 3 });
  const call = r.choices[0]!.message.tool_calls![0]!;
  assert.equal(r.choices[0]!.finish_reason, "tool_calls");

  // stored as the client got it, the history's calls and tool turn included
  const stored = await getJson<{ choices: { message: { tool_calls: unknown[] } }[] }>(s.baseUrl, `/v1/chat/completions/${r.id}`);
  assert.equal(stored.status, 200);
  assert.deepEqual(stored.json.choices[0]!.message.tool_calls, [call]);
  const messages = await getJson<{ data: { role: string; tool_calls?: unknown; tool_call_id?: string }[] }>(s.baseUrl, `/v1/chat/completions/${r.id}/messages`);
  assert.equal(messages.json.data.find((m) => m.role === "tool")?.tool_call_id, "call_0");

  const rated = await postJson<{ type: string }>(s.baseUrl, "/v1/feedback", { completion_id: r.id, rating: 1 });
  assert.equal(rated.status, 200, JSON.stringify(rated.json));
  const sft = await (await fetch(`${s.baseUrl}/v1/feedback/export?format=sft`)).text();
  assert.deepEqual(jsonlErrors("sft", sft), []);
  const line = JSON.parse(sft.trim()) as { tools: unknown; messages: { role: string; content: string | null; tool_calls?: unknown; tool_call_id?: string }[] };
  assert.deepEqual(line.tools, tools);
  assert.deepEqual(line.messages.at(-1), { role: "assistant", content: null, tool_calls: [call] });
  assert.deepEqual(line.messages[1]!.tool_calls, [{ id: "call_0", type: "function", function: { name: "pick", arguments: '{"animal":"cat"}' } }]);
  assert.equal(line.messages[2]!.tool_call_id, "call_0");

  // what training reads: the call is learned, rendered as serving prompted it
  const [ex] = parseSftJsonl(sft);
  const encoded = encodeExample({ tokenizer: s.model.tokenizer, chatTemplate: s.model.chatTemplate, maxLength: 4096 }, ex!)!.example;
  let learned = "";
  const ids = [...encoded.tokens].filter((_, i) => encoded.mask[i] === 1);
  learned = s.model.tokenizer.decode(ids, true);
  assert.ok(learned.includes(`<tool_call>\n{"name":"pick","arguments":${call.type === "function" ? JSON.stringify(JSON.parse(call.function.arguments)) : ""}}\n</tool_call>`), learned);
});
