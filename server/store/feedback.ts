// The feedback table group: ratings, preferences and corrections, listed and scanned
// for export. Rows carry their own prompt and texts, so export needs no joins.
import { randomBytes } from "node:crypto";
import type { Db } from "./db.js";
import { visibleTo, type OwnedBy, type Owner, type Page, type PromptMessage, type SortOrder } from "./types.js";

export type FeedbackType = "rating" | "preference" | "correction";

/**
 * Where feedback came from: `rating`, a judgement (rating or correction) of an answer this
 * server produced; `pairwise`, a choice between two answers it produced; `text`, a
 * preference whose prompt and answers the sender wrote ({prompt, chosen, rejected}).
 */
export const FEEDBACK_SOURCES = ["rating", "pairwise", "text"] as const;
export type FeedbackSource = (typeof FEEDBACK_SOURCES)[number];
/** what trains by default (--rlhf-sources): judgements on answers the server itself produced */
export const DEFAULT_TRAINING_SOURCES: readonly FeedbackSource[] = ["rating", "pairwise"];

/** pending: waits for an admin (free text from a user key); only approved feedback trains */
export type FeedbackStatus = "pending" | "approved" | "rejected";

/** The feedback that may train: from the allowed sources, and approved (free text from a user key waits for an admin). */
export const trainable = (sources: readonly FeedbackSource[]): Pick<FeedbackFilter, "source" | "status"> => ({ source: sources, status: "approved" });

/** A piece of feedback's source, from its form. */
export function sourceOf(f: Pick<RatingFeedback, "type"> | Pick<CorrectionFeedback, "type"> | Pick<PreferenceFeedback, "type" | "chosenId">): FeedbackSource {
  if (f.type !== "preference") return "rating";
  return f.chosenId === null ? "text" : "pairwise";
}

interface FeedbackBase {
  /** the conversation the judged answers continue */
  promptMessages: PromptMessage[];
}

export interface RatingFeedback extends FeedbackBase {
  type: "rating";
  completionId: string;
  choiceIndex: number;
  rating: 1 | -1;
  comment: string | null;
  /** the rated answer's text */
  answer: string;
  model: string;
}

export interface CorrectionFeedback extends FeedbackBase {
  type: "correction";
  completionId: string;
  choiceIndex: number;
  correction: string;
  /** the corrected answer's text */
  answer: string;
  model: string;
}

/** a tool call as the client got it (OpenAI's `message.tool_calls`: arguments as JSON text) */
export interface StoredToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface PreferenceFeedback extends FeedbackBase {
  type: "preference";
  /** the tools the prompt offered (null: none) and its parallel_tool_calls (null: not given) */
  tools: object[] | null;
  parallelToolCalls: boolean | null;
  /** each answer's tool calls; null: the answer is text */
  chosenToolCalls: StoredToolCall[] | null;
  rejectedToolCalls: StoredToolCall[] | null;
  /** null when the preference was given as text */
  chosenId: string | null;
  chosenIndex: number | null;
  rejectedId: string | null;
  rejectedIndex: number | null;
  chosen: string;
  rejected: string;
  model: string | null;
  rejectedModel: string | null;
}

export type NewFeedback = (RatingFeedback | CorrectionFeedback | PreferenceFeedback) & {
  /** the key that sent it */
  owner: Owner;
  status: FeedbackStatus;
};
export type FeedbackRecord = NewFeedback & {
  id: string;
  created: number;
  source: FeedbackSource;
  /** the admin key id that approved or rejected it (null: not reviewed, or no keys) */
  reviewedBy: string | null;
  reviewedAt: number | null;
};

export interface FeedbackFilter {
  type?: FeedbackType | readonly FeedbackType[];
  /** as the judged, chosen or rejected completion */
  completionId?: string;
  /** as the model of the judged, chosen or rejected answer */
  model?: string;
  /** created >= since (unix seconds) */
  since?: number;
  /** created < until (unix seconds) */
  until?: number;
  /** only +1 ratings (for SFT) */
  positiveOnly?: boolean;
  /** only this key's feedback */
  ownedBy?: OwnedBy;
  source?: FeedbackSource | readonly FeedbackSource[];
  status?: FeedbackStatus;
}

export interface FeedbackQuery extends FeedbackFilter {
  after?: string;
  limit: number;
  order: SortOrder;
}

interface FeedbackRow {
  seq: number;
  id: string;
  type: FeedbackType;
  created: number;
  completion_id: string | null;
  choice_index: number | null;
  rating: 1 | -1 | null;
  comment: string | null;
  correction: string | null;
  chosen_id: string | null;
  chosen_index: number | null;
  rejected_id: string | null;
  rejected_index: number | null;
  prompt_messages: string;
  answer: string | null;
  chosen: string | null;
  rejected: string | null;
  model: string | null;
  rejected_model: string | null;
  owner: string | null;
  source: FeedbackSource;
  status: FeedbackStatus;
  reviewed_by: string | null;
  reviewed_at: number | null;
  tools: string | null;
  parallel_tool_calls: 0 | 1 | null;
  chosen_tool_calls: string | null;
  rejected_tool_calls: string | null;
}

