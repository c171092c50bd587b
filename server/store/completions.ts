// The completions table group: insert a finished completion, get one, list them.
import { createHash } from "node:crypto";
import type { Db } from "./db.js";
import { visibleTo, type CompletionObject, type CompletionRecord, type OwnedBy, type Page, type PromptMessage, type SortOrder, type StoredChoice } from "./types.js";

/** "The same prompt": equal conversations (roles, names, texts) hash equal. */
export function promptKey(messages: readonly PromptMessage[]): string {
  const canonical = messages.map((m) => [m.role, m.name ?? null, m.content]);
  return createHash("sha256").update(JSON.stringify(canonical)).digest("hex");
}

export interface CompletionQuery {
  object: CompletionObject;
  /** id of the last item of the previous page */
  after?: string;
  limit: number;
  order: SortOrder;
  model?: string;
  /** every pair must match */
  metadata?: Record<string, string>;
  /** only this key's completions (an `after` of another key's is unknown) */
  ownedBy?: OwnedBy;
}

interface CompletionRow {
  id: string;
  object: CompletionObject;
  created: number;
  model: string;
  adapter: string | null;
  system_fingerprint: string;
  request: string;
  prompt_messages: string | null;
  response: string;
  prompt_tokens: number;
  completion_tokens: number;
  queued_ms: number;
  ttft_ms: number;
  total_ms: number;
  streamed: number;
  metadata: string;
  owner: string | null;
}

interface ChoiceRow {
  idx: number;
  text: string;
  finish_reason: string;
}

/** Thrown by list() for an `after` id that is not there. */
export class UnknownCursorError extends Error {
  constructor(readonly id: string) {
    super(`no stored completion ${id}`);
    this.name = "UnknownCursorError";
  }
}

export class CompletionStore {
  readonly #db: Db;
  readonly #insert;
  readonly #insertChoice;
  readonly #insertMeta;
  readonly #get;
  readonly #choices;
  readonly #seqOf;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare(
      `INSERT INTO completions (id, object, created, model, adapter, system_fingerprint, request, prompt_messages,
         prompt_key, response, prompt_tokens, completion_tokens, queued_ms, ttft_ms, total_ms, streamed, metadata, owner)
       VALUES (@id, @object, @created, @model, @adapter, @system_fingerprint, @request, @prompt_messages,
         @prompt_key, @response, @prompt_tokens, @completion_tokens, @queued_ms, @ttft_ms, @total_ms, @streamed, @metadata, @owner)`,
    );
    this.#insertChoice = db.prepare("INSERT INTO completion_choices (completion_id, idx, text, finish_reason) VALUES (?, ?, ?, ?)");
    this.#insertMeta = db.prepare("INSERT INTO completion_metadata (completion_id, key, value) VALUES (?, ?, ?)");
    this.#get = db.prepare("SELECT * FROM completions WHERE id = ?");
    this.#choices = db.prepare("SELECT idx, text, finish_reason FROM completion_choices WHERE completion_id = ? ORDER BY idx");
    this.#seqOf = db.prepare("SELECT seq, owner FROM completions WHERE id = ? AND object = ?");
  }

  /** Stores a finished completion with its choices and metadata, in one transaction. */
  insert(c: CompletionRecord): void {
    this.#db.transaction(() => {
      this.#insert.run({
        id: c.id,
        object: c.object,
        created: c.created,
        model: c.model,
        adapter: c.adapter,
        system_fingerprint: c.systemFingerprint,
        request: JSON.stringify(c.request),
        prompt_messages: c.promptMessages === null ? null : JSON.stringify(c.promptMessages),
        prompt_key: c.promptMessages === null ? null : promptKey(c.promptMessages),
        response: JSON.stringify(c.response),
        prompt_tokens: c.promptTokens,
        completion_tokens: c.completionTokens,
        queued_ms: c.timings.queuedMs,
        ttft_ms: c.timings.ttftMs,
        total_ms: c.timings.totalMs,
        streamed: c.streamed ? 1 : 0,
        metadata: JSON.stringify(c.metadata),
        owner: c.owner,
      });
      for (const ch of c.choices) this.#insertChoice.run(c.id, ch.index, ch.text, ch.finishReason);
      for (const [k, v] of Object.entries(c.metadata)) this.#insertMeta.run(c.id, k, v);
    })();
  }

  /** The completion, or null when there is none that `ownedBy` may see. */
  get(id: string, ownedBy?: OwnedBy): CompletionRecord | null {
    const row = this.#get.get(id) as CompletionRow | undefined;
    return row && visibleTo(row.owner, ownedBy) ? this.#record(row) : null;
  }

  /** A page in insertion order (or its reverse), filtered by model and metadata pairs. */
  list(q: CompletionQuery): Page<CompletionRecord> {
    const where = ["object = @object"];
    const params: Record<string, string | number> = { object: q.object, limit: q.limit + 1 };
    if (q.ownedBy !== undefined) {
      where.push("owner = @owner");
      params.owner = q.ownedBy;
    }
    if (q.after !== undefined) {
      const cursor = this.#seqOf.get(q.after, q.object) as { seq: number; owner: string | null } | undefined;
      if (cursor === undefined || !visibleTo(cursor.owner, q.ownedBy)) throw new UnknownCursorError(q.after);
      const seq = cursor.seq;
      where.push(q.order === "asc" ? "seq > @after" : "seq < @after");
      params.after = seq;
    }
    if (q.model !== undefined) {
      where.push("model = @model");
      params.model = q.model;
    }
    Object.entries(q.metadata ?? {}).forEach(([k, v], i) => {
      where.push(`EXISTS (SELECT 1 FROM completion_metadata m WHERE m.completion_id = completions.id AND m.key = @mk${i} AND m.value = @mv${i})`);
      params[`mk${i}`] = k;
      params[`mv${i}`] = v;
    });
    // the filters vary per call; the statement cache of better-sqlite3 is per object, so
    // this prepares each time, which is cheap next to the page it reads
    const rows = this.#db
      .prepare(`SELECT * FROM completions WHERE ${where.join(" AND ")} ORDER BY seq ${q.order === "asc" ? "ASC" : "DESC"} LIMIT @limit`)
      .all(params) as CompletionRow[];
    const hasMore = rows.length > q.limit;
    return { items: rows.slice(0, q.limit).map((r) => this.#record(r)), hasMore };
  }

  #record(r: CompletionRow): CompletionRecord {
    const choices = (this.#choices.all(r.id) as ChoiceRow[]).map(
      (c): StoredChoice => ({ index: c.idx, text: c.text, finishReason: c.finish_reason }),
    );
    return {
      id: r.id,
      object: r.object,
      created: r.created,
      model: r.model,
      adapter: r.adapter,
      systemFingerprint: r.system_fingerprint,
      request: JSON.parse(r.request) as Record<string, unknown>,
      promptMessages: r.prompt_messages === null ? null : (JSON.parse(r.prompt_messages) as PromptMessage[]),
      choices,
      promptTokens: r.prompt_tokens,
      completionTokens: r.completion_tokens,
      timings: { queuedMs: r.queued_ms, ttftMs: r.ttft_ms, totalMs: r.total_ms },
      streamed: r.streamed === 1,
      metadata: JSON.parse(r.metadata) as Record<string, string>,
      owner: r.owner,
      response: JSON.parse(r.response) as CompletionRecord["response"],
    };
  }
}
