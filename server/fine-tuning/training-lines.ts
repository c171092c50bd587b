// The check every uploaded training file passes, one line at a time so a file of any size
// is checked in constant memory (the worker of training-file-check.ts feeds it): the format
// is read off the first non-blank line, then every line is parsed as that format; the bad
// ones are named by number (the first SHOWN of them, and how many in all).
import { jsonlObject, type LineError } from "../../engine/train/data/jsonl.js";
import { parsePromptLine } from "../../engine/train/data/ppo-prompts.js";
import { sftLineParser } from "../../engine/train/data/sft-data.js";
import { trainingLineError } from "../../engine/train/data/training-format.js";
import type { FileFormat } from "../store/files.js";

/** lines named in an error message */
const SHOWN = 20;

export class TrainingFileError extends Error {
  readonly code = "invalid_file";
  /** `errors`: the first bad lines; `total`: how many there are */
  constructor(
    readonly errors: LineError[],
    readonly total = errors.length,
  ) {
    super(describeErrors(errors, total));
    this.name = "TrainingFileError";
  }
}

function describeErrors(errors: LineError[], total: number): string {
  const shown = errors.slice(0, SHOWN).map((e) => (e.line > 0 ? `line ${e.line}: ${e.reason}` : e.reason));
  const more = total > shown.length ? `; … and ${total - shown.length} more` : "";
  return `The file is not valid fine-tuning JSONL (${total} bad line${total === 1 ? "" : "s"}): ${shown.join("; ")}${more}`;
}

/** A preference line has "input"/"preferred_output"; a prompt line only "prompt"; anything else is read as supervised. */
function detectFormat(src: string): FileFormat {
  try {
    const v = JSON.parse(src) as unknown;
    if (v !== null && typeof v === "object" && ("preferred_output" in v || "input" in v)) return "dpo";
    if (v !== null && typeof v === "object" && Object.keys(v).join() === "prompt") return "prompts";
  } catch {
    // the line check names the line
  }
  return "sft";
}

export interface CheckedFile {
  format: FileFormat;
  examples: number;
}

/** Fed the lines of a file in order (`line` 1-based); `finish` gives the format and count, or throws TrainingFileError. */
export class TrainingLineCheck {
  #format: FileFormat | null = null;
  #check: ((o: Record<string, unknown>, line: number) => void) | null = null;
  #examples = 0;
  readonly #errors: LineError[] = [];
  #bad = 0;

  /** a line that is not text (not UTF-8) */
  reject(line: number, reason: string): void {
    this.#bad++;
    if (this.#errors.length < SHOWN) this.#errors.push({ line, reason });
  }

  line(line: number, text: string): void {
    const src = text.endsWith("\r") ? text.slice(0, -1) : text;
    if (src.trim() === "") return;
    if (this.#format === null) {
      const format = detectFormat(src);
      this.#format = format;
      const sft = sftLineParser();
      this.#check =
        format === "sft"
          ? (o, n) => void sft(o, n)
          : format === "prompts"
            ? (o, n) => void parsePromptLine(o, n)
            : (o) => {
                const e = trainingLineError("dpo", o);
                if (e) throw new Error(e);
              };
    }
    try {
      this.#check!(jsonlObject(src), line);
      this.#examples++;
    } catch (e) {
      this.reject(line, (e as Error).message);
    }
  }

  finish(): CheckedFile {
    if (this.#bad > 0) throw new TrainingFileError(this.#errors, this.#bad);
    if (this.#examples === 0) throw new TrainingFileError([{ line: 0, reason: "the file holds no examples" }]);
    return { format: this.#format!, examples: this.#examples };
  }
}
