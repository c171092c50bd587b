// Engine values -> the exact OpenAI response objects (ids, chunks, logprobs, usage).
import { randomBytes } from "node:crypto";
import type { TokenLogprob } from "../../engine/types.js";
import type { ChatLogprobs, CompletionLogprobs, UsageBody } from "./schemas/responses.js";

export function completionId(prefix: "chatcmpl" | "cmpl"): string {
  return `${prefix}-${randomBytes(18).toString("base64url")}`;
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

export function usageBody(promptTokens: number, completionTokens: number): UsageBody {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

export function chatLogprobs(items: readonly TokenLogprob[], topLogprobs: number): ChatLogprobs {
  return {
    content: items.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      bytes: t.bytes,
      top_logprobs: t.top.slice(0, topLogprobs).map((a) => ({ token: a.token, logprob: a.logprob, bytes: a.bytes })),
    })),
    refusal: null,
  };
}

/** an echoed prompt's first token: nothing comes before it, so it has no log-prob */
export interface UnscoredToken {
  token: string;
  logprob: null;
}

/**
 * The legacy completions layout. `textOffset` is where the first token's text starts in
 * the choice's text (after an echoed prompt, or after earlier stream chunks).
 */
export function completionLogprobs(items: readonly (TokenLogprob | UnscoredToken)[], topLogprobs: number, textOffset: number): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = textOffset;
  for (const t of items) {
    out.tokens.push(t.token);
    out.token_logprobs.push(t.logprob);
    if (t.logprob === null) out.top_logprobs.push(null);
    else {
      const top: Record<string, number> = {};
      for (const a of t.top.slice(0, topLogprobs)) if (!(a.token in top)) top[a.token] = a.logprob;
      out.top_logprobs.push(top);
    }
    out.text_offset.push(offset);
    offset += t.token.length;
  }
  return out;
}

/** the echoed prompt's logprobs followed by the completion's */
export function joinLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: [...a.top_logprobs, ...b.top_logprobs],
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}
