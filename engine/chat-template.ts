// The checkpoint's chat template (tokenizer_config.json chat_template) rendered with
// @huggingface/jinja the way transformers' apply_chat_template renders it.
import { Template } from "@huggingface/jinja";
import type { ChatMessage, ChatTemplate, Tokenizer } from "./types.js";
import { ModelLoadError } from "./load-errors.js";
import { specialTokenString } from "./tokenizer.js";
import type { JsonObject } from "./json-file.js";

/**
 * Used when a checkpoint has no template (HF would refuse): role-tagged lines, then an
 * "assistant:" cue, after the BOS text. `hybridchat init` writes this same template.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}";

export class JinjaChatTemplate implements ChatTemplate {
  private readonly template: Template;
  readonly rendersTools: boolean;

  constructor(
    readonly source: string,
    private readonly specials: { bos_token: string; eos_token: string; unk_token: string; pad_token: string },
    readonly isDefault = false,
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ModelLoadError(`chat_template does not parse: ${(e as Error).message}`, "bad_json");
    }
    this.rendersTools = /\btools\b/.test(source);
  }

  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean, tools?: readonly object[] | null): string {
    return this.template.render({
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: addGenerationPrompt,
      // absent rather than empty when there are none: templates test `tools is defined`/`if tools`
      ...(tools && tools.length > 0 ? { tools: [...tools] } : {}),
      ...this.specials,
    });
  }
}

/** The template of a tokenizer_config.json (string, or a list of named templates: "default"). */
export function chatTemplateFromConfig(tokenizerConfig: JsonObject): JinjaChatTemplate {
  const specials = {
    bos_token: specialTokenString(tokenizerConfig.bos_token) ?? "",
    eos_token: specialTokenString(tokenizerConfig.eos_token) ?? "",
    unk_token: specialTokenString(tokenizerConfig.unk_token) ?? "",
    pad_token: specialTokenString(tokenizerConfig.pad_token) ?? "",
  };
  let src: string | null = null;
  const t = tokenizerConfig.chat_template;
  if (typeof t === "string") src = t;
  else if (Array.isArray(t)) {
    const named = t.filter((x): x is { name: string; template: string } => !!x && typeof x.name === "string" && typeof x.template === "string");
    src = (named.find((x) => x.name === "default") ?? named[0])?.template ?? null;
  }
  return src === null ? new JinjaChatTemplate(DEFAULT_CHAT_TEMPLATE, specials, true) : new JinjaChatTemplate(src, specials);
}

/**
 * Prompt tokens of a chat request: the rendered text already holds the BOS (and any other
 * special) text the template wants, so it is encoded without adding special tokens again.
 */
export function encodeChat(
  model: { tokenizer: Tokenizer; chatTemplate: ChatTemplate },
  messages: readonly ChatMessage[],
  addGenerationPrompt = true,
  tools: readonly object[] | null = null,
): number[] {
  return model.tokenizer.encode(model.chatTemplate.render(messages, addGenerationPrompt, tools), false);
}
