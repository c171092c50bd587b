// SFT examples -> token ids and a loss mask.
//
// Tokens come from tokenizing whole rendered prefixes, not segments one by one: tokenizers with
// a Prepend("▁") normalizer (Llama/SentencePiece style, stories260K) give a segment encoded
// alone an extra leading "▁", which differs from what serving tokenizes. The mask boundary of a
// segment is where the tokens of the text up to it stop agreeing with the tokens of the whole
// text (the longest common prefix), so masks align with exactly the tokens the model sees.
import type { ChatTemplate, Tokenizer } from "../../types.js";
import { withTools, type ToolDefinition } from "../../chat-tools.js";
import type { SftExample, TrainMessage } from "./sft-data.js";
import type { LineError } from "./jsonl.js";

export interface EncodedExample {
  /** the data file line it came from (0 when built in code) */
  line: number;
  tokens: Int32Array;
  /** per token: 1 when the model learns to predict it (from the previous position) */
  mask: Uint8Array;
}

export interface EncodeStats {
  examples: number;
  /** examples cut to maxLength */
  truncated: number;
  /** examples dropped because truncation left no learned token */
  dropped: number;
  tokens: number;
  lossTokens: number;
}

export interface EncodeContext {
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate;
  /** longest sequence kept (model context or --max-length) */
  maxLength: number;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** Learned spans [start, end) of the final tokens: one per trained assistant message. */
function chatSpans(ctx: EncodeContext, messages: TrainMessage[], tools: readonly ToolDefinition[] | null): { ids: number[]; spans: [number, number][] } {
  const plain = messages.map(({ weight: _w, ...m }) => m);
  // tools rendered as serving renders them (chat-tools.ts): prefixes convert message by message
  const draw = (n: number, gen: boolean): string => {
    const r = withTools(ctx.chatTemplate, plain.slice(0, n), tools);
    return ctx.chatTemplate.render(r.messages, gen, r.tools);
  };
  const render = (n: number, gen: boolean): string => {
    if (n === 0 && gen) {
      // some templates refuse an empty conversation; the prompt before it is then nothing
      try {
        return draw(0, true);
      } catch {
        return "";
      }
    }
    return draw(n, gen);
  };
  const fullText = render(messages.length, false);
  const ids = ctx.tokenizer.encode(fullText, false);
  const spans: [number, number][] = [];
  for (let k = 0; k < messages.length; k++) {
    const m = messages[k];
    if (m.role !== "assistant" || m.weight === 0) continue;
    // what the model is asked to produce: from the generation prompt to the end of its turn
    const before = render(k, true);
    const upTo = render(k + 1, false);
    if (!upTo.startsWith(before) || !fullText.startsWith(upTo))
      throw new Error(`the chat template does not render messages[${k}] as a continuation of the messages before it; it cannot be masked per message`);
    const start = commonPrefix(ids, ctx.tokenizer.encode(before, false));
    const end = commonPrefix(ids, ctx.tokenizer.encode(upTo, false));
    if (end > start) spans.push([start, end]);
  }
  return { ids, spans };
}

function completionSpans(ctx: EncodeContext, prompt: string, completion: string): { ids: number[]; spans: [number, number][] } {
  const ids = ctx.tokenizer.encode(prompt + completion, true);
  const start = commonPrefix(ids, ctx.tokenizer.encode(prompt, true));
  return { ids, spans: [[Math.max(start, 1), ids.length]] };
}

/**
 * Encodes one example. The sequence ends with an EOS the model learns to produce when the last
 * learned span is the end of the text and the template did not already put one there (so a
 * trained model stops where the examples stop).
 */
export function encodeExample(ctx: EncodeContext, ex: SftExample): { example: EncodedExample; truncated: boolean } | null {
  const { ids, spans } = ex.kind === "chat" ? chatSpans(ctx, ex.messages, ex.tools ?? null) : completionSpans(ctx, ex.prompt, ex.completion);
  const eos = ctx.tokenizer.eosIds[0];
  const last = spans[spans.length - 1];
  if (eos !== undefined && last && last[1] === ids.length && !ctx.tokenizer.eosIds.includes(ids[ids.length - 1])) {
    ids.push(eos);
    last[1] = ids.length;
  }
  const mask = new Uint8Array(ids.length);
  // position 0 is never predicted
  for (const [s, e] of spans) for (let t = Math.max(1, s); t < e; t++) mask[t] = 1;
  let n = ids.length;
  const truncated = n > ctx.maxLength;
  if (truncated) n = ctx.maxLength;
  let learned = 0;
  for (let t = 0; t < n; t++) learned += mask[t];
  if (learned === 0) return null;
  return { example: { line: ex.line, tokens: Int32Array.from(ids.slice(0, n)), mask: mask.slice(0, n) }, truncated };
}

/**
 * Encodes a whole data set. Examples the template cannot mask are bad lines (returned, not
 * thrown, so the caller reports them with the data errors); truncation only counts.
 */
export function encodeExamples(ctx: EncodeContext, examples: readonly SftExample[]): { encoded: EncodedExample[]; stats: EncodeStats; errors: LineError[] } {
  const encoded: EncodedExample[] = [];
  const errors: LineError[] = [];
  const stats: EncodeStats = { examples: 0, truncated: 0, dropped: 0, tokens: 0, lossTokens: 0 };
  for (const ex of examples) {
    let r: ReturnType<typeof encodeExample>;
    try {
      r = encodeExample(ctx, ex);
    } catch (e) {
      errors.push({ line: ex.line, reason: (e as Error).message });
      continue;
    }
    if (r === null) {
      stats.dropped++;
      continue;
    }
    if (r.truncated) stats.truncated++;
    encoded.push(r.example);
    stats.examples++;
    stats.tokens += r.example.tokens.length;
    for (const m of r.example.mask) stats.lossTokens += m;
  }
  return { encoded, stats, errors };
}
