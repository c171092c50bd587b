// Feedback as training lines (JSONL): corrections and +1-rated answers as supervised chat
// examples, preferences as DPO pairs. Read in batches, so a long export never holds the
// database connection between writes.
import type { FeedbackFilter, FeedbackRecord, FeedbackStore, StoredToolCall } from "./feedback.js";
import type { CompletionRecord, PromptMessage } from "./types.js";
import type { CompletionStore } from "./completions.js";
import type { ChatCompletionBody } from "../http/schemas/responses.js";
import type { DpoLine, DpoOutput, SftLine, TrainingFormat, TrainingMessage } from "../../engine/train/data/training-format.js";

export type ExportFilter = Pick<FeedbackFilter, "model" | "since" | "until">;

const BATCH = 256;

/** What a stored completion adds to a line: the tools it was offered and the calls a choice made. */
export interface CompletionTools {
  tools: object[] | null;
  /** the choice's `message.tool_calls` as the client got them; null: it made none */
  calls(choiceIndex: number): NonNullable<TrainingMessage["tool_calls"]> | null;
}

export type ToolsLookup = (completionId: string) => CompletionTools | null;

/** the tools a stored completion's request offered (null: none) */
export function offeredTools(c: CompletionRecord): object[] | null {
  const tools = c.request.tools;
  return Array.isArray(tools) && tools.length > 0 ? (tools as object[]) : null;
}

/** a stored chat choice's `message.tool_calls` as the client got them (null: it answered in text) */
export function choiceToolCalls(c: CompletionRecord, index: number): StoredToolCall[] | null {
  if (c.object !== "chat.completion") return null;
  return (c.response as ChatCompletionBody).choices.find((x) => x.index === index)?.message.tool_calls ?? null;
}

/** Reads tools and tool calls from the stored completions (the request and the response as sent). */
export function storedCompletionTools(completions: CompletionStore): ToolsLookup {
  return (id) => {
    const c = completions.get(id);
    if (!c) return null;
    return { tools: offeredTools(c), calls: (i) => choiceToolCalls(c, i) };
  };
}

/** The fine-tuning formats have no "developer" role; it is the newer name of "system". Tool calls keep OpenAI's form. */
export function trainingMessages(messages: readonly PromptMessage[]): TrainingMessage[] {
  return messages.map((m) => {
    const out: TrainingMessage = { role: m.role === "developer" ? "system" : m.role, content: m.content };
    if (m.name !== undefined) out.name = m.name;
    if (m.tool_calls)
      out.tool_calls = m.tool_calls.map((c) => ({
        id: c.id,
        type: "function",
        function: { name: c.function.name, arguments: typeof c.function.arguments === "string" ? c.function.arguments : JSON.stringify(c.function.arguments) },
      }));
    if (m.tool_call_id !== undefined) out.tool_call_id = m.tool_call_id;
    return out;
  });
}

export function sftLine(f: FeedbackRecord, tools: ToolsLookup = () => null): SftLine | null {
  const answer = f.type === "correction" ? f.correction : f.type === "rating" && f.rating === 1 ? f.answer : null;
  if (answer === null || f.type === "preference") return null;
  const stored = tools(f.completionId);
  // a +1 on a tool call teaches the call itself; a correction is the text that replaces it
  const calls = f.type === "rating" ? (stored?.calls(f.choiceIndex) ?? null) : null;
  const last: TrainingMessage = calls ? { role: "assistant", content: null, tool_calls: calls } : { role: "assistant", content: answer };
  const line: SftLine = { messages: [...trainingMessages(f.promptMessages), last] };
  if (stored?.tools) line.tools = stored.tools;
  return line;
}

/** OpenAI's preference line; with tools, the input carries them and an answer that called tools is its calls */
export function dpoLine(f: FeedbackRecord): DpoLine | null {
  if (f.type !== "preference") return null;
  const output = (text: string, calls: StoredToolCall[] | null): DpoOutput =>
    calls ? { role: "assistant", tool_calls: calls } : { role: "assistant", content: text };
  const input: DpoLine["input"] = { messages: trainingMessages(f.promptMessages) };
  if (f.tools) {
    input.tools = f.tools;
    if (f.parallelToolCalls !== null) input.parallel_tool_calls = f.parallelToolCalls;
  }
  return {
    input,
    preferred_output: [output(f.chosen, f.chosenToolCalls)],
    non_preferred_output: [output(f.rejected, f.rejectedToolCalls)],
  };
}

/** JSONL lines ("...\n"), oldest feedback first; `tools` finds what stored completions add (tools, tool calls). */
export function* exportLines(
  feedback: FeedbackStore,
  format: TrainingFormat,
  filter: ExportFilter & Pick<FeedbackFilter, "ownedBy" | "source" | "status"> = {},
  tools?: ToolsLookup,
): Generator<string> {
  const query: FeedbackFilter =
    format === "sft" ? { ...filter, type: ["correction", "rating"], positiveOnly: true } : { ...filter, type: "preference" };
  const toLine = format === "sft" ? (f: FeedbackRecord) => sftLine(f, tools) : dpoLine;
  let after = 0;
  for (;;) {
    const { items, next } = feedback.scan(query, after, BATCH);
    for (const f of items) {
      const line = toLine(f);
      if (line) yield `${JSON.stringify(line)}\n`;
    }
    if (items.length < BATCH) return;
    after = next;
  }
}
