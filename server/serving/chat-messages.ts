// Request messages -> the engine's turns (also what the store keeps as "the prompt"): text
// parts joined, assistant tool calls with their arguments parsed (as transformers hands them
// to chat templates), tool turns with the call they answer.
import type { ChatMessage } from "../../engine/types.js";
import type { ChatMessageInput } from "../http/schemas/chat.js";

function textOf(content: ChatMessageInput["content"]): string {
  if (content === null || content === undefined) return "";
  return typeof content === "string" ? content : content.map((p) => p.text).join("\n");
}

function parsedArguments(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text; // templates print a string as it is
  }
}

/** Request messages -> the engine's turns, tool calls with parsed arguments (as transformers does). */
export function toChatMessage(m: ChatMessageInput): ChatMessage {
  const out: ChatMessage = { role: m.role, content: textOf(m.content) };
  if (typeof m.name === "string") out.name = m.name;
  if (m.tool_calls && m.tool_calls.length > 0)
    out.tool_calls = m.tool_calls.map((c) => ({ id: c.id, type: "function", function: { name: c.function.name, arguments: parsedArguments(c.function.arguments) } }));
  if (typeof m.tool_call_id === "string") out.tool_call_id = m.tool_call_id;
  return out;
}
