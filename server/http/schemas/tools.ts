// Request pieces for structured output and tool calling: response_format, tools,
// tool_choice, and the tool calls an assistant turn carries in the history.
import { Type, type Static } from "@sinclair/typebox";
import { Opt } from "./common.js";

/** a JSON schema as the client sent it; which keywords we take is checked when it is compiled */
const JsonSchemaObject = Type.Record(Type.String(), Type.Unknown());

/** OpenAI: a-z, A-Z, 0-9, underscores and dashes, at most 64 */
const FunctionName = Type.String({ pattern: "^[a-zA-Z0-9_-]{1,64}$" });

export const ResponseFormatSchema = Type.Union([
  Type.Object({ type: Type.Literal("text") }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal("json_object") }, { additionalProperties: false }),
  Type.Object(
    {
      type: Type.Literal("json_schema"),
      json_schema: Type.Object(
        {
          name: FunctionName,
          description: Opt(Type.String()),
          schema: Opt(JsonSchemaObject),
          strict: Opt(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  ),
]);

export const FunctionToolSchema = Type.Object(
  {
    type: Type.Literal("function"),
    function: Type.Object(
      {
        name: FunctionName,
        description: Opt(Type.String()),
        parameters: Opt(JsonSchemaObject),
        strict: Opt(Type.Boolean()),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export const ToolChoiceSchema = Type.Union([
  Type.Literal("none"),
  Type.Literal("auto"),
  Type.Literal("required"),
  Type.Object(
    { type: Type.Literal("function"), function: Type.Object({ name: FunctionName }, { additionalProperties: false }) },
    { additionalProperties: false },
  ),
]);

/** an assistant turn's tool call, as the API returns it and clients send it back */
export const ToolCallSchema = Type.Object(
  {
    id: Type.String(),
    type: Type.Literal("function"),
    function: Type.Object({ name: Type.String(), arguments: Type.String() }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);

export type ResponseFormat = Static<typeof ResponseFormatSchema>;
export type FunctionTool = Static<typeof FunctionToolSchema>;
export type ToolChoice = Static<typeof ToolChoiceSchema>;
export type ToolCallInput = Static<typeof ToolCallSchema>;
