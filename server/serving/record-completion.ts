// Completion routes -> the store: whether this request is kept (server --no-store, request
// `store: false`), and the record of a finished one. Called before the response's last
// byte leaves, so an answered completion is already on disk.
import { performance } from "node:perf_hooks";
import type { ChoiceResult } from "./generation.js";
import type { ChatCompletionBody, CompletionBody } from "../http/schemas/responses.js";
import type { ServedVariant } from "./serving.js";
import type { Store } from "../store/store.js";
import type { CompletionObject, Owner, PromptMessage } from "../store/types.js";

/** The store to keep this request in, or null when it is not kept. */
function storeFor(store: Store | null, body: { store?: boolean | null }): Store | null {
  return store !== null && body.store !== false ? store : null;
}

/**
 * `build` (the choices -> the response object) that also stores the response first, when
 * the server keeps completions and the request did not say `store: false`.
 */
export function completionRecorder<R extends ChatCompletionBody | CompletionBody>(
  serverStore: Store | null,
  origin: CompletionOrigin,
  build: (results: readonly ChoiceResult[]) => R,
): (results: ChoiceResult[]) => R {
  const store = storeFor(serverStore, origin.request);
  return (results) => {
    const response = build(results);
    if (store) recordCompletion(store, origin, results, response);
    return response;
  };
}

export interface CompletionOrigin {
  id: string;
  object: CompletionObject;
  created: number;
  variant: ServedVariant;
  /** the validated body */
  request: { metadata?: Record<string, string> | null; store?: boolean | null; stream?: boolean | null };
  promptMessages: PromptMessage[] | null;
  /** performance.now() when the handler started */
  startedMs: number;
  /** the key id that asked (null: a server without keys) */
  owner: Owner;
}

function recordCompletion(
  store: Store,
  o: CompletionOrigin,
  results: readonly ChoiceResult[],
  response: ChatCompletionBody | CompletionBody,
): void {
  const timings = results.map((r) => r.timings).filter((t) => t !== null);
  store.completions.insert({
    id: o.id,
    object: o.object,
    created: o.created,
    model: o.variant.id,
    adapter: o.variant.adapter,
    systemFingerprint: o.variant.fingerprint,
    request: o.request as Record<string, unknown>,
    promptMessages: o.promptMessages,
    choices: results.map((r) => ({ index: r.index, text: r.text, finishReason: r.finishReason })),
    // text completions with several prompts: the prompts' tokens add up
    promptTokens: response.usage?.prompt_tokens ?? 0,
    completionTokens: results.reduce((s, r) => s + r.completionTokens, 0),
    timings: {
      queuedMs: Math.max(0, ...timings.map((t) => t.queuedMs)),
      ttftMs: timings.length ? Math.min(...timings.map((t) => t.firstTokenMs)) : 0,
      totalMs: performance.now() - o.startedMs,
    },
    streamed: o.request.stream === true,
    metadata: o.request.metadata ?? {},
    owner: o.owner,
    response,
  });
}
