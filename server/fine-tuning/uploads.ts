// An upload's bytes go to a temporary file in <data-dir>/files/ as they arrive, never held
// whole in memory; the stated limits (bytes, lines, bytes per line) are checked on every
// chunk, so an oversized file is refused at the byte that breaks the limit. The temp file
// is fsynced before the caller checks it and keeps it (FileContents.keep); whatever goes
// wrong before that (a limit, a client gone mid-body) removes it.
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { errors } from "../http/errors.js";

export interface FileLimits {
  /** largest file accepted (413 above) */
  maxBytes: number;
  /** most lines a file may have */
  maxLines: number;
  /** longest line, in bytes */
  maxLineBytes: number;
}

export const DEFAULT_FILE_LIMITS: FileLimits = {
  maxBytes: 512 * 1024 * 1024,
  maxLines: 2_000_000,
  // a whole 128K-token conversation is ~0.5 MB of text
  maxLineBytes: 4 * 1024 * 1024,
};

/** `partial` over the defaults (an undefined field keeps its default) */
export function fileLimits(partial: Partial<FileLimits> = {}): FileLimits {
  return {
    maxBytes: partial.maxBytes ?? DEFAULT_FILE_LIMITS.maxBytes,
    maxLines: partial.maxLines ?? DEFAULT_FILE_LIMITS.maxLines,
    maxLineBytes: partial.maxLineBytes ?? DEFAULT_FILE_LIMITS.maxLineBytes,
  };
}

/** what multipart framing may add to the file's bytes in Content-Length (boundaries, part headers, the purpose field) */
export const MULTIPART_SLACK_BYTES = 64 * 1024;

export const UPLOAD_PREFIX = ".upload-";

const NEWLINE = 0x0a;

/** Passes bytes through, refusing (an ApiError) the first chunk that breaks a limit. */
class LimitCheck extends Transform {
  bytes = 0;
  lines = 0;
  #lineBytes = 0;

  constructor(private readonly limits: FileLimits) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const { maxBytes, maxLines, maxLineBytes } = this.limits;
    this.bytes += chunk.length;
    if (this.bytes > maxBytes) return done(errors.fileTooLarge(maxBytes));
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl !== -1; nl = chunk.indexOf(NEWLINE, start)) {
      this.#lineBytes += nl - start;
      if (this.#lineBytes > maxLineBytes) return done(errors.lineTooLong(this.lines + 1, maxLineBytes));
      this.lines++;
      this.#lineBytes = 0;
      start = nl + 1;
      if (this.lines > maxLines) return done(errors.tooManyLines(maxLines));
    }
    this.#lineBytes += chunk.length - start;
    if (this.#lineBytes > maxLineBytes) return done(errors.lineTooLong(this.lines + 1, maxLineBytes));
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    // a last line without a newline counts too
    if (this.#lineBytes > 0 && this.lines + 1 > this.limits.maxLines) return done(errors.tooManyLines(this.limits.maxLines));
    done();
  }
}

export interface ReceivedUpload {
  /** the temp file holding the bytes, fsynced */
  path: string;
  bytes: number;
}

/** Streams `source` into a new temp file in `dir` under `limits`; the temp file is gone if this rejects. */
export async function receiveUpload(source: Readable, dir: string, limits: FileLimits): Promise<ReceivedUpload> {
  const path = join(dir, `${UPLOAD_PREFIX}${randomBytes(8).toString("hex")}.tmp`);
  const check = new LimitCheck(limits);
  try {
    await pipeline(source, check, createWriteStream(path, { flags: "wx" }));
    // on disk before anything is acknowledged: fsync is per file, any descriptor will do
    const fh = await open(path, "r+");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    return { path, bytes: check.bytes };
  } catch (e) {
    await rm(path, { force: true });
    throw e;
  }
}
