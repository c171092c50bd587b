// SFT data files: JSONL in OpenAI's fine-tuning formats, validated in full before training.
// Every bad line is reported with its number and reason, all at once, so a user fixes the
// file in one pass instead of one error per run.
import { readFileSync, existsSync } from "node:fs";
import type { ChatMessage, ChatToolCall } from "../../types.js";
import type { ToolDefinition } from "../../chat-tools.js";
import { describeJson, eachJsonlObject, type LineError } from "./jsonl.js";

/** A chat message of a training example; `weight` 0 on an assistant message excludes it from the loss (OpenAI). */
export interface TrainMessage extends ChatMessage {
  weight?: 0 | 1;
}

export type SftExample =
  /** `tools`: OpenAI's function-calling fine-tuning lines (rendered as serving renders them) */
  | { kind: "chat"; line: number; messages: TrainMessage[]; tools?: ToolDefinition[] }
  | { kind: "completion"; line: number; prompt: string; completion: string };

/** Thrown when a data file has bad lines; `errors` lists every one of them. */
export class SftDataError extends Error {
  readonly code = "bad_training_data";
  constructor(
    readonly file: string,
    readonly errors: LineError[],
    hint = SFT_FORMATS,
  ) {
    super(formatErrors(file, errors, hint));
    this.name = "SftDataError";
  }
}

// past this many lines the message stops listing them (the array keeps them all)
const SHOWN_ERRORS = 50;

const SFT_FORMATS =
  `Each line must be one JSON object: {"messages":[{"role":"user","content":"…"},{"role":"assistant","content":"…"}]} ` + `or {"prompt":"…","completion":"…"}.`;

function formatErrors(file: string, errors: LineError[], hint: string): string {
  const shown = errors.slice(0, SHOWN_ERRORS).map((e) => (e.line > 0 ? `  line ${e.line}: ${e.reason}` : `  ${e.reason}`));
  const more = errors.length > SHOWN_ERRORS ? `\n  … and ${errors.length - SHOWN_ERRORS} more` : "";
  return (
    `${file}: ${errors.length} bad line${errors.length === 1 ? "" : "s"}; nothing was trained. Fix them and run again:\n${shown.join("\n")}${more}\n` + hint
  );
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);
const MESSAGE_KEYS = new Set(["role", "content", "name", "weight", "tool_calls", "tool_call_id"]);
const CHAT_KEYS = new Set(["messages", "tools", "parallel_tool_calls"]);

/** OpenAI's `tools` of a function-calling line */
export function parseTools(v: unknown): ToolDefinition[] {
  if (!Array.isArray(v)) throw new Error(`"tools" must be an array, got ${describeJson(v)}`);
  return v.map((t, i) => {
    const f = (t as { type?: unknown; function?: { name?: unknown; parameters?: unknown } } | null)?.function;
    if ((t as { type?: unknown })?.type !== "function" || !f || typeof f.name !== "string")
      throw new Error(`tools[${i}] must be {"type":"function","function":{"name":"…","parameters":{…}}}`);
    return t as ToolDefinition;
  });
}

/** an assistant turn's calls in OpenAI's format; arguments parsed for the template (as transformers does) */
function parseToolCalls(v: unknown, where: string): ChatToolCall[] {
  if (!Array.isArray(v) || v.length === 0) throw new Error(`${where}.tool_calls must be a non-empty array`);
  return v.map((c, j) => {
    const call = c as { id?: unknown; type?: unknown; function?: { name?: unknown; arguments?: unknown } } | null;
    const fn = call?.function;
    if (!call || call.type !== "function" || typeof call.id !== "string" || !fn || typeof fn.name !== "string" || typeof fn.arguments !== "string")
      throw new Error(`${where}.tool_calls[${j}] must be {"id":"…","type":"function","function":{"name":"…","arguments":"<JSON>"}}`);
    let args: unknown;
    try {
      args = JSON.parse(fn.arguments);
    } catch {
      throw new Error(`${where}.tool_calls[${j}].function.arguments is not JSON`);
    }
    return { id: call.id, type: "function", function: { name: fn.name, arguments: args } };
  });
}

/** OpenAI lets content be a list of text parts; anything else (images, audio) is not text training data. */
function messageText(content: unknown, where: string): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    let text = "";
    for (const [j, part] of content.entries()) {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (!p || typeof p !== "object" || p.type !== "text" || typeof p.text !== "string")
        throw new Error(`${where}.content[${j}] must be {"type":"text","text":"…"} (only text parts can be trained on)`);
      text += p.text;
    }
    return text;
  }
  throw new Error(`${where}.content must be a string, got ${describeJson(content)}`);
}

/**
 * One message of a line in OpenAI's format (`where` names it in errors): text content (or text
 * parts), an assistant's tool_calls (arguments parsed for the template), a tool turn's
 * tool_call_id, a name, an assistant's weight.
 */
