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

/** Calls `parse` on each non-blank line's object; returns the lines it (or JSON.parse) rejected. */
export function eachJsonlObject(text: string, parse: (o: Record<string, unknown>, line: number) => void): LineError[] {
  const errors: LineError[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const src = lines[i].replace(/\r$/, "");
    if (src.trim() === "") continue;
    try {
      let v: unknown;
      try {
        v = JSON.parse(src);
      } catch (e) {
        throw new Error(`not valid JSON (${(e as Error).message})`);
      }
      if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error(`expected a JSON object, got ${describeJson(v)}`);
      parse(v as Record<string, unknown>, line);
    } catch (e) {
      errors.push({ line, reason: (e as Error).message });
    }
  }
  return errors;
}
