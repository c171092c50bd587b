import { test } from "node:test";
import assert from "node:assert/strict";
import { chatTemplateFromConfig, DEFAULT_CHAT_TEMPLATE, encodeChat } from "../engine/chat-template.js";
import { loadTokenizer } from "../engine/tokenizer.js";
import { storiesDir } from "./test-model.js";


test("stories260K: its own template, rendered with bos_token, encoded without adding BOS again", () => {
  const tokenizer = loadTokenizer(storiesDir);
  const chatTemplate = chatTemplateFromConfig(tokenizer.config);
  assert.equal(chatTemplate.isDefault, false);
  assert.equal(chatTemplate.render([{ role: "user", content: "Once upon a time" }], true), "<s>Once upon a time");
  assert.deepEqual(encodeChat({ tokenizer, chatTemplate }, [{ role: "user", content: "Once upon a time" }]), [1, 403, 407, 261, 378]);
  // HF renders with trim_blocks: the newline right after `{% if not loop.last %}` is dropped
  assert.equal(
    chatTemplate.render([{ role: "system", content: "a" }, { role: "user", content: "b" }], true),
    "<s>ab",
  );
});

test("bos/eos/add_generation_prompt reach a ChatML-style template", () => {
  const t = chatTemplateFromConfig({
    bos_token: { content: "<|begin|>", special: true },
    eos_token: "<|end|>",
    chat_template:
      "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
  });
  const msgs = [
    { role: "system" as const, content: "Be brief." },
    { role: "user" as const, content: "Hi" },
  ];
  assert.equal(t.render(msgs, true), "<|begin|><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n");
  assert.equal(t.render(msgs, false), "<|begin|><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n");
});

test("named template lists pick 'default'; templates may raise", () => {
  const t = chatTemplateFromConfig({
    chat_template: [
      { name: "tool_use", template: "TOOLS" },
      { name: "default", template: "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}{{ messages[0].content }}" },
    ],
  });
  assert.equal(t.render([{ role: "user", content: "x" }], false), "x");
  assert.throws(() => t.render([{ role: "assistant", content: "x" }], false), /first message must be user/);
});

test("no template: the default one, with the generation cue", () => {
  const t = chatTemplateFromConfig({ bos_token: "<s>" });
  assert.equal(t.isDefault, true);
  assert.equal(t.source, DEFAULT_CHAT_TEMPLATE);
  assert.equal(
    t.render([{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }, { role: "user", content: "bye" }], true),
    "<s>user: hi\nassistant: hello\nuser: bye\nassistant:",
  );
  assert.equal(t.render([{ role: "user", content: "hi" }], false), "<s>user: hi\n");
});

test("a template that does not parse is a load error", () => {
  assert.throws(() => chatTemplateFromConfig({ chat_template: "{% for x in %}" }), (e: Error & { code?: string }) => e.code === "bad_json" && /chat_template/.test(e.message));
});
