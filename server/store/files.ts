// Uploaded files' metadata (the bytes are on disk, server/fine-tuning/file-storage.ts).
import { randomBytes } from "node:crypto";
import type { Db } from "./db.js";
import type { TrainingFormat } from "../../engine/train/data/training-format.js";
import type { Owner, Page, SortOrder } from "./types.js";

/** the lines a file holds: a training format, or prompts only (ppo's training_file) */
export type FileFormat = TrainingFormat | "prompts";

export interface FileRecord {
  id: string;
  filename: string;
  purpose: string;
  bytes: number;
  createdAt: number;
  format: FileFormat;
  examples: number;
  /** the key that uploaded it (null: the server itself, e.g. continuous RLHF, or no keys) */
  owner: Owner;
}

interface FileRow {
  seq: number;
  id: string;
  filename: string;
  purpose: string;
  bytes: number;
  created_at: number;
  format: FileFormat;
  examples: number;
  owner: string | null;
}

export const fileId = (): string => `file-${randomBytes(12).toString("hex")}`;

const toRecord = (r: FileRow): FileRecord => ({
  id: r.id,
  filename: r.filename,
  purpose: r.purpose,
  bytes: r.bytes,
  createdAt: r.created_at,
  format: r.format,
  examples: r.examples,
  owner: r.owner,
});

export class UnknownFileError extends Error {
  constructor(readonly id: string) {
    super(`no file ${id}`);
    this.name = "UnknownFileError";
  }
}

export class FileStore {
  readonly #insert;
  readonly #get;
  readonly #seq;
  readonly #delete;
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare(
      "INSERT INTO files (id, filename, purpose, bytes, created_at, format, examples, owner) VALUES (@id, @filename, @purpose, @bytes, @createdAt, @format, @examples, @owner)",
    );
    this.#get = db.prepare("SELECT * FROM files WHERE id = ?");
    this.#seq = db.prepare("SELECT seq FROM files WHERE id = ?").pluck();
    this.#delete = db.prepare("DELETE FROM files WHERE id = ?");
  }

  insert(f: FileRecord): FileRecord {
    this.#insert.run(f);
    return f;
  }

  get(id: string): FileRecord | null {
    const row = this.#get.get(id) as FileRow | undefined;
    return row ? toRecord(row) : null;
  }

  /** OpenAI's list: newest first by default; `after` is a file id (UnknownFileError if absent). */
  list(q: { purpose?: string; after?: string; limit: number; order: SortOrder }): Page<FileRecord> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.purpose !== undefined) {
      where.push("purpose = ?");
      args.push(q.purpose);
    }
    if (q.after !== undefined) {
      const seq = this.#seq.get(q.after) as number | undefined;
      if (seq === undefined) throw new UnknownFileError(q.after);
      where.push(q.order === "asc" ? "seq > ?" : "seq < ?");
      args.push(seq);
    }
    const sql = `SELECT * FROM files ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq ${q.order === "asc" ? "ASC" : "DESC"} LIMIT ?`;
    const rows = this.#db.prepare(sql).all(...args, q.limit + 1) as FileRow[];
    return { items: rows.slice(0, q.limit).map(toRecord), hasMore: rows.length > q.limit };
  }

  /** false when there was no such file */
  delete(id: string): boolean {
    return this.#delete.run(id).changes > 0;
  }
}
