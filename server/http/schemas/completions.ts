// POST /v1/completions request body.
import { Type, type Static } from "@sinclair/typebox";
import { MAX_INT32, MAX_N, Opt, samplingProperties } from "./common.js";

/** prompts per request (each with n choices) */
export const MAX_PROMPTS = 64;

const TokenId = Type.Integer({ minimum: 0, maximum: MAX_INT32 });

export const PromptSchema = Type.Union([
  Type.String(),
  Type.Array(Type.String(), { minItems: 1, maxItems: MAX_PROMPTS }),
  Type.Array(TokenId, { minItems: 1 }),
  Type.Array(Type.Array(TokenId, { minItems: 1 }), { minItems: 1, maxItems: MAX_PROMPTS }),
]);

export const CompletionRequestSchema = Type.Object({
  ...samplingProperties,
  prompt: PromptSchema,
  echo: Opt(Type.Boolean()),
  /** OpenAI's legacy logprobs: how many alternatives per token, 0..5 */
  logprobs: Opt(Type.Integer({ minimum: 0, maximum: 5 })),
  best_of: Opt(Type.Integer({ minimum: 1, maximum: MAX_N })),
  suffix: Opt(Type.String()),
}, { additionalProperties: false });

export type CompletionRequest = Static<typeof CompletionRequestSchema>;
export type PromptInput = Static<typeof PromptSchema>;
