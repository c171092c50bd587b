// Tools in a conversation, as a chat template sees them: passed as `tools` to a template that
// renders them (as transformers' apply_chat_template does), or, for one that does not, the
// generic rendering — a system message listing the functions' JSON signatures and asking for
// Hermes-style <tool_call> blocks, calls and tool results written as text. Serving and SFT
// training render the same way, so a model is trained on what it is prompted with.
import type { ChatMessage, ChatTemplate } from "./types.js";

/** OpenAI's function tool, as requests and training lines give it */
export interface ToolDefinition {
  type: "function";
  function: { name: string; description?: string | null; parameters?: Record<string, unknown> | null; strict?: boolean | null };
}

/** The generic rendering's instructions (docs/serving.md "Structured outputs and tool calls"). */
function genericToolPrompt(tools: readonly ToolDefinition[]): string {
  const lines = tools.map((t) => JSON.stringify(t.function));
  return (
    "You may call functions. Their signatures, as JSON schemas:\n<tools>\n" +
    lines.join("\n") +
    '\n</tools>\nTo call a function, answer with one <tool_call></tool_call> block per call, each holding {"name": <function name>, "arguments": <arguments object>}.'
  );
}

/** Tool turns and tool calls written as text, for a template that knows only role and content. */
function genericMessages(messages: readonly ChatMessage[], tools: readonly ToolDefinition[]): ChatMessage[] {
  const out: ChatMessage[] = messages.map((m) => {
    if (m.role === "tool") return { role: "user", content: `<tool_response>\n${m.content}\n</tool_response>` };
    if (m.tool_calls) {
      const calls = m.tool_calls.map((c) => `<tool_call>\n${JSON.stringify({ name: c.function.name, arguments: c.function.arguments })}\n</tool_call>`);
      return { role: m.role, content: [m.content, ...calls].filter((x) => x !== "").join("\n") };
    }
    return m;
  });
  const system = genericToolPrompt(tools);
  if (out[0]?.role === "system" || out[0]?.role === "developer") out[0] = { ...out[0], content: `${out[0].content}\n\n${system}` };
  else out.unshift({ role: "system", content: system });
  return out;
}

/** What to render: the messages and the `tools` the template gets (null: none, or written into the messages). */
export function withTools(
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  tools: readonly ToolDefinition[] | null,
): { messages: ChatMessage[]; tools: ToolDefinition[] | null } {
  if (!tools || tools.length === 0) return { messages: [...messages], tools: null };
  if (template.rendersTools) return { messages: [...messages], tools: [...tools] };
  return { messages: genericMessages(messages, tools), tools: null };
}
