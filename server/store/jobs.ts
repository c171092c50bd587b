// Fine-tuning jobs, their events and their checkpoints. Every status change is one
// committed row update, so a restart finds each job where it was.
import { randomBytes } from "node:crypto";
import type { Db } from "./db.js";
import type { ExportFilter } from "./export.js";
import type { Owner, Page, SortOrder } from "./types.js";

export type JobStatus = "validating_files" | "queued" | "running" | "succeeded" | "failed" | "cancelled";
export const FINAL_STATUSES: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];
export const isFinal = (s: JobStatus): boolean => FINAL_STATUSES.includes(s);

/** numbers or "auto"; a string names a model (ppo's reward_model) */
export type Hyperparameters = Record<string, number | string>;

/** The method as the job keeps it: its type and its hyperparameters ("auto" until it runs). */
export interface JobMethod {
  type: string;
  hyperparameters: Hyperparameters;
}

export interface JobError {
  code: string;
  message: string;
  param: string | null;
}

export interface JobRecord {
  id: string;
  createdAt: number;
  /** the served base id trained on */
  model: string;
  /** a file id, or "feedback" */
  trainingFile: string;
  validationFile: string | null;
  feedbackFilter: ExportFilter | null;
  suffix: string | null;
  seed: number;
  method: JobMethod;
  status: JobStatus;
  error: JobError | null;
  startedAt: number | null;
  finishedAt: number | null;
  fineTunedModel: string | null;
  trainedTokens: number | null;
  resultFiles: string[];
  /** the key that created it (null: the server itself, e.g. continuous RLHF, or no keys) */
  owner: Owner;
}

export type JobPatch = Partial<Pick<JobRecord, "method" | "status" | "error" | "startedAt" | "finishedAt" | "fineTunedModel" | "trainedTokens" | "resultFiles">>;

export interface JobEvent {
  id: string;
  jobId: string;
  createdAt: number;
  level: "info" | "warn" | "error";
  message: string;
  type: "message" | "metrics";
  data: Record<string, unknown> | null;
}

export interface JobCheckpoint {
  id: string;
  jobId: string;
  createdAt: number;
  stepNumber: number;
  metrics: Record<string, number | null>;
  fineTunedModelCheckpoint: string;
  dir: string;
}

interface JobRow {
  id: string;
  created_at: number;
  model: string;
  training_file: string;
  validation_file: string | null;
  feedback_filter: string | null;
  suffix: string | null;
  seed: number;
  method: string;
  status: JobStatus;
  error: string | null;
  started_at: number | null;
  finished_at: number | null;
  fine_tuned_model: string | null;
  trained_tokens: number | null;
  result_files: string;
  owner: string | null;
}

interface EventRow {
  id: string;
  job_id: string;
  created_at: number;
  level: JobEvent["level"];
  message: string;
  type: JobEvent["type"];
  data: string | null;
}

interface CheckpointRow {
  id: string;
  job_id: string;
  created_at: number;
  step_number: number;
  metrics: string;
  fine_tuned_model_checkpoint: string;
  dir: string;
}

const hex = (n: number): string => randomBytes(n).toString("hex");
export const jobId = (): string => `ftjob-${hex(12)}`;

/** A new event with its id (stored by JobStore.addEvents). */
export const jobEvent = (e: Omit<JobEvent, "id">): JobEvent => ({ id: `ftevent-${hex(12)}`, ...e });

const toJob = (r: JobRow): JobRecord => ({
  id: r.id,
  createdAt: r.created_at,
  model: r.model,
  trainingFile: r.training_file,
  validationFile: r.validation_file,
  feedbackFilter: r.feedback_filter === null ? null : (JSON.parse(r.feedback_filter) as ExportFilter),
  suffix: r.suffix,
  seed: r.seed,
  method: JSON.parse(r.method) as JobMethod,
  status: r.status,
  error: r.error === null ? null : (JSON.parse(r.error) as JobError),
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  fineTunedModel: r.fine_tuned_model,
  trainedTokens: r.trained_tokens,
  resultFiles: JSON.parse(r.result_files) as string[],
  owner: r.owner,
});

const toEvent = (r: EventRow): JobEvent => ({
  id: r.id,
  jobId: r.job_id,
  createdAt: r.created_at,
  level: r.level,
  message: r.message,
  type: r.type,
  data: r.data === null ? null : (JSON.parse(r.data) as Record<string, unknown>),
});

const toCheckpoint = (r: CheckpointRow): JobCheckpoint => ({
  id: r.id,
  jobId: r.job_id,
  createdAt: r.created_at,
  stepNumber: r.step_number,
  metrics: JSON.parse(r.metrics) as Record<string, number | null>,
  fineTunedModelCheckpoint: r.fine_tuned_model_checkpoint,
  dir: r.dir,
});

// JobPatch keys → columns, with how each value is stored
const PATCH_COLUMNS: Record<keyof JobPatch, [string, (v: unknown) => unknown]> = {
  method: ["method", (v) => JSON.stringify(v)],
  status: ["status", (v) => v],
  error: ["error", (v) => (v === null ? null : JSON.stringify(v))],
  startedAt: ["started_at", (v) => v],
  finishedAt: ["finished_at", (v) => v],
  fineTunedModel: ["fine_tuned_model", (v) => v],
  trainedTokens: ["trained_tokens", (v) => v],
  resultFiles: ["result_files", (v) => JSON.stringify(v)],
};

