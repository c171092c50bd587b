// The worker of training-file-check.ts: reads a training file from disk a chunk at a time
// and checks it line by line (training-lines.ts), so neither the file's size nor its
// parsing ever weighs on the server's event loop.
import { closeSync, openSync, readSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { serveWorkerCalls } from "../../engine/worker-calls.js";
import { TrainingFileError, TrainingLineCheck, type CheckedFile } from "./training-lines.js";
import type { LineError } from "../../engine/train/data/jsonl.js";

export type CheckReply = { ok: CheckedFile } | { errors: LineError[]; total: number };

const CHUNK = 1 << 20;
const NEWLINE = 0x0a;

function checkFile(path: string): CheckedFile {
  const check = new TrainingLineCheck();
  // fatal: a line that is not UTF-8 is named, not silently mangled (a line is whole
  // characters: 0x0a is never part of a multi-byte sequence)
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    let carry: Buffer[] = [];
    let line = 0;
    const take = (bytes: Buffer): void => {
      line++;
      let text: string;
      try {
        text = utf8.decode(bytes);
      } catch {
        check.reject(line, "not UTF-8 text");
        return;
      }
      check.line(line, text);
    };
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) break;
      let start = 0;
      for (let nl = buf.indexOf(NEWLINE, 0); nl !== -1 && nl < n; nl = buf.indexOf(NEWLINE, start)) {
        const piece = buf.subarray(start, nl);
        take(carry.length > 0 ? Buffer.concat([...carry, piece]) : piece);
        carry = [];
        start = nl + 1;
      }
      if (start < n) carry.push(Buffer.from(buf.subarray(start, n)));
    }
    if (carry.length > 0) take(Buffer.concat(carry));
  } finally {
    closeSync(fd);
  }
  return check.finish();
}

serveWorkerCalls<string, CheckReply>(parentPort!, (path) => {
  try {
    return { result: { ok: checkFile(path) } };
  } catch (e) {
    if (e instanceof TrainingFileError) return { result: { errors: e.errors, total: e.total } };
    throw e;
  }
});
