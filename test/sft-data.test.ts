// SFT data: every kind of bad line is reported with its line number, all at once; masks
// cover exactly the learned text (assistant turns + their end, or the completion + EOS).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseSftJsonl, SftDataError, type SftExample, type TrainMessage } from "../engine/train/data/sft-data.js";
import { encodeExample, encodeExamples, type EncodeContext } from "../engine/train/data/sft-encode.js";
import { loadTokenizer } from "../engine/tokenizer.js";
import { chatTemplateFromConfig, JinjaChatTemplate } from "../engine/chat-template.js";
import { storiesDir } from "./test-model.js";

const tokenizer = loadTokenizer(storiesDir);
const storiesTemplate = chatTemplateFromConfig(tokenizer.config);
const specials = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", pad_token: "" };
// ChatML-like: each turn closed by an end marker, a generation prompt after the last user turn
const chatml = new JinjaChatTemplate(
  "{{ bos_token }}{% for m in messages %}{{ '[' + m['role'] + ']' + m['content'] + '[end]\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '[assistant]' }}{% endif %}",
  specials,
);

function errorsOf(text: string): { line: number; reason: string }[] {
  try {
    parseSftJsonl(text, "t.jsonl");
  } catch (e) {
    assert.ok(e instanceof SftDataError);
    assert.equal(e.code, "bad_training_data");
    return e.errors;
  }
  assert.fail("no error");
}

