// Preference data: JSONL pairs of answers to one prompt, the first preferred over the second,
// in two formats, validated in full before training (every bad line with its number):
//   {"prompt":"…","chosen":"…","rejected":"…"}                          plain text, no template
//   {"input":{"messages":[…],"tools":[…]?,"parallel_tool_calls":…?},
//    "preferred_output":[{"role":"assistant","content":"…"} or {"role":"assistant","tool_calls":[…]}],
//    "non_preferred_output":[…]}                                        OpenAI's DPO lines
// Each answer is encoded as its own sequence, prompt + answer (+ EOS), the answer tokens
// masked as learned, exactly as SFT encodes a completion or a final assistant message: with
// tools, rendered as serving renders them (the template's `tools`, or the generic rendering),
// an answer that calls tools as the assistant turn the template writes for its calls.
import { existsSync, readFileSync } from "node:fs";
import { parseMessage, parseTools, SftDataError, type SftExample, type TrainMessage } from "./sft-data.js";
import type { ToolDefinition } from "../../chat-tools.js";
import type { LineError } from "./jsonl.js";
import { eachJsonlObject, describeJson } from "./jsonl.js";
import { trainingLineError, type DpoLine } from "./training-format.js";
import { encodeExample, type EncodeContext, type EncodedExample, type EncodeStats } from "./sft-encode.js";

export type PreferencePrompt = { kind: "text"; text: string } | { kind: "chat"; messages: TrainMessage[]; tools?: ToolDefinition[] };

/** an answer: text, or (OpenAI DPO lines) the assistant message, which may call tools */
export type PreferenceAnswer = string | TrainMessage;

export interface PreferenceExample {
  line: number;
  prompt: PreferencePrompt;
  chosen: PreferenceAnswer;
  rejected: PreferenceAnswer;
}

/** Both answers of a pair as packed-ready sequences (tokens + learned-token masks). */
export interface EncodedPair {
  line: number;
  chosen: EncodedExample;
  rejected: EncodedExample;
}

const PREFERENCE_FORMATS =
  `Each line must be one JSON object: {"prompt":"…","chosen":"…","rejected":"…"} or ` +
  `{"input":{"messages":[{"role":"user","content":"…"}]},"preferred_output":[{"role":"assistant","content":"…"}],"non_preferred_output":[{"role":"assistant","content":"…"}]}.`;

/** Thrown when a preference file has bad lines; `errors` lists every one of them. */
export class PreferenceDataError extends SftDataError {
  constructor(file: string, errors: LineError[]) {
    super(file, errors, PREFERENCE_FORMATS);
    this.name = "PreferenceDataError";
  }
}

function parseTextPair(o: Record<string, unknown>): Omit<PreferenceExample, "line"> {
  for (const k of Object.keys(o)) if (k !== "prompt" && k !== "chosen" && k !== "rejected") throw new Error(`unknown key "${k}" (a text preference has only "prompt", "chosen" and "rejected")`);
  for (const k of ["prompt", "chosen", "rejected"] as const) if (typeof o[k] !== "string") throw new Error(`"${k}" must be a string, got ${describeJson(o[k])}`);
  return { prompt: { kind: "text", text: o.prompt as string }, chosen: o.chosen as string, rejected: o.rejected as string };
}

function parseDpoLine(o: Record<string, unknown>): Omit<PreferenceExample, "line"> {
  const err = trainingLineError("dpo", o);
  if (err) throw new Error(err);
  const d = o as unknown as DpoLine;
  // earlier assistant turns are context: weight 0 keeps them out of the learned tokens
  const messages: TrainMessage[] = d.input.messages.map((m, i) => {
    const msg = parseMessage({ ...m, weight: undefined }, `input.messages[${i}]`);
    return msg.role === "assistant" ? { ...msg, weight: 0 } : msg;
  });
  const prompt: PreferencePrompt = { kind: "chat", messages, ...(d.input.tools !== undefined ? { tools: parseTools(d.input.tools) } : {}) };
  return { prompt, chosen: parseMessage(d.preferred_output[0], "preferred_output[0]"), rejected: parseMessage(d.non_preferred_output[0], "non_preferred_output[0]") };
}

/** an answer's text, or for one that calls tools its calls (ids aside), as compared for "nothing to prefer" */
const answerKey = (a: PreferenceAnswer): string =>
  typeof a === "string" ? a : JSON.stringify({ content: a.content, calls: a.tool_calls?.map((c) => [c.function.name, c.function.arguments]) ?? null });

