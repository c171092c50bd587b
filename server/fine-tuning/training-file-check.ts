// Training files checked on a worker thread (training-file-worker.ts), read from disk as
// they are: an upload before it is kept, a job's copy before the job is queued.
import { WorkerCalls } from "../../engine/worker-calls.js";
import type { CheckReply } from "./training-file-worker.js";
import { TrainingFileError, type CheckedFile } from "./training-lines.js";

export class TrainingFileCheck {
  // a small young generation: the worker makes garbage fast (a string per line) and
  // should collect it often rather than grow the process by tens of MiB
  readonly #calls = new WorkerCalls<string, CheckReply>(new URL("./training-file-worker.js", import.meta.url), null, { maxYoungGenerationSizeMb: 4 });

  /** The file's format and examples; TrainingFileError naming its bad lines. */
  async check(path: string): Promise<CheckedFile> {
    const r = await this.#calls.call(path);
    if ("ok" in r) return r.ok;
    throw new TrainingFileError(r.errors, r.total);
  }

  close(): Promise<void> {
    return this.#calls.close();
  }
}
