// OpenAI's cursor pages, and the request messages of a stored chat completion as
// GET /v1/chat/completions/{id}/messages returns them.
import { toChatMessage } from "../serving/chat-messages.js";
import type { ChatMessageInput } from "./schemas/chat.js";
import type { ListPageBody, StoredMessageBody } from "./schemas/store-responses.js";
import type { CompletionRecord, Page, SortOrder } from "../store/types.js";

export function listPage<T extends { id: string }>(page: Page<T>): ListPageBody<T> {
  return {
    object: "list",
    data: page.items,
    first_id: page.items[0]?.id ?? null,
    last_id: page.items.at(-1)?.id ?? null,
    has_more: page.hasMore,
  };
}

/** The request's messages with OpenAI's ids (`<completion id>-<index>`). */
export function storedMessages(c: CompletionRecord): StoredMessageBody[] {
  const inputs = (c.request.messages ?? []) as ChatMessageInput[];
  return inputs.map((m, i) => ({
    id: `${c.id}-${i}`,
    role: m.role,
    content: toChatMessage(m).content,
    name: typeof m.name === "string" ? m.name : null,
    content_parts: Array.isArray(m.content) ? m.content : null,
    ...(m.tool_calls ? { tool_calls: m.tool_calls } : {}),
    ...(typeof m.tool_call_id === "string" ? { tool_call_id: m.tool_call_id } : {}),
  }));
}

/**
 * A page of an in-memory list: items after the one with id `after` (in `order`), at most
 * `limit`. Returns null when `after` is not in the list.
 */
export function pageOf<T extends { id: string }>(all: readonly T[], q: { after?: string; limit: number; order: SortOrder }): Page<T> | null {
  const ordered = q.order === "asc" ? all : [...all].reverse();
  let start = 0;
  if (q.after !== undefined) {
    const at = ordered.findIndex((x) => x.id === q.after);
    if (at < 0) return null;
    start = at + 1;
  }
  const items = ordered.slice(start, start + q.limit);
  return { items, hasMore: start + q.limit < ordered.length };
}
