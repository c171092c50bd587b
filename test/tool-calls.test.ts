// Tool-call parsing per model family, from outputs as the models write them (the formats of
// the Qwen2.5/Hermes, Llama 3.1 and Mistral model cards): whole, and streamed in every split
// (the same pieces come out however the text arrives); malformed calls come back as text.
import { test } from "node:test";
import assert from "node:assert/strict";
import { forcedParser, parseToolCalls, toolCallFormat, type ParsedPiece, type ToolCallFormat } from "../server/serving/tools/tool-call-format.js";
import { chatPrompt } from "../server/serving/tools/tool-prompt.js";
import { JinjaChatTemplate } from "../engine/chat-template.js";

const known = new Set(["get_current_temperature", "get_current_wind_speed", "get_current_weather"]);
const QWEN_TEMPLATE = "{% if tools %}{% for t in tools %}{{ t | tojson }}{% endfor %}{% endif %}<tool_call>";
const HERMES = toolCallFormat(QWEN_TEMPLATE, true);
const LLAMA3 = toolCallFormat("{% if tools %}Environment: ipython{% endif %}<|python_tag|>", true);
const MISTRAL = toolCallFormat("{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]", true);

interface Case {
  format: ToolCallFormat;
  output: string;
  content: string | null;
  calls: { name: string; arguments: Record<string, unknown> }[];
}

const CASES: Record<string, Case> = {
  "qwen2.5: two calls": {
    format: HERMES,
    output:
      '<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": "San Francisco, CA, USA"}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "get_current_wind_speed", "arguments": {"location": "San Francisco, CA, USA"}}\n</tool_call>',
    content: null,
    calls: [
      { name: "get_current_temperature", arguments: { location: "San Francisco, CA, USA" } },
      { name: "get_current_wind_speed", arguments: { location: "San Francisco, CA, USA" } },
    ],
  },
  "qwen3: thinking, then a call left open at EOS": {
    format: HERMES,
    output: '<think>\nThe user wants the temperature.\n</think>\n\n<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": "Paris", "unit": "celsius"}}',
    content: "<think>\nThe user wants the temperature.\n</think>",
    calls: [{ name: "get_current_temperature", arguments: { location: "Paris", unit: "celsius" } }],
  },
  "hermes: plain answer": { format: HERMES, output: "It is 26 degrees in Paris.", content: "It is 26 degrees in Paris.", calls: [] },
  "hermes: malformed JSON is text": {
    format: HERMES,
    output: 'Sure <tool_call>\n{"name": "get_current_temperature", "arguments": {"location": </tool_call>',
    content: 'Sure <tool_call>\n{"name": "get_current_temperature", "arguments": {"location": </tool_call>',
    calls: [],
  },
  "hermes: an unknown function is text": {
    format: HERMES,
    output: '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>',
    content: '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>',
    calls: [],
  },
  "llama3.1: JSON call": {
    format: LLAMA3,
    output: '{"name": "get_current_weather", "parameters": {"location": "San Francisco, CA", "format": "fahrenheit"}}',
    content: null,
    calls: [{ name: "get_current_weather", arguments: { location: "San Francisco, CA", format: "fahrenheit" } }],
  },
  "llama3.1: two calls separated by ;": {
    format: LLAMA3,
    output: '{"name": "get_current_temperature", "parameters": {"location": "Rome"}}; {"name": "get_current_wind_speed", "parameters": {"location": "Rome"}}',
    content: null,
    calls: [
      { name: "get_current_temperature", arguments: { location: "Rome" } },
      { name: "get_current_wind_speed", arguments: { location: "Rome" } },
    ],
  },
  "llama3.1: text that starts with a brace is text": { format: LLAMA3, output: "{curly} braces are fun", content: "{curly} braces are fun", calls: [] },
  "llama3.1: plain answer": { format: LLAMA3, output: "The weather is sunny.", content: "The weather is sunny.", calls: [] },
  "mistral: [TOOL_CALLS] list": {
    format: MISTRAL,
    output: '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Paris, France", "format": "celsius"}}]',
    content: null,
    calls: [{ name: "get_current_weather", arguments: { location: "Paris, France", format: "celsius" } }],
  },
  "mistral: two calls in the list": {
    format: MISTRAL,
    output: '[TOOL_CALLS][{"name": "get_current_temperature", "arguments": {"location": "Rome"}}, {"name": "get_current_wind_speed", "arguments": {"location": "Rome"}}]',
    content: null,
    calls: [
      { name: "get_current_temperature", arguments: { location: "Rome" } },
      { name: "get_current_wind_speed", arguments: { location: "Rome" } },
    ],
  },
  "mistral: plain answer": { format: MISTRAL, output: "The current temperature in Paris is 22°C.", content: "The current temperature in Paris is 22°C.", calls: [] },
  "mistral: truncated list is text": {
    format: MISTRAL,
    output: '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"loc',
    content: '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"loc',
    calls: [],
  },
};