/** Thrown by list() for an `after` id that is not there. */
export class UnknownFeedbackError extends Error {
  constructor(readonly id: string) {
    super(`no feedback ${id}`);
    this.name = "UnknownFeedbackError";
  }
}

export const feedbackId = (): string => `fb_${randomBytes(12).toString("base64url")}`;

export class FeedbackStore {
  readonly #db: Db;
  readonly #insert;
  readonly #seqOf;
  readonly #get;
  readonly #review;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare(
      `INSERT INTO feedback (id, type, created, completion_id, choice_index, rating, comment, correction, chosen_id,
         chosen_index, rejected_id, rejected_index, prompt_messages, answer, chosen, rejected, model, rejected_model, owner, source, status,
         tools, parallel_tool_calls, chosen_tool_calls, rejected_tool_calls)
       VALUES (@id, @type, @created, @completion_id, @choice_index, @rating, @comment, @correction, @chosen_id,
         @chosen_index, @rejected_id, @rejected_index, @prompt_messages, @answer, @chosen, @rejected, @model, @rejected_model, @owner, @source, @status,
         @tools, @parallel_tool_calls, @chosen_tool_calls, @rejected_tool_calls)`,
    );
    this.#seqOf = db.prepare("SELECT seq, owner FROM feedback WHERE id = ?");
    this.#get = db.prepare("SELECT * FROM feedback WHERE id = ?");
    this.#review = db.prepare("UPDATE feedback SET status = @status, reviewed_by = @by, reviewed_at = @at WHERE id = @id");
  }

  /** Stores one piece of feedback. Call inside the caller's transaction when it has one. */
  insert(f: NewFeedback, created: number, id = feedbackId()): FeedbackRecord {
    const source = sourceOf(f);
    const row: Omit<FeedbackRow, "seq" | "reviewed_by" | "reviewed_at"> = {
      id,
      type: f.type,
      created,
      completion_id: f.type === "preference" ? null : f.completionId,
      choice_index: f.type === "preference" ? null : f.choiceIndex,
      rating: f.type === "rating" ? f.rating : null,
      comment: f.type === "rating" ? f.comment : null,
      correction: f.type === "correction" ? f.correction : null,
      chosen_id: f.type === "preference" ? f.chosenId : null,
      chosen_index: f.type === "preference" ? f.chosenIndex : null,
      rejected_id: f.type === "preference" ? f.rejectedId : null,
      rejected_index: f.type === "preference" ? f.rejectedIndex : null,
      prompt_messages: JSON.stringify(f.promptMessages),
      answer: f.type === "preference" ? null : f.answer,
      chosen: f.type === "preference" ? f.chosen : null,
      rejected: f.type === "preference" ? f.rejected : null,
      model: f.model,
      rejected_model: f.type === "preference" ? f.rejectedModel : null,
      owner: f.owner,
      source,
      status: f.status,
      tools: f.type === "preference" ? jsonOrNull(f.tools) : null,
      parallel_tool_calls: f.type === "preference" && f.parallelToolCalls !== null ? (f.parallelToolCalls ? 1 : 0) : null,
      chosen_tool_calls: f.type === "preference" ? jsonOrNull(f.chosenToolCalls) : null,
      rejected_tool_calls: f.type === "preference" ? jsonOrNull(f.rejectedToolCalls) : null,
    };
    this.#insert.run(row);
    return { ...f, id, created, source, reviewedBy: null, reviewedAt: null };
  }

  /** The feedback, or null when there is none that `ownedBy` may see. */
  get(id: string, ownedBy?: OwnedBy): FeedbackRecord | null {
    const row = this.#get.get(id) as FeedbackRow | undefined;
    return row && visibleTo(row.owner, ownedBy) ? toRecord(row) : null;
  }

  /** An admin's verdict: approved feedback trains, rejected never does. Null: no such feedback. */
  review(id: string, status: "approved" | "rejected", by: string | null, at: number): FeedbackRecord | null {
    this.#review.run({ id, status, by, at });
    return this.get(id);
  }

  list(q: FeedbackQuery): Page<FeedbackRecord> {
    let afterSeq: number | undefined;
    if (q.after !== undefined) {
      const cursor = this.#seqOf.get(q.after) as { seq: number; owner: string | null } | undefined;
      // another key's row is as unknown as a missing one: a cursor never tells that it exists
      if (cursor === undefined || !visibleTo(cursor.owner, q.ownedBy)) throw new UnknownFeedbackError(q.after);
      afterSeq = cursor.seq;
    }
    const rows = this.#select(q, afterSeq, q.order, q.limit + 1);
    return { items: rows.slice(0, q.limit).map(toRecord), hasMore: rows.length > q.limit };
  }

  /**
   * The next `limit` rows after insertion position `afterSeq` (0: from the start), oldest
   * first, with the position to continue from. Export reads in such batches instead of one
   * long-lived statement, so other requests can use the connection between batches.
   */
  scan(filter: FeedbackFilter, afterSeq: number, limit: number): { items: FeedbackRecord[]; next: number } {
    const rows = this.#select(filter, afterSeq, "asc", limit);
    return { items: rows.map(toRecord), next: rows.at(-1)?.seq ?? afterSeq };
  }

  #select(f: FeedbackFilter, afterSeq: number | undefined, order: SortOrder, limit: number): FeedbackRow[] {
    const where: string[] = [];
    const params: Record<string, string | number> = { limit };
    if (afterSeq !== undefined) {
      where.push(order === "asc" ? "seq > @after" : "seq < @after");
      params.after = afterSeq;
    }
    if (f.type !== undefined) {
      const types = typeof f.type === "string" ? [f.type] : f.type;
      where.push(`type IN (${types.map((_, i) => `@t${i}`).join(", ")})`);
      types.forEach((t, i) => (params[`t${i}`] = t));
    }
    if (f.completionId !== undefined) {
      where.push("(completion_id = @cid OR chosen_id = @cid OR rejected_id = @cid)");
      params.cid = f.completionId;
    }
    if (f.model !== undefined) {
      where.push("(model = @model OR rejected_model = @model)");
      params.model = f.model;
    }
    if (f.since !== undefined) {
      where.push("created >= @since");
      params.since = f.since;
    }
    if (f.until !== undefined) {
      where.push("created < @until");
      params.until = f.until;
    }
    if (f.source !== undefined) {
      const sources = typeof f.source === "string" ? [f.source] : f.source;
      // no source at all matches nothing (an empty IN list is not SQL)
      where.push(sources.length ? `source IN (${sources.map((_, i) => `@s${i}`).join(", ")})` : "0");
      sources.forEach((s, i) => (params[`s${i}`] = s));
    }
    if (f.status !== undefined) {
      where.push("status = @status");
      params.status = f.status;
    }
    if (f.ownedBy !== undefined) {
      where.push("owner = @owner");
      params.owner = f.ownedBy;
    }
    if (f.positiveOnly) where.push("(type <> 'rating' OR rating = 1)");
    const sql =
      `SELECT * FROM feedback ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ` +
      `ORDER BY seq ${order === "asc" ? "ASC" : "DESC"} LIMIT @limit`;
    return this.#db.prepare(sql).all(params) as FeedbackRow[];
  }
}

