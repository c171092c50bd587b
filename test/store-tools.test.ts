// The live loop sees tools too: a tool-call completion is stored with its calls, rated, and
// exported as OpenAI's function-calling fine-tuning line (tools + assistant tool_calls),
// which the SFT loader takes and encodes as serving renders it; a preference between a tool
// call and a text answer is exported as OpenAI's preference line with tools, which the
// preference loader takes and a DPO run trains on.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { jsonlErrors } from "../engine/train/data/training-format.js";
import { parseSftJsonl } from "../engine/train/data/sft-data.js";
import { encodeExample } from "../engine/train/data/sft-encode.js";
import { encodePairs, parsePreferenceJsonl } from "../engine/train/data/pref-data.js";
import { runDpoFromFiles } from "../engine/train/preference/dpo-run.js";
import { getJson, MODEL, postJson, serveWithStore, type StoreServing } from "./store-helpers.js";
import { storiesDir } from "./test-model.js";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

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

test("preferences between tool calls (and a call over text): OpenAI's preference lines with tools, loaded, encoded and trained by DPO", async () => {
  const messages = [{ role: "user" as const, content: "Pick an animal." }];
  const call = await s.client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: "required", parallel_tool_calls: false, seed: 5 });
  const text = await s.client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: "none", parallel_tool_calls: false, seed: 6, max_tokens: 12 });
  const calls = call.choices[0]!.message.tool_calls!;
  const answer = text.choices[0]!.message.content!;
  assert.equal(calls.length, 1);
  assert.ok(answer.length > 0);
  const rated = await postJson<{ type: string }>(s.baseUrl, "/v1/feedback", { chosen_id: call.id, rejected_id: text.id });
  assert.equal(rated.status, 200, JSON.stringify(rated.json));
  // answers offered other tools answer another prompt
  const other = await s.client.chat.completions.create({ model: MODEL, messages, tools: [{ type: "function", function: { name: "other" } }], tool_choice: "none", max_tokens: 2 });
  const refused = await postJson<{ error: { code: string } }>(s.baseUrl, "/v1/feedback", { chosen_id: call.id, rejected_id: other.id });
  assert.equal(refused.status, 400);
  assert.equal(refused.json.error.code, "different_prompts");

  // two tool-call answers: two choices of one completion whose calls differ
  let pairOf: { id: string; calls: [unknown, unknown] } | null = null;
  for (let seed = 10; seed < 30 && !pairOf; seed++) {
    const two = await s.client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: "required", parallel_tool_calls: false, n: 2, temperature: 1, seed });
    const [a, b] = two.choices.map((c) => c.message.tool_calls!);
    if (a![0]!.type === "function" && b![0]!.type === "function" && a![0]!.function.arguments !== b![0]!.function.arguments) pairOf = { id: two.id, calls: [a, b] };
  }
  assert.ok(pairOf, "two different calls among 20 seeds");
  const both = await postJson<{ type: string }>(s.baseUrl, "/v1/feedback", { completion_id: pairOf.id, chosen_index: 1, rejected_index: 0 });
  assert.equal(both.status, 200, JSON.stringify(both.json));

  const dpo = await (await fetch(`${s.baseUrl}/v1/feedback/export?format=dpo`)).text();
  assert.deepEqual(jsonlErrors("dpo", dpo), []);
  const lines = dpo.trim().split("\n");
  assert.equal(lines.length, 2);
  assert.deepEqual(JSON.parse(lines[0]!), {
    input: { messages, tools, parallel_tool_calls: false },
    preferred_output: [{ role: "assistant", tool_calls: calls }],
    non_preferred_output: [{ role: "assistant", content: answer }],
  });
  assert.deepEqual(JSON.parse(lines[1]!), {
    input: { messages, tools, parallel_tool_calls: false },
    preferred_output: [{ role: "assistant", tool_calls: pairOf.calls[1] }],
    non_preferred_output: [{ role: "assistant", tool_calls: pairOf.calls[0] }],
  });

  // the loader renders the tools and learns the call as the assistant turn serving renders
  const pairs = parsePreferenceJsonl(dpo);
  const { encoded, errors } = encodePairs({ tokenizer: s.model.tokenizer, chatTemplate: s.model.chatTemplate, maxLength: 4096 }, pairs);
  assert.deepEqual(errors, []);
  assert.equal(encoded.length, 2);
  const learned = (ex: { tokens: Int32Array; mask: Uint8Array }) => s.model.tokenizer.decode([...ex.tokens].filter((_, i) => ex.mask[i] === 1), true);
  const fn = calls[0]!.type === "function" ? calls[0]!.function : null;
  assert.ok(learned(encoded[0]!.chosen).includes(`<tool_call>\n{"name":"pick","arguments":${JSON.stringify(JSON.parse(fn!.arguments))}}\n</tool_call>`), learned(encoded[0]!.chosen));
  assert.ok(learned(encoded[0]!.rejected).includes(answer.trim()));
  const whole = s.model.tokenizer.decode([...encoded[0]!.chosen.tokens], true);
  assert.ok(whole.includes('"name":"pick"') && whole.includes("<tools>"), whole);

  // a DPO step on it
  const dataFile = join(s.dir, "pref.jsonl");
  await writeFile(dataFile, dpo);
  const r = await runDpoFromFiles({
    modelDir: storiesDir,
    dataFile,
    outDir: join(s.dir, "dpo"),
    loraRank: 4,
    targets: ["q", "v"],
    epochs: 1,
    batchSize: 1,
    seed: 0,
    resume: false,
    threads: 2,
  });
  assert.equal(r.steps, 2);
  assert.ok(Number.isFinite(r.lastEpoch!.train_loss), JSON.stringify(r.lastEpoch));
});
