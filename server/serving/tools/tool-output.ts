// A chat choice's output -> OpenAI's assistant message with `tool_calls` (non-streamed), or
// the `delta.tool_calls` fragments OpenAI streams: per call, one chunk with its index, id,
// type and name (arguments ""), then its arguments. A choice that made a call finishes with
// "tool_calls". Call ids are derived from the completion id, so a stream and the completion
// the store records from it name the same calls.
import { createHash } from "node:crypto";
import type { FinishReason, GenerationEvent } from "../../../engine/types.js";
import type { ChatChunkBody, FinishReasonBody, ToolCallBody } from "../../http/schemas/responses.js";
import type { ChoiceResult } from "../generation.js";
import { parseToolCalls, type ParsedPiece, type ParsedToolCall, type ToolCallParser } from "./tool-call-format.js";
import type { ToolPlan } from "./tool-prompt.js";

export type ChatDelta = ChatChunkBody["choices"][number]["delta"];

export interface AssistantOutput {
  content: string | null;
  tool_calls?: ToolCallBody[];
  finishReason: FinishReasonBody;
}

/** A forced call: the whole output is the call's JSON, read when it ends. */
class ForcedParser implements ToolCallParser {
  #buf = "";
  constructor(private readonly plan: ToolPlan) {}
  push(text: string): ParsedPiece[] {
    this.#buf += text;
    return [];
  }
  end(): ParsedPiece[] {
    const call = this.plan.format.parseForced(this.#buf, this.plan.known);
    // cut short (max_tokens): what was written comes back as text
    return call ? [{ call }] : this.#buf === "" ? [] : [{ content: this.#buf }];
  }
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
    return this.plan.forced ? new ForcedParser(this.plan) : this.plan.format.parser(this.plan.known);
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
    return { content, tool_calls: calls.map((c, k) => this.#body(r.index, k, c)), finishReason: "tool_calls" };
  }

  /** one choice's stream: each event -> deltas; the end -> the last deltas and the finish_reason */
  streamer(choice: number): { push(event: Extract<GenerationEvent, { type: "delta" }>): ChatDelta[]; end(reason: FinishReason): { deltas: ChatDelta[]; finishReason: FinishReasonBody } } {
    const parser = this.#parser();
    let calls = 0;
    const deltas = (pieces: ParsedPiece[]): ChatDelta[] =>
      pieces.flatMap((p): ChatDelta[] => {
        // whitespace between and after calls is not content (the whole message trims it too)
        if ("content" in p) return p.content === "" || (calls > 0 && p.content.trim() === "") ? [] : [{ content: p.content }];
        if (calls > 0 && !this.plan.parallel) return [];
        const k = calls++;
        return [
          { tool_calls: [{ index: k, id: this.callId(choice, k), type: "function", function: { name: p.call.name, arguments: "" } }] },
          { tool_calls: [{ index: k, function: { arguments: p.call.arguments } }] },
        ];
      });
    return {
      push: (event) => deltas(parser.push(this.#visible(event.text, event.tokenIds))),
      end: (reason) => {
        const last = deltas(parser.end());
        return { deltas: last, finishReason: calls > 0 ? "tool_calls" : reason };
      },
    };
  }
}