function streamed(format: ToolCallFormat, text: string, cuts: number[]): ParsedPiece[] {
  const p = format.parser(known);
  const out: ParsedPiece[] = [];
  let at = 0;
  for (const c of [...cuts, text.length]) {
    out.push(...p.push(text.slice(at, c)));
    at = c;
  }
  out.push(...p.end());
  return out;
}

/** adjacent content (and argument) pieces joined: how they were split does not matter */
function merged(pieces: ParsedPiece[]): ParsedPiece[] {
  const out: ParsedPiece[] = [];
  for (const p of pieces) {
    const last = out[out.length - 1];
    if ("content" in p && last && "content" in last) last.content += p.content;
    else if ("args" in p && last && "args" in last) last.args += p.args;
    else out.push("content" in p ? { content: p.content } : "args" in p ? { args: p.args } : p);
  }
  return out.filter((p) => !("content" in p) || p.content !== "");
}

/** each opened call's streamed arguments add up to the arguments of the call that resolves it */
function checkOpened(pieces: ParsedPiece[]): void {
  const pending: { name: string; args: string }[] = [];
  for (const p of pieces) {
    if ("open" in p) pending.push({ name: p.open, args: "" });
    else if ("args" in p) pending[pending.length - 1]!.args += p.args;
    else if ("call" in p && pending.length > 0) {
      const o = pending.shift()!;
      assert.equal(o.name, p.call.name);
      assert.ok(p.call.arguments.startsWith(o.args), `${o.args} | ${p.call.arguments}`);
    } else if ("content" in p) pending.length = 0;
  }
}

for (const [name, c] of Object.entries(CASES)) {
  test(`tool calls: ${name}`, () => {
    const whole = parseToolCalls(c.format.parser(known), c.output);
    assert.equal(whole.content, c.content);
    assert.deepEqual(
      whole.calls.map((x) => ({ name: x.name, arguments: JSON.parse(x.arguments) as unknown })),
      c.calls,
    );
    const reference = merged(streamed(c.format, c.output, []));
    // every single cut, and one character at a time
    for (let i = 1; i < c.output.length; i++) {
      const pieces = streamed(c.format, c.output, [i]);
      checkOpened(pieces);
      assert.deepEqual(merged(pieces), reference, `cut at ${i}`);
    }
    const byChar = streamed(c.format, c.output, [...c.output].map((_, i) => i + 1).slice(0, -1));
    checkOpened(byChar);
    assert.deepEqual(merged(byChar), reference);
    // a whole call's arguments are the model's text, sent while it is written: more than one
    // fragment when the text arrives a character at a time
    for (const call of whole.calls)
      if (call.arguments.length > 2) assert.ok(byChar.filter((p) => "args" in p).length > 1, JSON.stringify(byChar));
  });
}

