// How each model family writes tool calls, and reading them back out of its output.
//   hermes  (Qwen2.5, Qwen3, Hermes; also our generic rendering):
//           <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>   (one block per call)
//   llama3  (Llama 3.1+, JSON tool calling):  {"name": "f", "parameters": {...}}   (";" between calls)
//   mistral (v0.3 and later):  [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
// The parsers are incremental (ToolCallParser): streaming and whole outputs go through the
// same code. A call that does not parse, or names no known tool, comes back as text. While a
// call is written the parser says so as soon as its name is known (`open`) and hands on its
// arguments as they arrive (`args`), so a stream sends them as OpenAI does; the arguments are
// the model's own text, so the fragments add up to the whole answer's `function.arguments`.
import { CallScanner, rawArguments } from "./call-scanner.js";

export type ToolFamily = "hermes" | "llama3" | "mistral";

export interface ParsedToolCall {
  name: string;
  /** the arguments as JSON text (OpenAI's `function.arguments`) */
  arguments: string;
}

/**
 * What the parser hands back: text; a whole call; or, while one is written, `open` (the next
 * call's name is known) and `args` (more of the last opened call's arguments). Every opened
 * call is resolved later, in order, by its whole `call` (whose arguments start with what `args`
 * sent), or, when what was opened turns out not to be calls, by `content` holding that text.
 */
export type ParsedPiece = { content: string } | { call: ParsedToolCall } | { open: string } | { args: string };

/** Fed the output as it is generated; hands back content and calls as soon as they are certain. */
export interface ToolCallParser {
  push(text: string): ParsedPiece[];
  end(): ParsedPiece[];
}

export interface ToolCallFormat {
  readonly family: ToolFamily;
  /** a forced call: the prompt ends with this, the grammar writes the calls after it */
  readonly forcedOpener: string;
  /** a forced answer with several calls: between two calls' JSON */
  readonly forcedSeparator: string;
  /** a forced answer: after the last call's JSON */
  readonly forcedEnd: string;
  /** the tags around each call, for a family that writes them (free text elsewhere); null: untagged */
  readonly tagged: readonly [open: string, close: string] | null;
  /** the key of a call's arguments in the family's JSON */
  readonly argumentsKey: "arguments" | "parameters";
  /** a special token that opens calls and so never shows in the text (Mistral's [TOOL_CALLS]) */
  readonly specialMarker: string | null;
  parser(known: ReadonlySet<string>): ToolCallParser;
}

/** {"name", "arguments"|"parameters"} -> a call; null when it is not one of the known tools */
function callFrom(value: unknown, known: ReadonlySet<string>): ParsedToolCall | null {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  const args = v.arguments ?? v.parameters ?? {};
  if (typeof v.name !== "string" || !known.has(v.name)) return null;
  if (typeof args === "string") {
    try {
      JSON.parse(args);
    } catch {
      return null;
    }
    return { name: v.name, arguments: args };
  }
  if (args === null || typeof args !== "object" || Array.isArray(args)) return null;
  return { name: v.name, arguments: JSON.stringify(args) };
}

