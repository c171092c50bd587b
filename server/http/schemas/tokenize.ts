// POST /tokenize and POST /detokenize request bodies, as vLLM's server takes them.
import { Type, type Static } from "@sinclair/typebox";
import { MAX_INT32, Opt } from "./common.js";
import { ChatMessageSchema } from "./chat.js";
import { FunctionToolSchema } from "./tools.js";

const common = {
  model: Type.String({ minLength: 1 }),
  /** default: true for a prompt (BOS as the tokenizer wants), false for messages (the template writes it) */
  add_special_tokens: Opt(Type.Boolean()),
  /** each token's text too (vLLM's `token_strs`) */
  return_token_strs: Opt(Type.Boolean()),
};

export const TokenizeRequestSchema = Type.Union([
  Type.Object({ ...common, prompt: Type.String() }, { additionalProperties: false }),
  Type.Object(
    {
      ...common,
      messages: Type.Array(ChatMessageSchema, { minItems: 1 }),
      add_generation_prompt: Opt(Type.Boolean()),
      tools: Opt(Type.Array(FunctionToolSchema)),
    },
    { additionalProperties: false },
  ),
]);

export const DetokenizeRequestSchema = Type.Object(
  { model: Type.String({ minLength: 1 }), tokens: Type.Array(Type.Integer({ minimum: 0, maximum: MAX_INT32 })) },
  { additionalProperties: false },
);

export type TokenizeRequest = Static<typeof TokenizeRequestSchema>;
export type DetokenizeRequest = Static<typeof DetokenizeRequestSchema>;
