// POST /v1/chat/completions request body.
import { Type, type Static } from "@sinclair/typebox";
import { MAX_INT32, Opt, samplingProperties } from "./common.js";

export const TextPartSchema = Type.Object({
  type: Type.Literal("text"),
  text: Type.String(),
});

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
});

export const ChatCompletionRequestSchema = Type.Object({
  ...samplingProperties,
  messages: Type.Array(ChatMessageSchema, { minItems: 1 }),
  max_completion_tokens: Opt(Type.Integer({ minimum: 1, maximum: MAX_INT32 })),
  logprobs: Opt(Type.Boolean()),
  top_logprobs: Opt(Type.Integer({ minimum: 0, maximum: 20 })),
});

export type ChatCompletionRequest = Static<typeof ChatCompletionRequestSchema>;
export type ChatMessageInput = Static<typeof ChatMessageSchema>;
