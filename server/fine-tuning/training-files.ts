// Uploaded training files' bytes, kept under <data-dir>/files/<id>.jsonl. A file comes in
// as a temp file (uploads.ts) and is renamed into place once it is on disk and checked, so
// a crash never leaves half a file under a live id; temp files a crash left behind are
// removed at start-up.
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync, type ReadStream } from "node:fs";
import { open, rename } from "node:fs/promises";
import { join } from "node:path";
import { UPLOAD_PREFIX } from "./uploads.js";

/** The bytes of uploaded files, one file per id. */
export class FileContents {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir)) if (name.startsWith(UPLOAD_PREFIX) || name.includes(".jsonl.tmp-")) rmSync(join(dir, name), { force: true });
  }

  path(id: string): string {
    return join(this.dir, `${id}.jsonl`);
  }

  /** small files the server writes itself (continuous RLHF's exports), atomically */
  write(id: string, bytes: Uint8Array): void {
    const tmp = `${this.path(id)}.tmp-${process.pid}`;
    writeFileSync(tmp, bytes, { flush: true });
    renameSync(tmp, this.path(id));
  }

  /** Makes a received upload (a synced temp file in this directory) file `id`, durably. */
  async keep(tmp: string, id: string): Promise<void> {
    await rename(tmp, this.path(id));
    // the rename itself survives a crash once the directory is synced
    const d = await open(this.dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  stream(id: string): ReadStream {
    return createReadStream(this.path(id));
  }

  exists(id: string): boolean {
    return existsSync(this.path(id));
  }

  remove(id: string): void {
    rmSync(this.path(id), { force: true });
  }
}