/** A page of rows after the row whose id is `after`, by insertion order. */
function pageQuery<R>(db: Db, table: string, where: { sql: string; args: (string | number)[] }, q: { after?: string; limit: number; order: SortOrder }): { rows: R[]; hasMore: boolean } | null {
  const conds = where.sql ? [where.sql] : [];
  const args = [...where.args];
  if (q.after !== undefined) {
    const seq = db.prepare(`SELECT seq FROM ${table} WHERE id = ?`).pluck().get(q.after) as number | undefined;
    if (seq === undefined) return null;
    conds.push(q.order === "asc" ? "seq > ?" : "seq < ?");
    args.push(seq);
  }
  const sql = `SELECT * FROM ${table} ${conds.length ? `WHERE ${conds.join(" AND ")}` : ""} ORDER BY seq ${q.order === "asc" ? "ASC" : "DESC"} LIMIT ?`;
  const rows = db.prepare(sql).all(...args, q.limit + 1) as R[];
  return { rows: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
}

export class UnknownJobItemError extends Error {
  constructor(readonly id: string) {
    super(`no such id: ${id}`);
    this.name = "UnknownJobItemError";
  }
}

export class JobStore {
  readonly #db: Db;
  readonly #insert;
  readonly #get;
  readonly #insertEvent;
  readonly #insertCheckpoint;
  readonly #byStatus;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare(
      `INSERT INTO fine_tuning_jobs (id, created_at, model, training_file, validation_file, feedback_filter, suffix, seed, method, status, owner)
       VALUES (@id, @createdAt, @model, @trainingFile, @validationFile, @feedbackFilter, @suffix, @seed, @method, @status, @owner)`,
    );
    this.#get = db.prepare("SELECT * FROM fine_tuning_jobs WHERE id = ?");
    this.#insertEvent = db.prepare(
      "INSERT INTO fine_tuning_job_events (id, job_id, created_at, level, message, type, data) VALUES (@id, @jobId, @createdAt, @level, @message, @type, @data)",
    );
    this.#insertCheckpoint = db.prepare(
      `INSERT INTO fine_tuning_checkpoints (id, job_id, created_at, step_number, metrics, fine_tuned_model_checkpoint, dir)
       VALUES (@id, @jobId, @createdAt, @stepNumber, @metrics, @fineTunedModelCheckpoint, @dir)`,
    );
    this.#byStatus = db.prepare("SELECT * FROM fine_tuning_jobs WHERE status = ? ORDER BY seq");
  }

  insert(j: Omit<JobRecord, "error" | "startedAt" | "finishedAt" | "fineTunedModel" | "trainedTokens" | "resultFiles">): JobRecord {
    this.#insert.run({
      ...j,
      feedbackFilter: j.feedbackFilter === null ? null : JSON.stringify(j.feedbackFilter),
      method: JSON.stringify(j.method),
    });
    return this.get(j.id)!;
  }

  get(id: string): JobRecord | null {
    const row = this.#get.get(id) as JobRow | undefined;
    return row ? toJob(row) : null;
  }

  /** Applies `patch` and returns the job as it is now. */
  update(id: string, patch: JobPatch): JobRecord {
    const sets: string[] = [];
    const args: unknown[] = [];
    for (const [k, v] of Object.entries(patch) as [keyof JobPatch, unknown][]) {
      if (v === undefined) continue;
      const [col, enc] = PATCH_COLUMNS[k];
      sets.push(`${col} = ?`);
      args.push(enc(v));
    }
    if (sets.length > 0) this.#db.prepare(`UPDATE fine_tuning_jobs SET ${sets.join(", ")} WHERE id = ?`).run(...args, id);
    const job = this.get(id);
    if (!job) throw new UnknownJobItemError(id);
    return job;
  }

  withStatus(status: JobStatus): JobRecord[] {
    return (this.#byStatus.all(status) as JobRow[]).map(toJob);
  }

  /** newest first, as OpenAI lists jobs; null when `after` is not a job id */
  list(q: { after?: string; limit: number }): Page<JobRecord> | null {
    const p = pageQuery<JobRow>(this.#db, "fine_tuning_jobs", { sql: "", args: [] }, { ...q, order: "desc" });
    return p && { items: p.rows.map(toJob), hasMore: p.hasMore };
  }

  /** Stores events (made by jobEvent) in the order given, in one transaction. */
  addEvents(events: readonly JobEvent[]): void {
    this.#db.transaction(() => {
      for (const ev of events) this.#insertEvent.run({ ...ev, data: ev.data === null ? null : JSON.stringify(ev.data) });
    })();
  }

  /** newest first (OpenAI); `order: "asc"` replays them in the order they happened */
  events(jobId: string, q: { after?: string; limit: number; order?: SortOrder }): Page<JobEvent> | null {
    const p = pageQuery<EventRow>(this.#db, "fine_tuning_job_events", { sql: "job_id = ?", args: [jobId] }, { ...q, order: q.order ?? "desc" });
    return p && { items: p.rows.map(toEvent), hasMore: p.hasMore };
  }

  addCheckpoint(c: Omit<JobCheckpoint, "id">): JobCheckpoint {
    const ck: JobCheckpoint = { id: `ftckpt-${hex(12)}`, ...c };
    this.#insertCheckpoint.run({ ...ck, metrics: JSON.stringify(ck.metrics) });
    return ck;
  }

  /** Forgets a job's checkpoints (their directories went with a job that did not succeed). */
  deleteCheckpoints(jobId: string): void {
    this.#db.prepare("DELETE FROM fine_tuning_checkpoints WHERE job_id = ?").run(jobId);
  }

  checkpoints(jobId: string, q: { after?: string; limit: number }): Page<JobCheckpoint> | null {
    const p = pageQuery<CheckpointRow>(this.#db, "fine_tuning_checkpoints", { sql: "job_id = ?", args: [jobId] }, { ...q, order: "desc" });
    return p && { items: p.rows.map(toCheckpoint), hasMore: p.hasMore };
  }
}
