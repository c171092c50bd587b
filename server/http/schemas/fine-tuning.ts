// Request bodies and queries of the files and fine-tuning routes (OpenAI's shapes, plus
// `feedback_filter` for training_file "feedback").
import { Type, type Static } from "@sinclair/typebox";
import { Opt } from "./common.js";

// a string names another model (ppo's reward_model); each method checks its own keys
const HyperValue = Type.Union([Type.Literal("auto"), Type.Number(), Type.String({ minLength: 1, maxLength: 256 })]);
const MethodParams = Type.Object({ hyperparameters: Opt(Type.Record(Type.String(), HyperValue)) }, { additionalProperties: true });

export const CreateJobSchema = Type.Object(
  {
    model: Type.String({ minLength: 1 }),
    /** a file id, or "feedback": what was collected through POST /v1/feedback */
    training_file: Type.String({ minLength: 1 }),
    validation_file: Opt(Type.String({ minLength: 1 })),
    // ':' separates the parts of the fine-tuned model id
    suffix: Opt(Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9._-]+$" })),
    seed: Opt(Type.Integer({ minimum: 0, maximum: 2147483647 })),
    method: Opt(
      Type.Object(
        {
          type: Type.String({ minLength: 1 }),
          supervised: Opt(MethodParams),
          dpo: Opt(MethodParams),
          /** extension: a reward model (kept as the job's checkpoints) */
          reward_model: Opt(MethodParams),
          /** extension: PPO against a reward model (DeepSpeed-Chat step 3) */
          ppo: Opt(MethodParams),
          reinforcement: Opt(MethodParams),
        },
        { additionalProperties: false },
      ),
    ),
    /** the legacy top-level form (supervised) */
    hyperparameters: Opt(Type.Record(Type.String(), HyperValue)),
    /** extension: which feedback `training_file: "feedback"` takes */
    feedback_filter: Opt(
      Type.Object(
        {
          model: Type.Optional(Type.String()),
          since: Type.Optional(Type.Integer({ minimum: 0 })),
          until: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
    ),
    metadata: Opt(Type.Record(Type.String(), Type.String())),
    integrations: Opt(Type.Array(Type.Unknown())),
  },
  { additionalProperties: false },
);
export type CreateJobRequest = Static<typeof CreateJobSchema>;

const Limit = Type.Integer({ minimum: 1, maximum: 100 });

export const ListQuerySchema = Type.Object(
  { after: Type.Optional(Type.String()), limit: Type.Optional(Limit), metadata: Type.Optional(Type.Unknown()) },
  { additionalProperties: false },
);

export const ListFilesQuerySchema = Type.Object(
  {
    after: Type.Optional(Type.String()),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })),
    order: Type.Optional(Type.Union([Type.Literal("asc"), Type.Literal("desc")])),
    purpose: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
