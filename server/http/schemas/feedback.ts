// POST /v1/feedback request body. One object with every field a feedback form may use;
// which form a body is (rating, correction, one of three preference forms) is decided by
// the fields it carries (server/http/feedback-forms.ts), so a wrong mix gets a precise error
// instead of a union's "matches none of the branches".
import { Type, type Static } from "@sinclair/typebox";
import { ChatMessageSchema } from "./chat.js";
import { Opt } from "./common.js";
import { FeedbackTypeSchema } from "./store-queries.js";

const Id = Type.String({ minLength: 1, maxLength: 256 });
const Index = Type.Integer({ minimum: 0, maximum: 1_000_000 });
const Text = Type.String({ maxLength: 1_000_000 });

export const FeedbackRequestSchema = Type.Object(
  {
    /** optional: the form is known from the fields; when given it must agree */
    type: Type.Optional(FeedbackTypeSchema),
    completion_id: Type.Optional(Id),
    choice_index: Opt(Index),
    rating: Type.Optional(Type.Union([Type.Literal(1), Type.Literal(-1)])),
    comment: Opt(Type.String({ maxLength: 10_000 })),
    correction: Type.Optional(Text),
    chosen_id: Type.Optional(Id),
    rejected_id: Type.Optional(Id),
    chosen_index: Type.Optional(Index),
    rejected_index: Type.Optional(Index),
    /** text preference: a user turn, or a whole conversation */
    prompt: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(ChatMessageSchema, { minItems: 1 })])),
    chosen: Type.Optional(Text),
    rejected: Type.Optional(Text),
  },
  { additionalProperties: false },
);

export type FeedbackRequest = Static<typeof FeedbackRequestSchema>;