describe("parseSftJsonl", () => {
  test("accepts both formats, text parts, weights and blank lines", () => {
    const ex = parseSftJsonl(
      [
        JSON.stringify({ messages: [{ role: "system", content: "s" }, { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] }, { role: "assistant", content: "c", weight: 0 }, { role: "user", content: "d" }, { role: "assistant", content: "e", weight: 1 }] }),
        "",
        "   ",
        JSON.stringify({ messages: [{ role: "user", content: "x", name: "bob" }, { role: "assistant", content: "y" }] }),
      ].join("\n"),
    );
    assert.equal(ex.length, 2);
    assert.equal(ex[1].line, 4);
    assert.ok(ex[0].kind === "chat");
    assert.equal(ex[0].messages[1].content, "ab");
    assert.equal(ex[0].messages[2].weight, 0);
    assert.deepEqual(parseSftJsonl('{"prompt":"","completion":"x"}\r\n'), [{ kind: "completion", line: 1, prompt: "", completion: "x" }]);
  });

  test("every kind of bad line, each with its number, all reported together", () => {
    const lines = [
      /* 1 */ '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ok"}]}',
      /* 2 */ "{not json",
      /* 3 */ "[1,2]",
      /* 4 */ '{"text":"x"}',
      /* 5 */ '{"messages":"hi"}',
      /* 6 */ '{"messages":[]}',
      /* 7 */ '{"messages":[{"role":"robot","content":"x"},{"role":"assistant","content":"y"}]}',
      /* 8 */ '{"messages":[{"role":"user","content":5},{"role":"assistant","content":"y"}]}',
      /* 9 */ '{"messages":[{"role":"user","content":"x"}]}',
      /* 10 */ '{"messages":[{"role":"user","content":"x","weight":1},{"role":"assistant","content":"y"}]}',
      /* 11 */ '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","weight":0.5}]}',
      /* 12 */ '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","weight":0}]}',
      /* 13 */ '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":""}]}',
      /* 14 */ '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[]}]}',
      /* 15 */ '{"messages":[{"role":"user","content":"x","colour":"red"},{"role":"assistant","content":"y"}]}',
      /* 16 */ '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]},{"role":"assistant","content":"y"}]}',
      /* 17 */ '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],"extra":1}',
      /* 18 */ '{"prompt":"a","completion":"b"}',
      /* 19 */ '"just a string"',
      /* 20 */ '{"messages":[null,{"role":"assistant","content":"y"}]}',
    ];
    const errs = errorsOf(lines.join("\n"));
    const byLine = new Map(errs.map((e) => [e.line, e.reason]));
    assert.deepEqual([...byLine.keys()], [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    const expect: [number, RegExp][] = [
      [2, /not valid JSON/],
      [3, /expected a JSON object, got an array/],
      [4, /neither "messages" nor "prompt"\/"completion" \(keys: text\)/],
      [5, /"messages" must be an array/],
      [6, /"messages" is empty/],
      [7, /messages\[0\]\.role must be one of/],
      [8, /messages\[0\]\.content must be a string/],
      [9, /no assistant message to learn from/],
      [10, /weight is only allowed on assistant messages/],
      [11, /weight must be 0 or 1, got 0\.5/],
      [12, /no assistant message to learn from/],
      [13, /empty content/],
      [14, /tool_calls must be a non-empty array/],
      [15, /unknown key "colour"/],
      [16, /only text parts/],
      [17, /unknown key "extra"/],
      [18, /prompt\/completion example in a file of chat examples/],
      [19, /expected a JSON object, got a string/],
      [20, /messages\[0\] must be an object, got null/],
    ];
    for (const [line, re] of expect) assert.match(byLine.get(line)!, re, `line ${line}`);
    // the message lists the lines and says nothing was trained
    const msg = new SftDataError("t.jsonl", errs).message;
    assert.match(msg, /^t\.jsonl: 19 bad lines; nothing was trained/);
    assert.match(msg, /line 2: not valid JSON/);
    assert.match(msg, /line 20: /);
  });

  test("prompt/completion errors and an empty file", () => {
    const errs = errorsOf(['{"prompt":"a","completion":"b"}', '{"prompt":1,"completion":"b"}', '{"prompt":"a"}', '{"prompt":"a","completion":""}', '{"prompt":"a","completion":"b","x":1}', '{"messages":[]}'].join("\n"));
    assert.deepEqual(errs.map((e) => e.line), [2, 3, 4, 5, 6]);
    assert.match(errs[0].reason, /"prompt" must be a string/);
    assert.match(errs[1].reason, /"completion" must be a string, got undefined/);
    assert.match(errs[2].reason, /"completion" is empty/);
    assert.match(errs[3].reason, /unknown key "x"/);
    assert.match(errs[4].reason, /a chat example in a file of prompt\/completion examples/);
    assert.deepEqual(errorsOf("\n\n"), [{ line: 0, reason: "the file holds no examples" }]);
  });
});

/** The text of the learned tokens, span by span (consecutive learned tokens joined). */
function learnedSpans(tokens: Int32Array, mask: Uint8Array): number[][] {
  const spans: number[][] = [];
  let cur: number[] | null = null;
  for (let t = 0; t < tokens.length; t++) {
    if (mask[t]) (cur ??= []).push(tokens[t]);
    else if (cur) spans.push(cur), (cur = null);
  }
  if (cur) spans.push(cur);
  return spans;
}

describe("encodeExample masks", () => {
  const ctx = (chatTemplate = chatml, maxLength = 512): EncodeContext => ({ tokenizer, chatTemplate, maxLength });
  const chat = (messages: TrainMessage[]): SftExample & { kind: "chat" } => ({ kind: "chat", line: 1, messages });

  test("multi-turn chat: only assistant content and its end marker are learned; weight 0 is context", () => {
    const ex = chat([
      { role: "system", content: "Be brief." },
      { role: "user", content: "Who is Tom?" },
      { role: "assistant", content: "Tom is a cat." },
      { role: "user", content: "And Sue?" },
      { role: "assistant", content: "Sue is a dog.", weight: 0 },
      { role: "user", content: "And Max?" },
      { role: "assistant", content: "Max is a bird." },
    ]);
    const { example } = encodeExample(ctx(), ex)!;
    // the sequence is the tokens of the rendered conversation, then EOS
    const rendered = tokenizer.encode(chatml.render(ex.messages, false), false);
    assert.deepEqual([...example.tokens.slice(0, rendered.length)], rendered);
    assert.equal(example.mask[0], 0);
    const spans = learnedSpans(example.tokens, example.mask).map((s) => tokenizer.decode(s, false));
    assert.equal(spans.length, 2);
    assert.equal(spans[0], "Tom is a cat.[end]\n");
    // the last turn ends the text: EOS follows it and is learned
    assert.equal(example.tokens[example.tokens.length - 1], 2);
    assert.equal(spans[1], "Max is a bird.[end]\n</s>");
    assert.ok(!spans.some((s) => s.includes("Sue") || s.includes("Who")));
  });

  test("OpenAI function-calling lines: tools and tool calls rendered as serving renders them; the call is learned", () => {
    const line = {
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }],
      messages: [
        { role: "user", content: "Weather in Oslo?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city": "Oslo"}' } }] },
        { role: "tool", tool_call_id: "call_1", content: "-3" },
        { role: "assistant", content: "It is -3 in Oslo." },
      ],
    };
    const [ex] = parseSftJsonl(JSON.stringify(line));
    assert.ok(ex && ex.kind === "chat" && ex.tools?.length === 1);
    assert.deepEqual(ex.messages[1]!.tool_calls, [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: { city: "Oslo" } } }]);
    // chatml does not render tools: the generic rendering (as serving prompts the model)
    const { example } = encodeExample(ctx(), ex)!;
    const spans = learnedSpans(example.tokens, example.mask).map((t) => tokenizer.decode(t, false));
    assert.equal(spans.length, 2);
    assert.equal(spans[0], '<tool_call>\n{"name":"get_weather","arguments":{"city":"Oslo"}}\n</tool_call>[end]\n');
    assert.equal(spans[1], "It is -3 in Oslo.[end]\n</s>");
    const text = tokenizer.decode([...example.tokens], false);
    assert.ok(text.includes("<tools>\n" + JSON.stringify(line.tools[0]!.function)), text);
    assert.ok(text.includes("<tool_response>\n-3\n</tool_response>"), text);
    // a template that renders tools gets them (and the calls, arguments parsed) itself
    const rendering = new JinjaChatTemplate(
      "{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% for m in messages %}<{{ m.role }}>{{ m.content }}" +
        "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }}({{ c.function.arguments.city }}){% endfor %}</{{ m.role }}>{% endfor %}" +
        "{% if add_generation_prompt %}<assistant>{% endif %}",
      { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", pad_token: "" },
    );
    const own = encodeExample(ctx(rendering), ex)!.example;
    const ownSpans = learnedSpans(own.tokens, own.mask).map((t) => tokenizer.decode(t, false));
    assert.equal(ownSpans[0], "CALL get_weather(Oslo)</assistant>");
    assert.ok(tokenizer.decode([...own.tokens], false).startsWith("[get_weather]<user>"));
    // bad function-calling lines
    const bad = (o: unknown) => () => parseSftJsonl(JSON.stringify(o));
    assert.throws(bad({ ...line, tools: [{ type: "function" }] }), /tools\[0\]/);
    assert.throws(bad({ messages: [{ role: "user", content: "x", tool_calls: line.messages[1]!.tool_calls }, { role: "assistant", content: "y" }] }), /only allowed on assistant/);
    assert.throws(bad({ messages: [{ role: "user", content: "x" }, { role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }] }] }), /not JSON/);
  });

  test("stories260K's template (contents joined, no end marker): the assistant text is learned, then EOS", () => {
    const ex = chat([
      { role: "user", content: "Once upon a time," },
      { role: "assistant", content: " there was a cat." },
    ]);
    const { example } = encodeExample(ctx(storiesTemplate), ex)!;
    assert.deepEqual([...example.tokens], [...tokenizer.encode("Once upon a time, there was a cat.", true), 2]);
    const spans = learnedSpans(example.tokens, example.mask);
    assert.equal(spans.length, 1);
    assert.equal(tokenizer.decode(spans[0], false), "there was a cat.</s>");
    assert.equal(spans[0].length, example.tokens.length - tokenizer.encode("Once upon a time,", true).length);
  });

  test("prompt/completion: text concatenated, the completion and EOS learned, tokens as the whole text encodes", () => {
    const p = "Once upon a time, there was a little girl named";
    const ex: SftExample = { kind: "completion", line: 3, prompt: p, completion: " Zara." };
    const { example, truncated } = encodeExample(ctx(), ex)!;
    assert.equal(truncated, false);
    const whole = tokenizer.encode(p + " Zara.", true);
    assert.deepEqual([...example.tokens], [...whole, 2]);
    const promptLen = tokenizer.encode(p, true).length;
    assert.deepEqual([...example.mask], [...whole.map((_, i) => (i >= promptLen ? 1 : 0)), 1]);
    // learned tokens decode to the completion (no doubled "▁" as segment-wise encoding would give)
    assert.equal(tokenizer.decode([...example.tokens.slice(promptLen, -1)], true), "Zara.");
    assert.equal(example.line, 3);
  });

  test("truncation cuts to maxLength and is counted; nothing left to learn drops the example", () => {
    const long: SftExample = { kind: "completion", line: 1, prompt: "Once upon a time", completion: " there was a big dog and a small cat." };
    const gone: SftExample = { kind: "completion", line: 2, prompt: "Once upon a time, there was a big dog and a small cat and a bird", completion: " yes" };
    const { encoded, stats, errors } = encodeExamples(ctx(chatml, 8), [long, gone]);
    assert.deepEqual(errors, []);
    assert.equal(encoded.length, 1);
    assert.equal(encoded[0].tokens.length, 8);
    assert.deepEqual({ truncated: stats.truncated, dropped: stats.dropped, examples: stats.examples }, { truncated: 1, dropped: 1, examples: 1 });
    assert.equal(stats.lossTokens, [...encoded[0].mask].reduce((a, b) => a + b, 0));
  });

  test("a template that re-renders earlier turns cannot be masked: reported as a bad line", () => {
    const reversing = new JinjaChatTemplate("{% for m in messages|reverse %}{{ m['content'] + '\\n' }}{% endfor %}", specials);
    const ex = chat([
      { role: "user", content: "a" },
      { role: "assistant", content: "b" },
    ]);
    const { errors } = encodeExamples(ctx(reversing), [{ ...ex, line: 7 }]);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].line, 7);
    assert.match(errors[0].reason, /does not render messages\[1\] as a continuation/);
  });
});