export function parseMessage(raw: unknown, where: string): TrainMessage {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new Error(`${where} must be an object, got ${describeJson(raw)}`);
  const m = raw as Record<string, unknown>;
  for (const k of Object.keys(m)) {
    if (k === "function_call") throw new Error(`${where}.function_call is not supported (use OpenAI's tool_calls)`);
    if (!MESSAGE_KEYS.has(k)) throw new Error(`${where} has unknown key "${k}" (allowed: role, content, name, weight, tool_calls, tool_call_id)`);
  }
  if (typeof m.role !== "string" || !ROLES.has(m.role)) throw new Error(`${where}.role must be one of ${[...ROLES].join(", ")}, got ${describeJson(m.role)}`);
  const role = m.role as ChatMessage["role"];
  // an assistant turn that only calls tools has no content
  const calls = m.tool_calls === undefined ? null : parseToolCalls(m.tool_calls, where);
  if (calls && role !== "assistant") throw new Error(`${where}.tool_calls is only allowed on assistant messages`);
  const content = calls && (m.content === null || m.content === undefined) ? "" : messageText(m.content, where);
  const msg: TrainMessage = { role, content };
  if (calls) msg.tool_calls = calls;
  if (m.tool_call_id !== undefined) {
    if (typeof m.tool_call_id !== "string" || role !== "tool") throw new Error(`${where}.tool_call_id must be a string, on a tool message`);
    msg.tool_call_id = m.tool_call_id;
  }
  if (m.name !== undefined) {
    if (typeof m.name !== "string") throw new Error(`${where}.name must be a string`);
    msg.name = m.name;
  }
  if (m.weight !== undefined) {
    if (role !== "assistant") throw new Error(`${where}.weight is only allowed on assistant messages (this one is "${role}")`);
    if (m.weight !== 0 && m.weight !== 1) throw new Error(`${where}.weight must be 0 or 1, got ${JSON.stringify(m.weight)}`);
    msg.weight = m.weight;
  }
  if (role === "assistant" && msg.weight !== 0 && content.length === 0 && !calls)
    throw new Error(`${where} is an assistant message with empty content (nothing to learn; give it text or weight 0)`);
  return msg;
}

function parseChat(o: Record<string, unknown>): TrainMessage[] {
  for (const k of Object.keys(o)) if (!CHAT_KEYS.has(k)) throw new Error(`unknown key "${k}" (a chat example has "messages", and "tools"/"parallel_tool_calls" for function calling)`);
  const msgs = o.messages;
  if (!Array.isArray(msgs)) throw new Error(`"messages" must be an array, got ${describeJson(msgs)}`);
  if (msgs.length === 0) throw new Error(`"messages" is empty`);
  const out = msgs.map((raw, i) => parseMessage(raw, `messages[${i}]`));
  const trained = out.filter((m) => m.role === "assistant" && m.weight !== 0).length;
  if (trained === 0) throw new Error(`no assistant message to learn from (add one, or remove "weight": 0)`);
  return out;
}

function parseCompletion(o: Record<string, unknown>): { prompt: string; completion: string } {
  for (const k of Object.keys(o)) if (k !== "prompt" && k !== "completion") throw new Error(`unknown key "${k}" (a prompt/completion example has only "prompt" and "completion")`);
  if (typeof o.prompt !== "string") throw new Error(`"prompt" must be a string, got ${describeJson(o.prompt)}`);
  if (typeof o.completion !== "string") throw new Error(`"completion" must be a string, got ${describeJson(o.completion)}`);
  if (o.completion.length === 0) throw new Error(`"completion" is empty (nothing to learn)`);
  return { prompt: o.prompt, completion: o.completion };
}

/**
 * Parses JSONL text. Blank lines are skipped; all examples of a file must share one format
 * (the first valid line's), as OpenAI requires. Throws SftDataError listing every bad line.
 */
/**
 * One SFT line's parser, remembering the file's format (chat or prompt/completion) from
 * the lines before: parseSftJsonl and the streaming upload check (server/fine-tuning) share it.
 */
export function sftLineParser(): (o: Record<string, unknown>, line: number) => SftExample {
  let format: SftExample["kind"] | null = null;
  return (o, line) => {
    const kind: SftExample["kind"] | null = "messages" in o ? "chat" : "prompt" in o || "completion" in o ? "completion" : null;
    if (kind === null) throw new Error(`neither "messages" nor "prompt"/"completion" (keys: ${Object.keys(o).join(", ") || "none"})`);
    if (format !== null && kind !== format)
      throw new Error(`${kind === "chat" ? "a chat" : "a prompt/completion"} example in a file of ${format === "chat" ? "chat" : "prompt/completion"} examples (use one format per file)`);
    const ex: SftExample = kind === "chat" ? { kind, line, messages: parseChat(o), ...(o.tools !== undefined ? { tools: parseTools(o.tools) } : {}) } : { kind, line, ...parseCompletion(o) };
    format = kind;
    return ex;
  };
}

export function parseSftJsonl(text: string, file = "data"): SftExample[] {
  const examples: SftExample[] = [];
  const parse = sftLineParser();
  const errors = eachJsonlObject(text, (o, line) => examples.push(parse(o, line)));
  if (examples.length === 0 && errors.length === 0) errors.push({ line: 0, reason: "the file holds no examples" });
  if (errors.length > 0) throw new SftDataError(file, errors);
  return examples;
}

/** Reads and validates a JSONL file (see parseSftJsonl). */
export function readSftJsonl(file: string): SftExample[] {
  if (!existsSync(file)) throw new SftDataError(file, [{ line: 0, reason: "no such file" }]);
  return parseSftJsonl(readFileSync(file, "utf8"), file);
}
