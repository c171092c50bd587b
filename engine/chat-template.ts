// The checkpoint's chat template rendered with @huggingface/jinja the way transformers'
// apply_chat_template renders it. Where it comes from follows transformers' precedence:
// chat_template.jinja (saved by transformers >= 4.47, and preferred by it over everything),
// then chat_template.json (the processors' file), then tokenizer_config.json's
// chat_template, then our generic role-tagged template.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import type { ChatMessage, ChatTemplate, Tokenizer } from "./types.js";
import { ModelLoadError } from "./load-errors.js";
import { specialTokenString } from "./tokenizer.js";
import { readJsonFile, type JsonObject } from "./json-file.js";

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
    /** where the template came from: a file name of the checkpoint, or the built-in default */
    readonly origin = isDefault ? "the built-in role: content template (the checkpoint has none)" : "tokenizer_config.json",
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ModelLoadError(`chat_template in ${origin} does not parse: ${(e as Error).message}`, "bad_json");
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

/** The template of a tokenizer_config.json (string, or a list of named templates: "default"); `origin` names where it was read. */
export function chatTemplateFromConfig(tokenizerConfig: JsonObject, origin = "tokenizer_config.json"): JinjaChatTemplate {
  const specials = specialsOf(tokenizerConfig);
  const src = templateOf(tokenizerConfig.chat_template);
  return src === null ? new JinjaChatTemplate(DEFAULT_CHAT_TEMPLATE, specials, true) : new JinjaChatTemplate(src, specials, false, origin);
}

/**
 * The chat template of checkpoint directory `dir`, by transformers' precedence:
 * chat_template.jinja, chat_template.json ({"chat_template": ...}), tokenizer_config.json.
 */
export function loadChatTemplate(dir: string, tokenizerConfig: JsonObject): JinjaChatTemplate {
  const specials = specialsOf(tokenizerConfig);
  const jinja = join(dir, "chat_template.jinja");
  if (existsSync(jinja)) return new JinjaChatTemplate(readFileSync(jinja, "utf8"), specials, false, "chat_template.jinja");
  const json = join(dir, "chat_template.json");
  if (existsSync(json)) {
    const src = templateOf(readJsonFile(json).chat_template);
    if (src === null) throw new ModelLoadError(`${json}: "chat_template" must be a string or a list of {name, template}`, "bad_json");
    return new JinjaChatTemplate(src, specials, false, "chat_template.json");
  }
  return chatTemplateFromConfig(tokenizerConfig);
}

function specialsOf(tokenizerConfig: JsonObject) {
  return {
    bos_token: specialTokenString(tokenizerConfig.bos_token) ?? "",
    eos_token: specialTokenString(tokenizerConfig.eos_token) ?? "",
    unk_token: specialTokenString(tokenizerConfig.unk_token) ?? "",
    pad_token: specialTokenString(tokenizerConfig.pad_token) ?? "",
  };
}

/** A chat_template value: a string, or a list of named templates (the "default" one, else the first). */
function templateOf(t: unknown): string | null {
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t.filter((x): x is { name: string; template: string } => !!x && typeof x.name === "string" && typeof x.template === "string");
    return (named.find((x) => x.name === "default") ?? named[0])?.template ?? null;
  }
  return null;
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
