// POST /v1/chat/completions request body. Every field OpenAI defines is declared here, and
// server/http/schemas/parameters.ts says what becomes of each one; a field declared nowhere
// is refused by name (unsupported_parameter).
import { Type, type Static } from "@sinclair/typebox";
import { MAX_INT32, Opt, samplingProperties } from "./common.js";
import { FunctionToolSchema, ResponseFormatSchema, ToolCallSchema, ToolChoiceSchema } from "./tools.js";

export const TextPartSchema = Type.Object({
  type: Type.Literal("text"),
  text: Type.String(),
}, { additionalProperties: false });

export const ChatMessageSchema = Type.Object({
  role: Type.Union([
    Type.Literal("system"),
    Type.Literal("developer"),
    Type.Literal("user"),
    Type.Literal("assistant"),
    Type.Literal("tool"),
  ]),
  // null is allowed for assistant turns that only carried tool calls
  content: Opt(Type.Union([Type.String(), Type.Array(TextPartSchema)])),
  name: Opt(Type.String()),
  /** assistant turns: the calls it made */
  tool_calls: Opt(Type.Array(ToolCallSchema)),
  /** tool turns: which call this is the result of */
  tool_call_id: Opt(Type.String()),
  /** assistant turns as the API returned them (always null here); kept out of the prompt */
  refusal: Opt(Type.String()),
  /** assistant turns sent back as an API returned them: output-only citations, not prompt text */
  annotations: Opt(Type.Array(Type.Unknown())),
}, { additionalProperties: false });

/** OpenAI fields this server does not implement: declared so they are refused by name */
const notImplemented = Opt(Type.Unknown());

export const ChatCompletionRequestSchema = Type.Object({
  ...samplingProperties,
  messages: Type.Array(ChatMessageSchema, { minItems: 1 }),
  max_completion_tokens: Opt(Type.Integer({ minimum: 1, maximum: MAX_INT32 })),
  logprobs: Opt(Type.Boolean()),
  top_logprobs: Opt(Type.Integer({ minimum: 0, maximum: 20 })),
  response_format: Opt(ResponseFormatSchema),
  tools: Opt(Type.Array(FunctionToolSchema, { maxItems: 128 })),
  tool_choice: Opt(ToolChoiceSchema),
  parallel_tool_calls: Opt(Type.Boolean()),
  // accepted and ignored (docs/serving.md: "Request fields")
  service_tier: Opt(Type.String()),
  safety_identifier: Opt(Type.String()),
  prompt_cache_key: Opt(Type.String()),
  prompt_cache_retention: Opt(Type.String()),
  // refused unless null (or, for modalities, text only)
  functions: notImplemented,
  function_call: notImplemented,
  audio: notImplemented,
  modalities: notImplemented,
  prediction: notImplemented,
  reasoning_effort: notImplemented,
  verbosity: notImplemented,
  web_search_options: notImplemented,
}, { additionalProperties: false });

export type ChatCompletionRequest = Static<typeof ChatCompletionRequestSchema>;
export type ChatMessageInput = Static<typeof ChatMessageSchema>;
