// A chat choice's output -> OpenAI's assistant message with `tool_calls` (non-streamed), or
// the `delta.tool_calls` fragments OpenAI streams: per call, one chunk with its index, id,
// type and name (arguments "") once the name is known, then its arguments in fragments as the
// model writes them. A choice that made a call finishes with "tool_calls" (or "length" when
// max_tokens cut it, as OpenAI says it). A stream cannot
// take back a call it has begun: when what followed its name turns out not to be a call (an
// answer cut short by max_tokens, JSON that breaks under `auto`), the stream ends with the
// fragments sent and the generation's own finish_reason, where the whole answer has it as text. Call ids are derived from the completion id, so a stream and the completion
// the store records from it name the same calls.
import { createHash } from "node:crypto";
import type { FinishReason, GenerationEvent } from "../../../engine/types.js";
import type { ChatChunkBody, FinishReasonBody, ToolCallBody } from "../../http/schemas/responses.js";
import type { ChoiceResult } from "../generation.js";
import { forcedParser, parseToolCalls, type ParsedPiece, type ParsedToolCall, type ToolCallParser } from "./tool-call-format.js";
import type { ToolPlan } from "./tool-prompt.js";

export type ChatDelta = ChatChunkBody["choices"][number]["delta"];

export interface AssistantOutput {
  content: string | null;
  tool_calls?: ToolCallBody[];
  finishReason: FinishReasonBody;
}

export class ToolOutput {
  constructor(
    private readonly plan: ToolPlan,
    private readonly completionId: string,
    /** the id of the family's special marker token (Mistral's [TOOL_CALLS]); null: none */
    private readonly markerId: number | null,
  ) {}

  callId(choice: number, k: number): string {
    const h = createHash("sha256").update(`${this.completionId}:${choice}:${k}`).digest("base64url").replace(/[-_]/g, "");
    // Mistral's templates accept only 9 alphanumerics as an id
    return this.plan.format.family === "mistral" ? h.slice(0, 9) : `call_${h.slice(0, 24)}`;
  }

  #parser(): ToolCallParser {
    return this.plan.forced ? forcedParser(this.plan.format, this.plan.known) : this.plan.format.parser(this.plan.known);
  }

  /** the text with the special marker put back where its token was generated (specials are not in the text) */
  #visible(text: string, tokenIds: readonly number[]): string {
    const marker = this.plan.format.specialMarker;
    return marker !== null && this.markerId !== null && tokenIds.includes(this.markerId) ? marker + text : text;
  }

  #body(choice: number, k: number, call: ParsedToolCall): ToolCallBody {
    return { id: this.callId(choice, k), type: "function", function: { name: call.name, arguments: call.arguments } };
  }

  /** a whole choice -> the message's content and tool calls */
  message(r: ChoiceResult): AssistantOutput {
    const parsed = parseToolCalls(this.#parser(), this.#visible(r.text, r.tokenIds.slice(0, 1)));
    const { content } = parsed;
    const calls = this.plan.parallel ? parsed.calls : parsed.calls.slice(0, 1);
    if (calls.length === 0) return { content: content ?? "", finishReason: r.finishReason };
    return {
      // a forced answer is calls only: text after them is a call cut short
      content: this.plan.forced ? null : content,
      tool_calls: calls.map((c, k) => this.#body(r.index, k, c)),
      // cut short by max_tokens: "length", as OpenAI says it, whatever calls came before
      finishReason: r.finishReason === "length" ? "length" : "tool_calls",
    };
  }

  /** one choice's stream: each event -> deltas; the end -> the last deltas and the finish_reason */
  streamer(choice: number): { push(event: Extract<GenerationEvent, { type: "delta" }>): ChatDelta[]; end(reason: FinishReason): { deltas: ChatDelta[]; finishReason: FinishReasonBody } } {
    const parser = this.#parser();
    const parallel = this.plan.parallel;
    /** calls sent (their headers) */
    let calls = 0;
    /** calls the parser opened and has not resolved yet, in order; index -1: not sent (parallel_tool_calls false) */
    const pending: { index: number; sent: number }[] = [];
    let broken = false;
    const header = (k: number, name: string): ChatDelta => ({ tool_calls: [{ index: k, id: this.callId(choice, k), type: "function", function: { name, arguments: "" } }] });
    const fragment = (k: number, args: string): ChatDelta[] => (args === "" ? [] : [{ tool_calls: [{ index: k, function: { arguments: args } }] }]);
    const next = (): number => (calls > 0 && !parallel ? -1 : calls++);
    const deltas = (pieces: ParsedPiece[]): ChatDelta[] =>
      pieces.flatMap((p): ChatDelta[] => {
        if ("open" in p) {
          const k = next();
          pending.push({ index: k, sent: 0 });
          return k < 0 ? [] : [header(k, p.open)];
        }
        if ("args" in p) {
          const last = pending[pending.length - 1];
          if (!last || last.index < 0) return [];
          last.sent += p.args.length;
          return fragment(last.index, p.args);
        }
        if ("call" in p) {
          const opened = pending.shift();
          if (opened) return opened.index < 0 ? [] : fragment(opened.index, p.call.arguments.slice(opened.sent));
          const k = next();
          return k < 0 ? [] : [header(k, p.call.name), ...fragment(k, p.call.arguments)];
        }
        if (pending.length > 0) {
          // what was opened is not a call after all: its text is dropped, the stream ends as it ended
          pending.length = 0;
          broken = true;
          return [];
        }
        // whitespace between and after calls is not content (the whole message trims it too)
        return p.content === "" || (calls > 0 && p.content.trim() === "") ? [] : [{ content: p.content }];
      });
    return {
      push: (event) => deltas(parser.push(this.#visible(event.text, event.tokenIds))),
      end: (reason) => {
        const last = deltas(parser.end());
        return { deltas: last, finishReason: calls > 0 && !broken && reason !== "length" ? "tool_calls" : reason };
      },
    };
  }
}
