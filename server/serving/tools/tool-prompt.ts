// A chat request with tools -> what the model is prompted with and how its answer is read:
// the messages (assistant tool calls and tool results included), the tools handed to the
// chat template as transformers does, or, for a template that cannot render tools, the
// generic rendering (a system message listing them and asking for Hermes <tool_call>
// blocks); and for tool_choice "required" or a named function, the grammar that forces the
// calls (the prompt ends with the family's opener, the grammar writes each call's JSON in the
// family's syntax: one call with parallel_tool_calls false, one or more with it true, OpenAI's
// default; a named function's calls are all to that function).
import type { ChatMessage, ChatTemplate } from "../../../engine/types.js";
import type { GrammarSpec } from "../../../engine/grammar/grammars.js";
import { checkSchemaSubset, relaxSchema, UnsupportedSchemaError } from "../../../engine/grammar/schema-subset.js";
import { errors } from "../../http/errors.js";
import type { ChatMessageInput } from "../../http/schemas/chat.js";
import type { FunctionTool, ToolChoice } from "../../http/schemas/tools.js";
import { toChatMessage } from "../chat-messages.js";
import { withTools } from "../../../engine/chat-tools.js";
import { toolCallFormat, type ToolCallFormat } from "./tool-call-format.js";

export interface ToolPlan {
  format: ToolCallFormat;
  /** the function names the request declares: a call to any other is text */
  known: ReadonlySet<string>;
  /** forced: the calls, written by the grammar after `format.forcedOpener` */
  forced: GrammarSpec | null;
  /**
   * auto, for families whose calls are tagged (Hermes <tool_call> blocks): text is free, but a
   * block the model opens must hold a valid call (and with parallel_tool_calls false, nothing
   * follows the first); null for the others, which are read as written
   */
  auto: GrammarSpec | null;
  /** parallel_tool_calls false: only the first call an answer makes is returned */
  parallel: boolean;
}

export interface ChatPrompt {
  /** the conversation as the client sent it (what the store keeps) */
  history: ChatMessage[];
  /** what the template renders (with the generic rendering, tools written into them) */
  messages: ChatMessage[];
  /** for the template; null when it does not render them (or there are none) */
  tools: FunctionTool[] | null;
  /** null: no tools in play (none given, or tool_choice "none") */
  plan: ToolPlan | null;
}

/** the schema of one call to `tool` in the family's JSON: {"name": ..., "arguments"|"parameters": ...} */
function callSchema(format: ToolCallFormat, tool: FunctionTool): Record<string, unknown> {
  const params = tool.function.parameters ?? { type: "object", properties: {} };
  return {
    type: "object",
    properties: { name: { const: tool.function.name }, [format.argumentsKey]: tool.function.strict ? params : relaxSchema(params) },
    required: ["name", format.argumentsKey],
    additionalProperties: false,
  };
}

export function chatPrompt(
  body: { messages: ChatMessageInput[]; tools?: FunctionTool[] | null; tool_choice?: ToolChoice | null; parallel_tool_calls?: boolean | null },
  template: ChatTemplate,
): ChatPrompt {
  const messages = body.messages.map(toChatMessage);
  const tools = body.tools ?? [];
  const choice = body.tool_choice ?? (tools.length > 0 ? "auto" : "none");
  if (tools.length === 0) {
    if (body.tool_choice != null && choice !== "none")
      throw errors.invalidRequest("'tool_choice' is only allowed when 'tools' are specified.", "tool_choice");
    return { history: messages, messages, tools: null, plan: null };
  }
  const names = new Set<string>();
  tools.forEach((t, i) => {
    if (names.has(t.function.name)) throw errors.invalidRequest(`Duplicate function name '${t.function.name}' in 'tools'.`, `tools[${i}].function.name`);
    names.add(t.function.name);
    if (t.function.strict && t.function.parameters) {
      try {
        checkSchemaSubset(t.function.parameters);
      } catch (e) {
        if (e instanceof UnsupportedSchemaError)
          throw errors.invalidRequest(`Invalid schema for 'tools[${i}].function.parameters': ${e.message}`, `tools[${i}].function.parameters`);
        throw e;
      }
    }
  });
  if (choice === "none") return { history: messages, messages, tools: null, plan: null };

  const format = toolCallFormat(template.source, template.rendersTools);
  const parallel = body.parallel_tool_calls !== false;
  let forced: GrammarSpec | null = null;
  let auto: GrammarSpec | null = null;
  if (choice === "auto" && format.tagged) {
    const schemas = tools.map((t) => callSchema(format, t));
    const [open, close] = format.tagged;
    auto = { kind: "tagged_json", trigger: open, begin: `${open}\n`, end: `\n${close}`, schema: schemas.length === 1 ? schemas[0] : { anyOf: schemas }, once: !parallel };
  }
  if (choice !== "auto") {
    let allowed = tools;
    if (typeof choice === "object") {
      allowed = tools.filter((t) => t.function.name === choice.function.name);
      if (allowed.length === 0)
        throw errors.invalidRequest(`'tool_choice' names the function '${choice.function.name}', which is not in 'tools'.`, "tool_choice.function.name");
    }
    const schemas = allowed.map((t) => callSchema(format, t));
    forced = {
      kind: "json_sequence",
      schema: schemas.length === 1 ? schemas[0] : { anyOf: schemas },
      separator: format.forcedSeparator,
      end: format.forcedEnd,
      multiple: parallel,
    };
  }
  const plan: ToolPlan = { format, known: names, forced, auto, parallel };
  const rendered = withTools(template, messages, tools);
  return { history: messages, messages: rendered.messages, tools: rendered.tools as FunctionTool[] | null, plan };
}
