// A resumable scanner over the JSON call objects a model is writing ({"name": ..., "arguments":
// {...}}, one or several in a row), fed as the text arrives. It knows, before the JSON is whole,
// each object's name (once its string closes) and where its arguments value starts and ends, so
// a stream can send the call's header as soon as the name is known and its arguments as they
// are written, as OpenAI streams them. It checks structure only (depth, strings, keys); whether
// the whole is valid JSON is decided by JSON.parse when it ends.

export interface ScannedCall {
  /** the offset of the object's "{" in the scanned text */
  readonly start: number;
  /** the offset after its "}"; null while open */
  end: number | null;
  /** the "name" value once its string has closed */
  name: string | null;
  /** the arguments value: [start, end) in the text, end null while it is being written */
  args: { start: number; end: number | null; kind: "object" | "string" | "other" } | null;
}

const WS = new Set([" ", "\n", "\r", "\t"]);

export class CallScanner {
  readonly calls: ScannedCall[] = [];
  /** a character outside an object that `between` does not allow: the text is not call objects */
  bad = false;
  #text = "";
  #depth = 0;
  #inString = false;
  #escape = false;
  #stringStart = -1;
  /** what the current object (depth 1) expects next */
  #expect: "key" | "colon" | "value" | "after" = "key";
  #key: string | null = null;
  /** where the current depth-1 value starts (-1: not started) */
  #valueStart = -1;

  /**
   * `between`: the characters allowed outside objects (whitespace and the family's list
   * punctuation); `argsKeys`: the keys that hold a call's arguments
   */
  constructor(
    private readonly between: ReadonlySet<string>,
    private readonly argsKeys: ReadonlySet<string>,
  ) {}

  get text(): string {
    return this.#text;
  }

  /** the object being written (null between objects) */
  get open(): ScannedCall | null {
    const last = this.calls[this.calls.length - 1];
    return last && last.end === null ? last : null;
  }

  push(chunk: string): void {
    const from = this.#text.length;
    this.#text += chunk;
    for (let i = from; i < this.#text.length && !this.bad; i++) this.#step(this.#text[i]!, i);
  }

  #step(c: string, i: number): void {
    if (this.#inString) {
      if (this.#escape) this.#escape = false;
      else if (c === "\\") this.#escape = true;
      else if (c === '"') {
        this.#inString = false;
        if (this.#depth === 1) this.#stringClosed(i + 1);
      }
      return;
    }
    if (this.#depth === 0) {
      if (c === "{") {
        this.#depth = 1;
        this.calls.push({ start: i, end: null, name: null, args: null });
        this.#expect = "key";
        this.#valueStart = -1;
      } else if (!this.between.has(c) && !WS.has(c)) this.bad = true;
      return;
    }
    if (c === '"') {
      this.#inString = true;
      this.#stringStart = i;
      if (this.#depth === 1 && this.#expect === "value") this.#valueStarts(i, "string");
      return;
    }
    if (c === "{" || c === "[") {
      if (this.#depth === 1 && this.#expect === "value") this.#valueStarts(i, c === "{" ? "object" : "other");
      this.#depth++;
      return;
    }
    if (c === "}" || c === "]") {
      this.#depth--;
      if (this.#depth === 1) this.#valueEnds(i + 1);
      else if (this.#depth === 0) {
        if (this.#expect === "value" && this.#valueStart >= 0) this.#valueEnds(i);
        this.calls[this.calls.length - 1]!.end = i + 1;
      }
      return;
    }
    if (this.#depth !== 1) return;
    if (c === ":" && this.#expect === "colon") this.#expect = "value";
    else if (c === ",") {
      if (this.#expect === "value" && this.#valueStart >= 0) this.#valueEnds(i);
      this.#expect = "key";
    } else if (this.#expect === "value" && this.#valueStart < 0 && !WS.has(c)) this.#valueStarts(i, "other");
  }

  #stringClosed(end: number): void {
    const raw = this.#text.slice(this.#stringStart, end);
    if (this.#expect === "key") {
      this.#key = parseString(raw);
      this.#expect = "colon";
    } else if (this.#expect === "value" && this.#valueStart === this.#stringStart) {
      if (this.#key === "name") this.calls[this.calls.length - 1]!.name = parseString(raw);
      this.#valueEnds(end);
    }
  }

  #valueStarts(at: number, kind: "object" | "string" | "other"): void {
    this.#valueStart = at;
    if (this.#key !== null && this.argsKeys.has(this.#key)) this.calls[this.calls.length - 1]!.args = { start: at, end: null, kind };
  }

  #valueEnds(end: number): void {
    const call = this.calls[this.calls.length - 1]!;
    if (call.args && call.args.start === this.#valueStart) {
      // a primitive value ends where the next "," or "}" is: its text is trimmed
      let e = end;
      while (e > call.args.start && WS.has(this.#text[e - 1]!)) e--;
      call.args.end = e;
    }
    this.#valueStart = -1;
    this.#expect = "after";
  }
}

function parseString(raw: string): string | null {
  try {
    return JSON.parse(raw) as string;
  } catch {
    return null;
  }
}

/**
 * The arguments of each call object in `text`, as the model wrote them (OpenAI's
 * `function.arguments` is the model's text, not a re-serialization), in order; an entry is
 * null where the arguments are not written as an object.
 */
export function rawArguments(text: string, between: ReadonlySet<string>): (string | null)[] {
  const s = new CallScanner(between, new Set(["arguments", "parameters"]));
  s.push(text);
  return s.calls.map((c) => (c.args && c.args.kind === "object" && c.args.end !== null ? text.slice(c.args.start, c.args.end) : null));
}
