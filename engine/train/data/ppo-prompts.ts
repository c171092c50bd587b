// PPO prompt files: JSONL, one {"prompt": "…"} (plain text, BOS added as serving does) or
// {"messages": [...]} (rendered with the chat template and its generation prompt) per line.
// Training lines give their prompt part, so SFT and preference files serve as prompt files:
// a prompt/completion or text pair's "prompt", a chat example's messages before its final
// assistant answer, an OpenAI DPO line's input.messages.
// Validated in full before training; every bad line is reported at once (SftDataError).
import { existsSync, readFileSync } from "node:fs";
import type { ChatMessage, ChatTemplate, Tokenizer } from "../../types.js";
import { encodeChat } from "../../chat-template.js";
import { eachJsonlObject } from "./jsonl.js";
import { SftDataError } from "./sft-data.js";
import type { LineError } from "./jsonl.js";

export type PromptExample = { line: number; prompt: string } | { line: number; messages: ChatMessage[] };

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

function parseMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw new Error(`"messages" must be a non-empty array`);
  return v.map((raw, i) => {
    const m = raw as Record<string, unknown> | null;
    if (!m || typeof m !== "object" || Array.isArray(m)) throw new Error(`messages[${i}] must be an object`);
    if (typeof m.role !== "string" || !ROLES.has(m.role)) throw new Error(`messages[${i}].role must be one of ${[...ROLES].join(", ")}`);
    if (typeof m.content !== "string") throw new Error(`messages[${i}].content must be a string`);
    return { role: m.role as ChatMessage["role"], content: m.content };
  });
}

/** A chat example's prompt: the messages before its final assistant answer (all of them when it has none). */
function promptPart(messages: ChatMessage[]): ChatMessage[] {
  const end = messages.at(-1)?.role === "assistant" ? messages.length - 1 : messages.length;
  if (end === 0) throw new Error(`"messages" holds only an assistant answer: no prompt to sample from`);
  return messages.slice(0, end);
}

/** One prompt line (stateless): parsePromptJsonl and the streaming upload check share it. */
export function parsePromptLine(o: Record<string, unknown>, line: number): PromptExample {
  if (typeof o.prompt === "string") return { line, prompt: o.prompt };
  if ("messages" in o) return { line, messages: promptPart(parseMessages(o.messages)) };
  if (o.input && typeof o.input === "object" && "messages" in o.input) return { line, messages: parseMessages((o.input as { messages: unknown }).messages) };
  throw new Error(`expected {"prompt": "…"}, {"messages": [...]} or {"input": {"messages": [...]}} (keys: ${Object.keys(o).join(", ") || "none"})`);
}

export function parsePromptJsonl(text: string, file = "prompts"): PromptExample[] {
  const out: PromptExample[] = [];
  const errors: LineError[] = eachJsonlObject(text, (o, line) => out.push(parsePromptLine(o, line)));
  if (out.length === 0 && errors.length === 0) errors.push({ line: 0, reason: "the file holds no prompts" });
  if (errors.length > 0) throw new SftDataError(file, errors);
  return out;
}

export function readPromptJsonl(file: string): PromptExample[] {
  if (!existsSync(file)) throw new SftDataError(file, [{ line: 0, reason: "no such file" }]);
  return parsePromptJsonl(readFileSync(file, "utf8"), file);
}

/** The prompt's tokens exactly as the serving endpoints would feed them to the model. */
export function encodePrompt(p: PromptExample, model: { tokenizer: Tokenizer; chatTemplate: ChatTemplate }): number[] {
  return "prompt" in p ? model.tokenizer.encode(p.prompt, true) : encodeChat(model, p.messages, true);
}
