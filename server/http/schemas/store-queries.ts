// Query strings and path params of the stored-completions and feedback routes. Query
// values arrive as strings; these routes validate them with type coercion on
// (server/http/query-validation.ts), so `limit=5` is the integer 5 and `limit=x` a clear 400.
import { Type, type Static, type TObject, type TProperties } from "@sinclair/typebox";

/** OpenAI's list pages: 1..100 items, 20 unless asked */
export const DEFAULT_LIMIT = 20;
const Limit = Type.Integer({ minimum: 1, maximum: 100 });
const Order = Type.Union([Type.Literal("asc"), Type.Literal("desc")]);
const UnixSeconds = Type.Integer({ minimum: 0 });

/** Unknown query parameters are errors, except the listed patterns (metadata[key]). */
const Query = <P extends TProperties>(props: P, patternProperties: Record<string, unknown> = {}): TObject<P> =>
  Type.Object(props, { additionalProperties: false, patternProperties });

export const IdParamsSchema = Type.Object({ id: Type.String({ minLength: 1 }) });

export const ListCompletionsQuerySchema = Query(
  {
    after: Type.Optional(Type.String()),
    limit: Type.Optional(Limit),
    order: Type.Optional(Order),
    model: Type.Optional(Type.String()),
  },
  // metadata[key]=value, as OpenAI's list takes it
  { "^metadata\\[[^\\]]+\\]$": { type: "string" } },
);

export const ListMessagesQuerySchema = Query({
  after: Type.Optional(Type.String()),
  limit: Type.Optional(Limit),
  order: Type.Optional(Order),
});

export const FeedbackTypeSchema = Type.Union([Type.Literal("rating"), Type.Literal("preference"), Type.Literal("correction")]);

export const FeedbackSourceSchema = Type.Union([Type.Literal("rating"), Type.Literal("pairwise"), Type.Literal("text")]);
export const FeedbackStatusSchema = Type.Union([Type.Literal("pending"), Type.Literal("approved"), Type.Literal("rejected")]);

export const ListFeedbackQuerySchema = Query({
  type: Type.Optional(FeedbackTypeSchema),
  source: Type.Optional(FeedbackSourceSchema),
  /** status=pending: what waits for an admin's review */
  status: Type.Optional(FeedbackStatusSchema),
  completion_id: Type.Optional(Type.String()),
  model: Type.Optional(Type.String()),
  after: Type.Optional(Type.String()),
  limit: Type.Optional(Limit),
  order: Type.Optional(Order),
  since: Type.Optional(UnixSeconds),
  until: Type.Optional(UnixSeconds),
});

export const ExportQuerySchema = Query({
  format: Type.Union([Type.Literal("sft"), Type.Literal("dpo")]),
  model: Type.Optional(Type.String()),
  since: Type.Optional(UnixSeconds),
  until: Type.Optional(UnixSeconds),
});

export type ListCompletionsQuery = Static<typeof ListCompletionsQuerySchema>;
export type ListFeedbackQuery = Static<typeof ListFeedbackQuerySchema>;

/** metadata[key]=value pairs of a list query */
export function metadataFilter(query: Record<string, unknown>): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(query)) {
    const m = /^metadata\[([^\]]+)\]$/.exec(k);
    if (m && typeof v === "string") out[m[1]!] = v;
  }
  return Object.keys(out).length ? out : undefined;
}
