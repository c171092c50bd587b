// Published model versions (a job's adapter under its own model id) and which version,
// if any, a base id serves (promotion).
import type { Db } from "./db.js";

export interface VersionRecord {
  /** ft:<base>:<suffix>:<job-id> */
  id: string;
  base: string;
  jobId: string;
  /** the PEFT adapter directory */
  dir: string;
  createdAt: number;
}

interface VersionRow {
  id: string;
  base: string;
  job_id: string;
  dir: string;
  created_at: number;
}

export class VersionStore {
  readonly #insert;
  readonly #all;
  readonly #alias;
  readonly #setAlias;
  readonly #clearAlias;
  readonly #one;
  readonly #delete;
  readonly #deleteAliases;

  constructor(db: Db) {
    this.#insert = db.prepare("INSERT INTO model_versions (id, base, job_id, dir, created_at) VALUES (@id, @base, @jobId, @dir, @createdAt)");
    this.#all = db.prepare("SELECT * FROM model_versions ORDER BY seq");
    this.#alias = db.prepare("SELECT target FROM model_aliases WHERE alias = ?").pluck();
    this.#setAlias = db.prepare("INSERT OR REPLACE INTO model_aliases (alias, target) VALUES (?, ?)");
    this.#clearAlias = db.prepare("DELETE FROM model_aliases WHERE alias = ?");
    this.#one = db.prepare("SELECT * FROM model_versions WHERE id = ?");
    this.#delete = db.prepare("DELETE FROM model_versions WHERE id = ?");
    this.#deleteAliases = db.prepare("DELETE FROM model_aliases WHERE target = ?");
  }

  get(id: string): VersionRecord | null {
    const r = this.#one.get(id) as VersionRow | undefined;
    return r ? { id: r.id, base: r.base, jobId: r.job_id, dir: r.dir, createdAt: r.created_at } : null;
  }

  /** Forgets version `id` (and any alias pointing at it). */
  delete(id: string): void {
    this.#deleteAliases.run(id);
    this.#delete.run(id);
  }

  insert(v: VersionRecord): void {
    this.#insert.run(v);
  }

  all(): VersionRecord[] {
    return (this.#all.all() as VersionRow[]).map((r) => ({ id: r.id, base: r.base, jobId: r.job_id, dir: r.dir, createdAt: r.created_at }));
  }

  /** the version `alias` serves, or null for its own base weights */
  promoted(alias: string): string | null {
    return (this.#alias.get(alias) as string | undefined) ?? null;
  }

  /** `target` null: the alias serves its base weights again */
  promote(alias: string, target: string | null): void {
    if (target === null) this.#clearAlias.run(alias);
    else this.#setAlias.run(alias, target);
  }
}
