// Schema pieces shared by the chat and text completion request bodies.
import { Type, type TSchema } from "@sinclair/typebox";

/** OpenAI accepts an explicit null wherever a parameter is optional. */
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
export const Opt = <T extends TSchema>(schema: T) => Type.Optional(Nullable(schema));

/** Choices per prompt (OpenAI's limit); each is a separate engine request, those beyond the batch wait in the queue. */
export const MAX_N = 128;
/** token ids and counts stay well inside int32 for the native side */
export const MAX_INT32 = 2_147_483_647;

export const StopSchema = Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 4 })]);

/** keys are token ids as strings ("50256"), values -100 (ban) .. 100 (force) */
export const LogitBiasSchema = Type.Record(
  Type.String({ pattern: "^[0-9]{1,10}$" }),
  Type.Number({ minimum: -100, maximum: 100 }),
  // "1e2", "0x10", "", " 5" are not decimal ids, whatever Number() makes of them
  { additionalProperties: false },
);

export const StreamOptionsSchema = Type.Object({
  include_usage: Opt(Type.Boolean()),
});

/** OpenAI's metadata: up to 16 string pairs, keys up to 64 characters, values up to 512 */
export const MetadataSchema = Type.Record(Type.String(), Type.String({ maxLength: 512 }), {
  maxProperties: 16,
  propertyNames: { maxLength: 64 },
});

/** The sampling parameters both endpoints take, plus vLLM's extensions (top_k, min_p, ignore_eos). */
export const samplingProperties = {
  model: Type.String({ minLength: 1 }),
  max_tokens: Opt(Type.Integer({ minimum: 1, maximum: MAX_INT32 })),
  temperature: Opt(Type.Number({ minimum: 0, maximum: 2 })),
  top_p: Opt(Type.Number({ minimum: 0, maximum: 1 })),
  n: Opt(Type.Integer({ minimum: 1, maximum: MAX_N })),
  stop: Opt(StopSchema),
  // room for seed + choice index (each choice samples with its own derived seed)
  seed: Opt(Type.Integer({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER - 4096 })),
  presence_penalty: Opt(Type.Number({ minimum: -2, maximum: 2 })),
  frequency_penalty: Opt(Type.Number({ minimum: -2, maximum: 2 })),
  logit_bias: Opt(LogitBiasSchema),
  stream: Opt(Type.Boolean()),
  stream_options: Opt(StreamOptionsSchema),
  user: Opt(Type.String()),
  top_k: Opt(Type.Integer({ minimum: -1, maximum: MAX_INT32 })),
  min_p: Opt(Type.Number({ minimum: 0, maximum: 1 })),
  ignore_eos: Opt(Type.Boolean()),
  /** keep this completion (GET /v1/chat/completions/{id}, feedback); default true here */
  store: Opt(Type.Boolean()),
  metadata: Opt(MetadataSchema),
};