function toRecord(r: FeedbackRow): FeedbackRecord {
  const base = {
    id: r.id,
    created: r.created,
    promptMessages: JSON.parse(r.prompt_messages) as PromptMessage[],
    owner: r.owner,
    source: r.source,
    status: r.status,
    reviewedBy: r.reviewed_by,
    reviewedAt: r.reviewed_at,
  };
  switch (r.type) {
    case "rating":
      return {
        ...base,
        type: "rating",
        completionId: r.completion_id!,
        choiceIndex: r.choice_index!,
        rating: r.rating!,
        comment: r.comment,
        answer: r.answer!,
        model: r.model!,
      };
    case "correction":
      return {
        ...base,
        type: "correction",
        completionId: r.completion_id!,
        choiceIndex: r.choice_index!,
        correction: r.correction!,
        answer: r.answer!,
        model: r.model!,
      };
    case "preference":
      return {
        ...base,
        type: "preference",
        chosenId: r.chosen_id,
        chosenIndex: r.chosen_index,
        rejectedId: r.rejected_id,
        rejectedIndex: r.rejected_index,
        chosen: r.chosen!,
        rejected: r.rejected!,
        model: r.model,
        rejectedModel: r.rejected_model,
        tools: r.tools === null ? null : (JSON.parse(r.tools) as object[]),
        parallelToolCalls: r.parallel_tool_calls === null ? null : r.parallel_tool_calls === 1,
        chosenToolCalls: r.chosen_tool_calls === null ? null : (JSON.parse(r.chosen_tool_calls) as StoredToolCall[]),
        rejectedToolCalls: r.rejected_tool_calls === null ? null : (JSON.parse(r.rejected_tool_calls) as StoredToolCall[]),
      };
  }
}

const jsonOrNull = (v: unknown): string | null => (v === null ? null : JSON.stringify(v));