/** the calls with their arguments as written in `text` (where they were written as an object) */
function asWritten(calls: ParsedToolCall[], text: string, between: ReadonlySet<string>): ParsedToolCall[] {
  const raw = rawArguments(text, between);
  if (raw.length !== calls.length) return calls;
  return calls.map((c, k) => (raw[k] != null ? { name: c.name, arguments: raw[k] } : c));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** the longest suffix of `text` that is a proper prefix of `marker` (held back: it may become one) */
function partialMarkerAt(text: string, marker: string): number {
  for (let k = Math.min(marker.length - 1, text.length); k > 0; k--) if (marker.startsWith(text.slice(text.length - k))) return text.length - k;
  return text.length;
}

const ARGS_KEYS: ReadonlySet<string> = new Set(["arguments", "parameters"]);

/**
 * The calls being written in one stretch of output: `open` for each call whose name is known
 * (and is a known tool), then its arguments as they come. A call naming an unknown tool, or
 * text that is not call objects, stops the opening (the stretch will come back as text).
 */
class CallStream {
  readonly #scanner: CallScanner;
  #opened = 0;
  #sent = 0;
  #stopped = false;
  constructor(
    between: ReadonlySet<string>,
    private readonly known: ReadonlySet<string>,
    /** at most this many calls in the stretch (a Hermes block holds one) */
    private readonly max: number,
  ) {
    this.#scanner = new CallScanner(between, ARGS_KEYS);
  }

  push(text: string): ParsedPiece[] {
    const s = this.#scanner;
    s.push(text);
    const out: ParsedPiece[] = [];
    for (;;) {
      const cur = this.#opened > 0 ? s.calls[this.#opened - 1]! : null;
      if (cur?.args?.kind === "object") {
        const upTo = cur.args.end ?? s.text.length;
        const from = cur.args.start + this.#sent;
        if (upTo > from) {
          out.push({ args: s.text.slice(from, upTo) });
          this.#sent = upTo - cur.args.start;
        }
      }
      if (this.#stopped || this.#opened >= this.max) return out;
      if (cur && cur.end === null) return out;
      const next = s.calls[this.#opened];
      if (!next || next.name === null) return out;
      if (!this.known.has(next.name)) {
        this.#stopped = true;
        return out;
      }
      out.push({ open: next.name });
      this.#opened++;
      this.#sent = 0;
    }
  }
}

/** Hermes blocks: content streams until "<tool_call>", each block is parsed when it closes (or at the end). */
class HermesParser implements ToolCallParser {
  static readonly OPEN = "<tool_call>";
  static readonly CLOSE = "</tool_call>";
  #buf = "";
  /** the block being read (null: in content); `fed`: how much of #buf it has seen */
  #call: { stream: CallStream; fed: number } | null = null;
  constructor(private readonly known: ReadonlySet<string>) {}

  push(text: string): ParsedPiece[] {
    this.#buf += text;
    const out: ParsedPiece[] = [];
    for (;;) {
      if (!this.#call) {
        const at = this.#buf.indexOf(HermesParser.OPEN);
        if (at < 0) {
          const keep = partialMarkerAt(this.#buf, HermesParser.OPEN);
          if (keep > 0) out.push({ content: this.#buf.slice(0, keep) });
          this.#buf = this.#buf.slice(keep);
          return out;
        }
        if (at > 0) out.push({ content: this.#buf.slice(0, at) });
        this.#buf = this.#buf.slice(at);
        this.#call = { stream: new CallStream(new Set(), this.known, 1), fed: HermesParser.OPEN.length };
      }
      const close = this.#buf.indexOf(HermesParser.CLOSE);
      // what may be the start of "</tool_call>" is held back (it is not the call's JSON)
      const upTo = close < 0 ? partialMarkerAt(this.#buf, HermesParser.CLOSE) : close;
      if (upTo > this.#call.fed) {
        out.push(...this.#call.stream.push(this.#buf.slice(this.#call.fed, upTo)));
        this.#call.fed = upTo;
      }
      if (close < 0) return out;
      const block = this.#buf.slice(0, close + HermesParser.CLOSE.length);
      this.#buf = this.#buf.slice(block.length);
      this.#call = null;
      out.push(this.#piece(block));
    }
  }

  end(): ParsedPiece[] {
    const rest = this.#buf;
    const inCall = this.#call !== null;
    this.#buf = "";
    this.#call = null;
    if (rest === "") return [];
    // an unclosed block at the end (the model stopped at EOS after the JSON) still counts
    return [inCall ? this.#piece(rest) : { content: rest }];
  }

  #piece(block: string): ParsedPiece {
    const inner = block.slice(HermesParser.OPEN.length).replace(/<\/tool_call>$/, "");
    const call = callFrom(parseJson(inner.trim()), this.known);
    return call ? { call: asWritten([call], inner, new Set())[0]! } : { content: block };
  }
}

/**
 * Llama 3 and Mistral: the calls are the whole output. Text that starts like them is held to
 * the end and parsed there (its calls opened and their arguments streamed meanwhile); anything
 * else streams as content at once.
 */
class WholeOutputParser implements ToolCallParser {
  #buf = "";
  #mode: "undecided" | "content" | "call" = "undecided";
  #stream: CallStream | null = null;
  constructor(
    private readonly start: string,
    /** the start is the marker before the calls (Mistral's), not the first call's own "{" */
    private readonly startIsMarker: boolean,
    private readonly between: ReadonlySet<string>,
    private readonly known: ReadonlySet<string>,
    private readonly parse: (text: string) => ParsedToolCall[] | null,
  ) {}

  push(text: string): ParsedPiece[] {
    if (this.#mode === "content") return text === "" ? [] : [{ content: text }];
    this.#buf += text;
    if (this.#stream) return this.#stream.push(text);
    const head = this.#buf.trimStart();
    if (head === "") return [];
    if (head.length < this.start.length && this.start.startsWith(head)) return [];
    this.#mode = head.startsWith(this.start) ? "call" : "content";
    if (this.#mode === "call") {
      this.#stream = new CallStream(this.between, this.known, Infinity);
      const at = this.#buf.indexOf(this.start) + (this.startIsMarker ? this.start.length : 0);
      return this.#stream.push(this.#buf.slice(at));
    }
    const out = this.#buf;
    this.#buf = "";
    return [{ content: out }];
  }

  end(): ParsedPiece[] {
    const rest = this.#buf;
    this.#buf = "";
    this.#stream = null;
    if (rest === "") return [];
    const calls = this.#mode === "call" ? this.parse(rest.trim()) : null;
    return calls && calls.length > 0 ? calls.map((call) => ({ call })) : [{ content: rest }];
  }
}

/**
 * A forced answer: the family's parser, told first the opener the prompt ended with; an answer
 * cut short comes back as the text the model wrote (without that opener).
 */
export function forcedParser(format: ToolCallFormat, known: ReadonlySet<string>): ToolCallParser {
  const inner = format.parser(known);
  let opener = format.forcedOpener;
  const strip = (pieces: ParsedPiece[]): ParsedPiece[] =>
    pieces.map((p) => {
      if (!("content" in p) || opener === "") return p;
      const content = p.content.startsWith(opener) ? p.content.slice(opener.length) : p.content;
      opener = "";
      return { content };
    });
  const first = inner.push(opener);
  return {
    push: (text) => strip([...first.splice(0), ...inner.push(text)]),
    end: () => strip([...first.splice(0), ...inner.end()]),
  };
}

const HERMES: ToolCallFormat = {
  family: "hermes",
  forcedOpener: `${HermesParser.OPEN}\n`,
  forcedSeparator: `\n${HermesParser.CLOSE}\n${HermesParser.OPEN}\n`,
  forcedEnd: `\n${HermesParser.CLOSE}`,
  tagged: [HermesParser.OPEN, HermesParser.CLOSE],
  argumentsKey: "arguments",
  specialMarker: null,
  parser: (known) => new HermesParser(known),
};

const LLAMA_BETWEEN: ReadonlySet<string> = new Set([";"]);

function llamaCalls(text: string, known: ReadonlySet<string>): ParsedToolCall[] | null {
  const whole = parseJson(text);
  const parts = whole !== undefined ? [whole] : text.split(/;\s*(?=\{)/).map(parseJson);
  const calls = parts.map((p) => callFrom(p, known));
  return calls.every((c) => c !== null) ? asWritten(calls as ParsedToolCall[], text, LLAMA_BETWEEN) : null;
}

const LLAMA3: ToolCallFormat = {
  family: "llama3",
  forcedOpener: "",
  forcedSeparator: "; ",
  forcedEnd: "",
  tagged: null,
  argumentsKey: "parameters",
  specialMarker: null,
  parser: (known) => new WholeOutputParser("{", false, LLAMA_BETWEEN, known, (t) => llamaCalls(t, known)),
};

const MISTRAL_MARKER = "[TOOL_CALLS]";

const MISTRAL_BETWEEN: ReadonlySet<string> = new Set(["[", ",", "]"]);

function mistralCalls(text: string, known: ReadonlySet<string>): ParsedToolCall[] | null {
  const list = text.slice(MISTRAL_MARKER.length);
  const parsed = parseJson(list.trim());
  const items = Array.isArray(parsed) ? parsed : parsed !== undefined ? [parsed] : [];
  const calls = items.map((p) => callFrom(p, known));
  return calls.length > 0 && calls.every((c) => c !== null) ? asWritten(calls as ParsedToolCall[], list, MISTRAL_BETWEEN) : null;
}

const MISTRAL: ToolCallFormat = {
  family: "mistral",
  forcedOpener: `${MISTRAL_MARKER}[`,
  forcedSeparator: ", ",
  forcedEnd: "]",
  tagged: null,
  argumentsKey: "arguments",
  specialMarker: MISTRAL_MARKER,
  parser: (known) => new WholeOutputParser(MISTRAL_MARKER, true, MISTRAL_BETWEEN, known, (t) => mistralCalls(t, known)),
};

/**
 * The family a chat template writes tool calls in, from its source; templates that do not
 * render tools (and unknown ones) get the generic rendering, which asks for Hermes blocks.
 */
export function toolCallFormat(templateSource: string, rendersTools: boolean): ToolCallFormat {
  if (!rendersTools) return HERMES;
  if (templateSource.includes(MISTRAL_MARKER)) return MISTRAL;
  if (templateSource.includes("<tool_call>")) return HERMES;
  if (templateSource.includes("<|python_tag|>") || templateSource.includes("ipython")) return LLAMA3;
  return HERMES;
}

/**
 * A whole output at once (non-streamed responses) through a streaming parser: the calls, and
 * the text around them (trimmed, null when there is none beside calls).
 */
export function parseToolCalls(p: ToolCallParser, text: string): { content: string | null; calls: ParsedToolCall[] } {
  const pieces = [...p.push(text), ...p.end()];
  const calls: ParsedToolCall[] = [];
  let content = "";
  for (const piece of pieces) {
    if ("call" in piece) calls.push(piece.call);
    else if ("content" in piece) content += piece.content;
  }
  const trimmed = calls.length > 0 ? content.trim() : content;
  return { content: calls.length > 0 && trimmed === "" ? null : trimmed, calls };
}