test("tool calls: content before a call streams before the call is complete", () => {
  const p = HERMES.parser(known);
  assert.deepEqual(p.push("Let me check. <tool"), [{ content: "Let me check. " }]);
  // the name known: the call opens; its arguments follow as they come, the model's own text
  assert.deepEqual(p.push('_call>\n{"name": "get_current_temperature", '), [{ open: "get_current_temperature" }]);
  assert.deepEqual(p.push('"arguments": {"location": "Os'), [{ args: '{"location": "Os' }]);
  const done = p.push('lo"}}\n</tool_call>');
  assert.deepEqual(done, [{ args: 'lo"}' }, { call: { name: "get_current_temperature", arguments: '{"location": "Oslo"}' } }]);
  // arguments written before the name are held until the name is known
  const q = HERMES.parser(known);
  assert.deepEqual(q.push('<tool_call>\n{"arguments": {"location": "Oslo"}, '), []);
  assert.deepEqual(q.push('"name": "get_current_temperature"'), [{ open: "get_current_temperature" }, { args: '{"location": "Oslo"}' }]);
  // an unknown name opens nothing
  assert.deepEqual(HERMES.parser(known).push('<tool_call>\n{"name": "rm", "arguments": {"a": 1'), []);
});

test("forced calls: the family's parser after the opener the prompt ended with; a cut answer is the model's text", () => {
  const two = '{"name": "get_current_temperature", "arguments": {"location": "Rome"}}\n</tool_call>\n<tool_call>\n{"name": "get_current_wind_speed", "arguments": {}}\n</tool_call>';
  assert.deepEqual(parseToolCalls(forcedParser(HERMES, known), two).calls, [
    { name: "get_current_temperature", arguments: '{"location": "Rome"}' },
    { name: "get_current_wind_speed", arguments: "{}" },
  ]);
  const list = '{"name": "get_current_weather", "arguments": {"location": "Rome"}}, {"name": "get_current_weather", "arguments": {"location": "Oslo"}}]';
  assert.deepEqual(parseToolCalls(forcedParser(MISTRAL, known), list).calls.map((c) => c.arguments), ['{"location": "Rome"}', '{"location": "Oslo"}']);
  const cut = '{"name": "get_current_temperature", "arguments": {"loc';
  assert.deepEqual(parseToolCalls(forcedParser(HERMES, known), cut), { content: cut, calls: [] });
  // the grammar: one call's JSON, then the family's separator and another, then its end
  const p = chatPrompt({ messages: [{ role: "user", content: "?" }], tools: [{ type: "function", function: { name: "get_current_weather" } }], tool_choice: "required" }, new JinjaChatTemplate(QWEN_TEMPLATE, { bos_token: "", eos_token: "", unk_token: "", pad_token: "" }));
  assert.deepEqual({ ...p.plan?.forced, schema: undefined }, { kind: "json_sequence", schema: undefined, separator: "\n</tool_call>\n<tool_call>\n", end: "\n</tool_call>", multiple: true });
});

test("tool prompt: the template gets tools and the history's calls with parsed arguments; without tools support, the generic rendering", () => {
  const specials = { bos_token: "<s>", eos_token: "</s>", unk_token: "", pad_token: "" };
  const rendering = new JinjaChatTemplate(
    "{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% for m in messages %}|{{ m.role }}:{{ m.content }}" +
      "{% for c in m.tool_calls or [] %}<{{ c.function.name }} {{ c.function.arguments.location }}>{% endfor %}{% endfor %}",
    specials,
  );
  const plain = new JinjaChatTemplate("{% for m in messages %}|{{ m.role }}:{{ m.content }}{% endfor %}", specials);
  const tools = [{ type: "function" as const, function: { name: "get_current_temperature", parameters: { type: "object", properties: { location: { type: "string" } } } } }];
  const messages = [
    { role: "user" as const, content: "Weather in Oslo?" },
    { role: "assistant" as const, content: null, tool_calls: [{ id: "call_1", type: "function" as const, function: { name: "get_current_temperature", arguments: '{"location": "Oslo"}' } }] },
    { role: "tool" as const, content: "-3", tool_call_id: "call_1" },
  ];
  const p = chatPrompt({ messages, tools }, rendering);
  assert.equal(rendering.render(p.messages, false, p.tools), "[get_current_temperature]|user:Weather in Oslo?|assistant:<get_current_temperature Oslo>|tool:-3");
  const g = chatPrompt({ messages, tools }, plain);
  const text = plain.render(g.messages, false, g.tools);
  assert.ok(text.startsWith("|system:You may call functions."), text);
  assert.ok(text.includes('{"name":"get_current_temperature","parameters":{"type":"object"'), text);
  assert.ok(text.includes('|assistant:<tool_call>\n{"name":"get_current_temperature","arguments":{"location":"Oslo"}}\n</tool_call>'), text);
  assert.ok(text.endsWith("|user:<tool_response>\n-3\n</tool_response>"), text);
  assert.equal(p.plan?.parallel, true);
  assert.equal(chatPrompt({ messages, tools, parallel_tool_calls: false }, rendering).plan?.parallel, false);
  // tool_choice "none": no tools in the prompt, nothing parsed
  assert.equal(chatPrompt({ messages, tools, tool_choice: "none" }, rendering).plan, null);
  // a named function that is not a tool, or tool_choice without tools, is a 400
  assert.throws(() => chatPrompt({ messages, tools, tool_choice: { type: "function", function: { name: "nope" } } }, rendering), /not in 'tools'/);
  assert.throws(() => chatPrompt({ messages, tool_choice: "required" }, rendering), /only allowed when 'tools'/);
});

