// What becomes of every request field the chat and text completion schemas declare: handled,
// accepted and ignored (with the reason, also in docs/serving.md "Request fields"), or refused by
// name with code `unsupported_parameter`. The tables are typed by the schemas, so a field
// added to a schema without a decision here does not compile; a field in no schema is
// refused by the schema itself (additionalProperties: false).
import { errors } from "../errors.js";
import type { ChatCompletionRequest } from "./chat.js";
import type { CompletionRequest } from "./completions.js";

export type Disposition =
  | { kind: "handled" }
  | { kind: "ignored"; why: string }
  /** refused when present and not null, unless `accepts` says the value asks for nothing we lack */
  | { kind: "refused"; why: string; accepts?: (value: unknown, body: Record<string, unknown>) => boolean };

const handled: Disposition = { kind: "handled" };
const ignored = (why: string): Disposition => ({ kind: "ignored", why });
const refused = (why: string, accepts?: (value: unknown, body: Record<string, unknown>) => boolean): Disposition => ({
  kind: "refused",
  why,
  ...(accepts ? { accepts } : {}),
});

/** fields both endpoints share (server/http/schemas/common.ts samplingProperties) */
const sampling = {
  model: handled,
  max_tokens: handled,
  temperature: handled,
  top_p: handled,
  n: handled,
  stop: handled,
  seed: handled,
  presence_penalty: handled,
  frequency_penalty: handled,
  logit_bias: handled,
  stream: handled,
  stream_options: handled,
  user: ignored("an end-user id for the provider's abuse monitoring; requests are not monitored here"),
  top_k: handled,
  min_p: handled,
  ignore_eos: handled,
  store: handled,
  metadata: handled,
} as const;

export const CHAT_PARAMETERS: Record<keyof ChatCompletionRequest, Disposition> = {
  ...sampling,
  messages: handled,
  max_completion_tokens: handled,
  logprobs: handled,
  top_logprobs: handled,
  response_format: handled,
  tools: handled,
  tool_choice: handled,
  parallel_tool_calls: handled,
  service_tier: ignored("one engine serves every request; there is no other tier to choose"),
  safety_identifier: ignored("like `user`: an id for abuse monitoring, which this server does not do"),
  prompt_cache_key: ignored("prefix caching is not keyed by the client here"),
  prompt_cache_retention: ignored("prefix caching is not keyed by the client here"),
  functions: refused("the deprecated 'functions' is not supported; send 'tools' instead"),
  function_call: refused("the deprecated 'function_call' is not supported; send 'tool_choice' instead"),
  audio: refused("audio output is not supported"),
  modalities: refused("only text output is supported", (v) => Array.isArray(v) && v.every((m) => m === "text")),
  prediction: refused("predicted outputs are not supported"),
  reasoning_effort: refused("the served models do not take a reasoning effort"),
  verbosity: refused("the served models do not take a verbosity"),
  web_search_options: refused("web search is not supported"),
};

export const COMPLETION_PARAMETERS: Record<keyof CompletionRequest, Disposition> = {
  ...sampling,
  prompt: handled,
  echo: handled,
  logprobs: handled,
  best_of: refused("'best_of' is not supported; leave it out or set it equal to 'n'", (v, body) => v === (body.n ?? 1)),
  suffix: refused("'suffix' (fill-in-the-middle) is not supported by this model", (v) => v === ""),
};

/** Throws the 400 for the first refused field the body sets. */
export function refuseUnsupported(body: object, table: Record<string, Disposition>): void {
  const fields = body as Record<string, unknown>;
  for (const [name, d] of Object.entries(table)) {
    if (d.kind !== "refused") continue;
    const value = fields[name];
    if (value === undefined || value === null || d.accepts?.(value, fields)) continue;
    throw errors.invalidRequest(`Unsupported parameter: ${d.why}.`, name, "unsupported_parameter");
  }
}

/** The checks every completion request gets before any work: refused fields, stream_options, size. */
export function checkRequest(
  body: { stream?: boolean | null; stream_options?: object | null },
  table: Record<string, Disposition>,
): void {
  refuseUnsupported(body, table);
  // as vLLM answers: options for a stream that is not asked for are a mistake, not a no-op
  if (body.stream_options != null && body.stream !== true)
    throw errors.invalidRequest("'stream_options' is only allowed when 'stream' is true.", "stream_options");
}

/**
 * A request needs one engine request per choice (n × prompts), all queued at once: more than
 * the queue can ever hold is a 400, since a 429 would be retried forever.
 */
export function checkChoiceCount(choices: number, maxQueue: number, param: string): void {
  if (choices > maxQueue)
    throw errors.invalidRequest(
      `This request needs ${choices} generations (n × prompts), more than this server can ever queue (${maxQueue}); send fewer choices or prompts per request.`,
      param,
    );
}
