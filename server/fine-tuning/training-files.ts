// Uploaded training files: their lines checked before anything is kept (every bad line
// named), and their bytes kept under <data-dir>/files/<id>.jsonl, written atomically
// (a temp file renamed into place) so a crash never leaves half a file under a live id.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseSftJsonl, SftDataError } from "../../engine/train/data/sft-data.js";
import type { LineError } from "../../engine/train/data/jsonl.js";
import { jsonlErrors } from "../../engine/train/data/training-format.js";
import { parsePromptJsonl } from "../../engine/train/data/ppo-prompts.js";
import type { FileFormat } from "../store/files.js";

export class TrainingFileError extends Error {
  readonly code = "invalid_file";
  constructor(readonly errors: LineError[]) {
    super(describeErrors(errors));
    this.name = "TrainingFileError";
  }
}

const SHOWN = 20;

function describeErrors(errors: LineError[]): string {
  const shown = errors.slice(0, SHOWN).map((e) => (e.line > 0 ? `line ${e.line}: ${e.reason}` : e.reason));
  const more = errors.length > SHOWN ? `; … and ${errors.length - SHOWN} more` : "";
  return `The file is not valid fine-tuning JSONL (${errors.length} bad line${errors.length === 1 ? "" : "s"}): ${shown.join("; ")}${more}`;
}

/** A preference line has "input"/"preferred_output"; a prompt line only "prompt"; anything else is read as supervised. */
function detectFormat(text: string): FileFormat {
  for (const raw of text.split("\n")) {
    if (raw.trim() === "") continue;
    try {
      const v = JSON.parse(raw) as unknown;
      if (v !== null && typeof v === "object" && ("preferred_output" in v || "input" in v)) return "dpo";
      if (v !== null && typeof v === "object" && Object.keys(v).join() === "prompt") return "prompts";
    } catch {
      // the validator names the line
    }
    return "sft";
  }
  return "sft";
}

/** Checks every line; returns the format and the number of examples, or throws TrainingFileError. */
export function validateTrainingFile(text: string): { format: FileFormat; examples: number } {
  const format = detectFormat(text);
  if (format === "prompts" || format === "sft") {
    try {
      return { format, examples: (format === "prompts" ? parsePromptJsonl(text, "file") : parseSftJsonl(text, "file")).length };
    } catch (e) {
      if (e instanceof SftDataError) throw new TrainingFileError(e.errors);
      throw e;
    }
  }
  const errs = jsonlErrors("dpo", text);
  if (errs.length > 0) throw new TrainingFileError(errs.map((e) => ({ line: e.line, reason: e.message })));
  const examples = text.split("\n").filter((l) => l.trim() !== "").length;
  if (examples === 0) throw new TrainingFileError([{ line: 0, reason: "the file holds no examples" }]);
  return { format, examples };
}

/** The bytes of uploaded files, one file per id. */
export class FileContents {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  path(id: string): string {
    return join(this.dir, `${id}.jsonl`);
  }

  write(id: string, bytes: Uint8Array): void {
    const tmp = `${this.path(id)}.tmp-${process.pid}`;
    writeFileSync(tmp, bytes, { flush: true });
    renameSync(tmp, this.path(id));
  }

  read(id: string): Buffer {
    return readFileSync(this.path(id));
  }

  exists(id: string): boolean {
    return existsSync(this.path(id));
  }

  remove(id: string): void {
    rmSync(this.path(id), { force: true });
  }
}