/** One preference line's parser, remembering the file's format (text or OpenAI DPO) from the lines before. */
export function preferenceLineParser(): (o: Record<string, unknown>, line: number) => PreferenceExample {
  let format: PreferencePrompt["kind"] | null = null;
  return (o, line) => {
    const kind: PreferencePrompt["kind"] | null = "input" in o || "preferred_output" in o ? "chat" : "prompt" in o || "chosen" in o ? "text" : null;
    if (kind === null) throw new Error(`neither "prompt"/"chosen"/"rejected" nor "input"/"preferred_output"/"non_preferred_output" (keys: ${Object.keys(o).join(", ") || "none"})`);
    if (format !== null && kind !== format) throw new Error(`a ${kind === "chat" ? "chat (OpenAI DPO)" : "text"} preference in a file of ${format === "chat" ? "chat (OpenAI DPO)" : "text"} preferences (use one format per file)`);
    const ex = kind === "chat" ? parseDpoLine(o) : parseTextPair(o);
    if (ex.chosen === "") throw new Error(`the preferred answer is empty`);
    if (ex.rejected === "") throw new Error(`the rejected answer is empty`);
    if (answerKey(ex.chosen) === answerKey(ex.rejected)) throw new Error(`the preferred and rejected answers are the same text (nothing to prefer)`);
    format = kind;
    return { line, ...ex };
  };
}

/** Parses preference JSONL; blank lines skipped, one format per file. Throws PreferenceDataError listing every bad line. */
export function parsePreferenceJsonl(text: string, file = "data"): PreferenceExample[] {
  const out: PreferenceExample[] = [];
  const parse = preferenceLineParser();
  const errors = eachJsonlObject(text, (o, line) => out.push(parse(o, line)));
  if (out.length === 0 && errors.length === 0) errors.push({ line: 0, reason: "the file holds no preference pairs" });
  if (errors.length > 0) throw new PreferenceDataError(file, errors);
  return out;
}

export function readPreferenceJsonl(file: string): PreferenceExample[] {
  if (!existsSync(file)) throw new PreferenceDataError(file, [{ line: 0, reason: "no such file" }]);
  return parsePreferenceJsonl(readFileSync(file, "utf8"), file);
}

/** One answer of a pair as the SFT example it encodes like. */
function answerExample(p: PreferenceExample, answer: PreferenceAnswer): SftExample {
  if (p.prompt.kind === "text") return { kind: "completion", line: p.line, prompt: p.prompt.text, completion: typeof answer === "string" ? answer : answer.content };
  const last: TrainMessage = typeof answer === "string" ? { role: "assistant", content: answer } : { ...answer, weight: 1 };
  return { kind: "chat", line: p.line, messages: [...p.prompt.messages, last], ...(p.prompt.tools ? { tools: p.prompt.tools } : {}) };
}

/**
 * Encodes every pair. A pair whose answers truncation leaves without a learned token is
 * dropped (counted); a prompt the template cannot mask is a bad line (returned).
 */
export function encodePairs(ctx: EncodeContext, pairs: readonly PreferenceExample[]): { encoded: EncodedPair[]; stats: EncodeStats; errors: LineError[] } {
  const encoded: EncodedPair[] = [];
  const errors: LineError[] = [];
  const stats: EncodeStats = { examples: 0, truncated: 0, dropped: 0, tokens: 0, lossTokens: 0 };
  for (const p of pairs) {
    let c: ReturnType<typeof encodeExample>, r: ReturnType<typeof encodeExample>;
    try {
      c = encodeExample(ctx, answerExample(p, p.chosen));
      r = encodeExample(ctx, answerExample(p, p.rejected));
    } catch (e) {
      errors.push({ line: p.line, reason: (e as Error).message });
      continue;
    }
    if (c === null || r === null) {
      stats.dropped++;
      continue;
    }
    if (c.truncated || r.truncated) stats.truncated++;
    encoded.push({ line: p.line, chosen: c.example, rejected: r.example });
    stats.examples++;
    for (const ex of [c.example, r.example]) {
      stats.tokens += ex.tokens.length;
      for (const m of ex.mask) stats.lossTokens += m;
    }
  }
  return { encoded, stats, errors };
}

/** The sequences of some pairs in batch order: chosen₀, rejected₀, chosen₁, rejected₁, … */
export function pairSequences(pairs: readonly EncodedPair[], indices: readonly number[]): EncodedExample[] {
  return indices.flatMap((i) => [pairs[i].chosen, pairs[i].rejected]);
}
