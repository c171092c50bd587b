// Request messages -> the engine's plain-text turns (also what the store keeps as "the prompt").
import type { ChatMessage } from "../../engine/types.js";
import type { ChatMessageInput } from "../http/schemas/chat.js";

export function toChatMessage(m: ChatMessageInput): ChatMessage {
  const content =
    m.content === null || m.content === undefined
      ? ""
      : typeof m.content === "string"
        ? m.content
        : m.content.map((p) => p.text).join("\n");
  const out: ChatMessage = { role: m.role, content };
  if (typeof m.name === "string") out.name = m.name;
  return out;
}
