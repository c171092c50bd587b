// OpenAI's fine-tuning line formats, as types and as a validator: supervised chat lines
// `{"messages":[...]}` and preference (DPO) lines `{"input":{"messages":[...]},
// "preferred_output":[...], "non_preferred_output":[...]}`. The feedback export writes
// them; uploaded training files (and their line-numbered errors) can check them the same way.

export type TrainingRole = "system" | "user" | "assistant" | "tool";

export interface TrainingMessage {
  role: TrainingRole;
  /** null on an assistant turn that only calls tools */
  content: string | null;
  name?: string;
  /** OpenAI's function-calling format: arguments as JSON text */
  tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

export interface SftLine {
  messages: TrainingMessage[];
  /** the functions the conversation could call (OpenAI's function-calling fine-tuning lines) */
  tools?: object[];
}

/** a preference line's answer: text, or (OpenAI's preference lines with tools) the calls it made */
export type DpoOutput = { role: "assistant"; content: string } | { role: "assistant"; tool_calls: NonNullable<TrainingMessage["tool_calls"]> };

export interface DpoLine {
  input: { messages: TrainingMessage[]; tools?: object[]; parallel_tool_calls?: boolean };
  preferred_output: [DpoOutput];
  non_preferred_output: [DpoOutput];
}

export type TrainingFormat = "sft" | "dpo";

const ROLES: readonly string[] = ["system", "user", "assistant", "tool"];
// keys OpenAI's formats allow beside the ones checked here (function calling)
const SFT_KEYS = new Set(["messages", "tools", "parallel_tool_calls"]);
const DPO_KEYS = new Set(["input", "preferred_output", "non_preferred_output"]);
const INPUT_KEYS = new Set(["messages", "tools", "parallel_tool_calls"]);

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

function unknownKey(v: Record<string, unknown>, allowed: Set<string>, where: string): string | null {
  const extra = Object.keys(v).find((k) => !allowed.has(k));
  return extra === undefined ? null : `${where}: unexpected key '${extra}'`;
}

function checkMessage(m: unknown, where: string): string | null {
  if (!isObject(m)) return `${where}: a message must be an object`;
  if (typeof m.role !== "string" || !ROLES.includes(m.role)) return `${where}.role: must be one of ${ROLES.join(", ")}`;
  const callsOnly = m.role === "assistant" && Array.isArray(m.tool_calls) && m.tool_calls.length > 0 && (m.content === null || m.content === undefined);
  if (typeof m.content !== "string" && !callsOnly) return `${where}.content: must be a string`;
  if (m.name !== undefined && typeof m.name !== "string") return `${where}.name: must be a string`;
  return unknownKey(m, new Set(["role", "content", "name", "weight", "tool_calls", "tool_call_id"]), where);
}

function checkMessages(v: unknown, where: string): string | null {
  if (!Array.isArray(v) || v.length === 0) return `${where}: must be a non-empty array of messages`;
  for (let i = 0; i < v.length; i++) {
    const e = checkMessage(v[i], `${where}[${i}]`);
    if (e) return e;
  }
  return null;
}

function checkOutput(v: unknown, where: string): string | null {
  if (!Array.isArray(v) || v.length !== 1) return `${where}: must hold exactly one assistant message`;
  const e = checkMessage(v[0], `${where}[0]`);
  if (e) return e;
  return (v[0] as { role: string }).role === "assistant" ? null : `${where}[0].role: must be assistant`;
}

/** Why `line` (a parsed JSON value) is not a valid training line of `format`, or null. */
export function trainingLineError(format: TrainingFormat, line: unknown): string | null {
  if (!isObject(line)) return "a line must be a JSON object";
  if (format === "sft") {
    const e = unknownKey(line, SFT_KEYS, "line") ?? checkMessages(line.messages, "messages");
    if (e) return e;
    const msgs = line.messages as TrainingMessage[];
    return msgs.some((m) => m.role === "assistant") ? null : "messages: at least one message must be from the assistant";
  }
  const e = unknownKey(line, DPO_KEYS, "line");
  if (e) return e;
  if (!isObject(line.input)) return "input: must be an object with messages";
  return (
    unknownKey(line.input, INPUT_KEYS, "input") ??
    checkMessages(line.input.messages, "input.messages") ??
    checkOutput(line.preferred_output, "preferred_output") ??
    checkOutput(line.non_preferred_output, "non_preferred_output")
  );
}

/**
 * Each line of a JSONL text checked; errors name the 1-based line. Blank lines are
 * skipped (a trailing newline is normal).
 */
export function jsonlErrors(format: TrainingFormat, text: string): { line: number; message: string }[] {
  const out: { line: number; message: string }[] = [];
  text.split("\n").forEach((raw, i) => {
    if (raw.trim() === "") return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      out.push({ line: i + 1, message: `not valid JSON (${(e as Error).message})` });
      return;
    }
    const err = trainingLineError(format, v);
    if (err) out.push({ line: i + 1, message: err });
  });
  return out;
}
