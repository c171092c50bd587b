// Feedback as training lines (JSONL): corrections and +1-rated answers as supervised chat
// examples, preferences as DPO pairs. Read in batches, so a long export never holds the
// database connection between writes.
import type { FeedbackFilter, FeedbackRecord, FeedbackStore } from "./feedback.js";
import type { PromptMessage } from "./types.js";
import type { DpoLine, SftLine, TrainingFormat, TrainingMessage } from "../../engine/train/data/training-format.js";

export type ExportFilter = Pick<FeedbackFilter, "model" | "since" | "until">;

const BATCH = 256;

/** The fine-tuning formats have no "developer" role; it is the newer name of "system". */
export function trainingMessages(messages: readonly PromptMessage[]): TrainingMessage[] {
  return messages.map((m) => {
    const out: TrainingMessage = { role: m.role === "developer" ? "system" : m.role, content: m.content };
    if (m.name !== undefined) out.name = m.name;
    return out;
  });
}

export function sftLine(f: FeedbackRecord): SftLine | null {
  const answer = f.type === "correction" ? f.correction : f.type === "rating" && f.rating === 1 ? f.answer : null;
  if (answer === null) return null;
  return { messages: [...trainingMessages(f.promptMessages), { role: "assistant", content: answer }] };
}

export function dpoLine(f: FeedbackRecord): DpoLine | null {
  if (f.type !== "preference") return null;
  return {
    input: { messages: trainingMessages(f.promptMessages) },
    preferred_output: [{ role: "assistant", content: f.chosen }],
    non_preferred_output: [{ role: "assistant", content: f.rejected }],
  };
}

/** JSONL lines ("...\n"), oldest feedback first. */
export function* exportLines(feedback: FeedbackStore, format: TrainingFormat, filter: ExportFilter = {}): Generator<string> {
  const query: FeedbackFilter =
    format === "sft" ? { ...filter, type: ["correction", "rating"], positiveOnly: true } : { ...filter, type: "preference" };
  const toLine = format === "sft" ? sftLine : dpoLine;
  let after = 0;
  for (;;) {
    const { items, next } = feedback.scan(query, after, BATCH);
    for (const f of items) {
      const line = toLine(f);
      if (line) yield `${JSON.stringify(line)}\n`;
    }
    if (items.length < BATCH) return;
    after = next;
  }
}
