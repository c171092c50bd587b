// The line loop every training-data reader shares: JSONL text -> one JSON object a line, each
// handed to the format's parser; a line that fails is recorded with its 1-based number and
// the loop goes on, so every bad line of a file is reported at once.

/** One rejected line of a data file, 1-based. */
export interface LineError {
  line: number;
  reason: string;
}

export function describeJson(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? `a string` : `${typeof v} ${JSON.stringify(v)}`.slice(0, 40);
}

/** One line's JSON object; throws an Error whose message is the reason the line is refused. */
export function jsonlObject(src: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(src);
  } catch (e) {
    throw new Error(`not valid JSON (${(e as Error).message})`);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error(`expected a JSON object, got ${describeJson(v)}`);
  return v as Record<string, unknown>;
}

/** One line of a JSONL text through `parse`; a refusal is recorded in `errors`. */
function eachLine(src: string, line: number, parse: (o: Record<string, unknown>, line: number) => void, errors: LineError[]): void {
  if (src.endsWith("\r")) src = src.slice(0, -1);
  if (src.trim() === "") return;
  try {
    parse(jsonlObject(src), line);
  } catch (e) {
    errors.push({ line, reason: (e as Error).message });
  }
}

/** Calls `parse` on each non-blank line's object; returns the lines it (or JSON.parse) rejected. */
export function eachJsonlObject(text: string, parse: (o: Record<string, unknown>, line: number) => void): LineError[] {
  const errors: LineError[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) eachLine(lines[i], i + 1, parse, errors);
  return errors;
}

/** how long data work runs before it lets the event loop answer others */
export const SLICE_MS = 10;

/**
 * `each` over `items`, handing the event loop back every SLICE_MS: a job's data (a file of
 * any size) is parsed and encoded in the serving process without holding up its requests.
 */
export async function eachInSlices<T>(items: readonly T[], each: (item: T, i: number) => void): Promise<void> {
  let since = performance.now();
  for (let i = 0; i < items.length; i++) {
    each(items[i], i);
    if (performance.now() - since >= SLICE_MS) {
      await new Promise((r) => setImmediate(r));
      since = performance.now();
    }
  }
}

/** eachJsonlObject in slices (eachInSlices). */
export async function eachJsonlObjectInSlices(text: string, parse: (o: Record<string, unknown>, line: number) => void): Promise<LineError[]> {
  const errors: LineError[] = [];
  await eachInSlices(text.split("\n"), (src, i) => eachLine(src, i + 1, parse, errors));
  return errors;
}