test("tool output: message.tool_calls, OpenAI's delta fragments, the same ids both ways; parallel_tool_calls false keeps the first", async () => {
  const { ToolOutput } = await import("../server/serving/tools/tool-output.js");
  const output = CASES["qwen2.5: two calls"]!.output;
  const result = { index: 0, text: output, tokenIds: [1], logprobs: [], promptLogprobs: [], finishReason: "stop" as const, promptTokens: 3, completionTokens: 9, timings: null };
  for (const parallel of [true, false]) {
    const t = new ToolOutput({ format: HERMES, known, forced: null, auto: null, parallel }, "chatcmpl-abc", null);
    const m = t.message(result);
    assert.equal(m.finishReason, "tool_calls");
    assert.equal(m.content, null);
    assert.equal(m.tool_calls?.length, parallel ? 2 : 1);
    assert.deepEqual(m.tool_calls?.[0], {
      id: t.callId(0, 0),
      type: "function",
      function: { name: "get_current_temperature", arguments: '{"location": "San Francisco, CA, USA"}' },
    });
    // streamed one character at a time: per call a header (index, id, type, name, arguments ""),
    // then its arguments in fragments as they arrive, which add up to the whole answer's
    const st = t.streamer(0);
    const deltas = [...output].flatMap((ch) => st.push({ type: "delta", text: ch, tokenIds: [], logprobs: [] }));
    const end = st.end("stop");
    deltas.push(...end.deltas);
    assert.equal(end.finishReason, "tool_calls");
    assert.ok(deltas.every((d) => d.tool_calls?.length === 1 && d.content === undefined));
    m.tool_calls!.forEach((c, k) => {
      const mine = deltas.map((d) => d.tool_calls![0]!).filter((f) => f.index === k);
      assert.deepEqual(mine[0], { index: k, id: c.id, type: "function", function: { name: c.function.name, arguments: "" } });
      const fragments = mine.slice(1).map((f) => {
        assert.deepEqual(Object.keys(f).sort(), ["function", "index"]);
        return f.function!.arguments!;
      });
      assert.ok(fragments.length > 1);
      assert.equal(fragments.join(""), c.function.arguments);
    });
    assert.equal(new Set(deltas.map((d) => d.tool_calls![0]!.index)).size, parallel ? 2 : 1);
  }
  assert.match(new ToolOutput({ format: HERMES, known, forced: null, auto: null, parallel: true }, "x", null).callId(0, 0), /^call_[A-Za-z0-9]{24}$/);
  assert.match(new ToolOutput({ format: MISTRAL, known, forced: null, auto: null, parallel: true }, "x", null).callId(0, 0), /^[A-Za-z0-9]{9}$/);
});
