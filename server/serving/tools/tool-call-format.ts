// How each model family writes tool calls, and reading them back out of its output.
//   hermes  (Qwen2.5, Qwen3, Hermes; also our generic rendering):
//           <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>   (one block per call)
//   llama3  (Llama 3.1+, JSON tool calling):  {"name": "f", "parameters": {...}}   (";" between calls)
//   mistral (v0.3 and later):  [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
// The parsers are incremental (ToolCallParser): streaming and whole outputs go through the
// same code. A call that does not parse, or names no known tool, comes back as text.

export type ToolFamily = "hermes" | "llama3" | "mistral";

export interface ParsedToolCall {
  name: string;
  /** the arguments as JSON text (OpenAI's `function.arguments`) */
  arguments: string;
}

export type ParsedPiece = { content: string } | { call: ParsedToolCall };

/** Fed the output as it is generated; hands back content and whole calls as soon as they are certain. */
export interface ToolCallParser {
  push(text: string): ParsedPiece[];
  end(): ParsedPiece[];
}

export interface ToolCallFormat {
  readonly family: ToolFamily;
  /** a forced call: the prompt ends with this, the model writes one call's JSON after it */
  readonly forcedOpener: string;
  /** the key of a call's arguments in the family's JSON */
  readonly argumentsKey: "arguments" | "parameters";
  /** a special token that opens calls and so never shows in the text (Mistral's [TOOL_CALLS]) */
  readonly specialMarker: string | null;
  parser(known: ReadonlySet<string>): ToolCallParser;
  /** a forced call's text (the JSON after the opener) -> the call; null if it does not parse */
  parseForced(text: string, known: ReadonlySet<string>): ParsedToolCall | null;
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

/** Hermes blocks: content streams until "<tool_call>", each block is parsed when it closes (or at the end). */
class HermesParser implements ToolCallParser {
  static readonly OPEN = "<tool_call>";
  static readonly CLOSE = "</tool_call>";
  #buf = "";
  #inCall = false;
  constructor(private readonly known: ReadonlySet<string>) {}

  push(text: string): ParsedPiece[] {
    this.#buf += text;
    const out: ParsedPiece[] = [];
    for (;;) {
      if (!this.#inCall) {
        const at = this.#buf.indexOf(HermesParser.OPEN);
        if (at < 0) {
          const keep = partialMarkerAt(this.#buf, HermesParser.OPEN);
          if (keep > 0) out.push({ content: this.#buf.slice(0, keep) });
          this.#buf = this.#buf.slice(keep);
          return out;
        }
        if (at > 0) out.push({ content: this.#buf.slice(0, at) });
        this.#buf = this.#buf.slice(at);
        this.#inCall = true;
      }
      const close = this.#buf.indexOf(HermesParser.CLOSE);
      if (close < 0) return out;
      const block = this.#buf.slice(0, close + HermesParser.CLOSE.length);
      this.#buf = this.#buf.slice(block.length);
      this.#inCall = false;
      out.push(this.#piece(block));
    }
  }

  end(): ParsedPiece[] {
    const rest = this.#buf;
    this.#buf = "";
    if (rest === "") return [];
    // an unclosed block at the end (the model stopped at EOS after the JSON) still counts
    return [this.#inCall ? this.#piece(rest) : { content: rest }];
  }

  #piece(block: string): ParsedPiece {
    const inner = block.slice(HermesParser.OPEN.length).replace(/<\/tool_call>$/, "");
    const call = callFrom(parseJson(inner.trim()), this.known);
    return call ? { call } : { content: block };
  }
}

/**
 * Llama 3 and Mistral: a call is the whole output. Text that starts like one is held to the
 * end and parsed there; anything else streams as content at once.
 */
class WholeOutputParser implements ToolCallParser {
  #buf = "";
  #mode: "undecided" | "content" | "call" = "undecided";
  constructor(
    private readonly start: string,
    private readonly parse: (text: string) => ParsedToolCall[] | null,
  ) {}

  push(text: string): ParsedPiece[] {
    if (this.#mode === "content") return text === "" ? [] : [{ content: text }];
    this.#buf += text;
    if (this.#mode === "call") return [];
    const head = this.#buf.trimStart();
    if (head === "") return [];
    if (head.length < this.start.length && this.start.startsWith(head)) return [];
    this.#mode = head.startsWith(this.start) ? "call" : "content";
    if (this.#mode === "call") return [];
    const out = this.#buf;
    this.#buf = "";
    return [{ content: out }];
  }

  end(): ParsedPiece[] {
    const rest = this.#buf;
    this.#buf = "";
    if (rest === "") return [];
    const calls = this.#mode === "call" ? this.parse(rest.trim()) : null;
    return calls && calls.length > 0 ? calls.map((call) => ({ call })) : [{ content: rest }];
  }
}

const HERMES: ToolCallFormat = {
  family: "hermes",
  forcedOpener: `${HermesParser.OPEN}\n`,
  argumentsKey: "arguments",
  specialMarker: null,
  parser: (known) => new HermesParser(known),
  parseForced: (text, known) => callFrom(parseJson(text.replace(/<\/tool_call>\s*$/, "").trim()), known),
};

function llamaCalls(text: string, known: ReadonlySet<string>): ParsedToolCall[] | null {
  const whole = parseJson(text);
  const parts = whole !== undefined ? [whole] : text.split(/;\s*(?=\{)/).map(parseJson);
  const calls = parts.map((p) => callFrom(p, known));
  return calls.every((c) => c !== null) ? (calls as ParsedToolCall[]) : null;
}

const LLAMA3: ToolCallFormat = {
  family: "llama3",
  forcedOpener: "",
  argumentsKey: "parameters",
  specialMarker: null,
  parser: (known) => new WholeOutputParser("{", (t) => llamaCalls(t, known)),
  parseForced: (text, known) => callFrom(parseJson(text.trim()), known),
};

const MISTRAL_MARKER = "[TOOL_CALLS]";

function mistralCalls(text: string, known: ReadonlySet<string>): ParsedToolCall[] | null {
  const list = parseJson(text.slice(MISTRAL_MARKER.length).trim());
  const items = Array.isArray(list) ? list : list !== undefined ? [list] : [];
  const calls = items.map((p) => callFrom(p, known));
  return calls.length > 0 && calls.every((c) => c !== null) ? (calls as ParsedToolCall[]) : null;
}

const MISTRAL: ToolCallFormat = {
  family: "mistral",
  forcedOpener: `${MISTRAL_MARKER}[`,
  argumentsKey: "arguments",
  specialMarker: MISTRAL_MARKER,
  parser: (known) => new WholeOutputParser(MISTRAL_MARKER, (t) => mistralCalls(t, known)),
  parseForced: (text, known) => callFrom(parseJson(text.replace(/\]\s*$/, "").trim()), known),
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
    else content += piece.content;
  }
  const trimmed = calls.length > 0 ? content.trim() : content;
  return { content: calls.length > 0 && trimmed === "" ? null : trimmed, calls };
}
