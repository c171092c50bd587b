// The values that cross the store's boundary (the rows' meaning, not their columns).
import type { ChatMessage } from "../../engine/types.js";
import type { ChatCompletionBody, CompletionBody } from "../http/schemas/responses.js";

/** One conversation turn as stored and exported: content flattened to text, as the engine sees it. */
export type PromptMessage = ChatMessage;

/**
 * The API key id (server/http/auth.ts apiKeyId, never the key) of the request that stored a
 * row. null: stored by a server without keys, or before rows had owners; only admins see it.
 */
export type Owner = string | null;

/**
 * Whose rows a read may see: undefined, every row (an admin key, or a server without keys);
 * a key id, only that key's rows. Another key's row is then "not found", never "forbidden".
 */
export type OwnedBy = string | undefined;

/** Whether a row of `owner` is visible to a reader limited to `ownedBy`. */
export const visibleTo = (owner: Owner, ownedBy: OwnedBy): boolean => ownedBy === undefined || owner === ownedBy;

export type CompletionObject = "chat.completion" | "text_completion";

export interface StoredChoice {
  index: number;
  text: string;
  finishReason: string;
}

export interface CompletionTimings {
  /** submit -> first scheduled, the slowest choice */
  queuedMs: number;
  /** submit -> first token, the fastest choice */
  ttftMs: number;
  /** handler start -> stored */
  totalMs: number;
}

export interface CompletionRecord {
  id: string;
  object: CompletionObject;
  created: number;
  /** the served model id (variant) that answered */
  model: string;
  /** its native adapter; null = the base weights */
  adapter: string | null;
  systemFingerprint: string;
  /** the validated request body */
  request: Record<string, unknown>;
  /** chat completions: the conversation the choices continue; null for text completions */
  promptMessages: PromptMessage[] | null;
  choices: StoredChoice[];
  promptTokens: number;
  completionTokens: number;
  timings: CompletionTimings;
  streamed: boolean;
  metadata: Record<string, string>;
  owner: Owner;
  /** exactly what the client got (for streams: the object the chunks add up to) */
  response: ChatCompletionBody | CompletionBody;
}

/** A page of a list: the items and whether more follow. */
export interface Page<T> {
  items: T[];
  hasMore: boolean;
}

export type SortOrder = "asc" | "desc";
