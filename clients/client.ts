// The hybridchat client: the official `openai` client (chat, completions, models, files,
// stored completions work exactly as there) plus typed helpers for hybridchat's extensions.
//   const hc = new HybridchatClient({ baseURL: "http://127.0.0.1:8000/v1", apiKey: process.env.HYBRIDCHAT_API_KEY });
//   const r = await hc.chat.completions.create({ model, messages });
//   await hc.feedback.rate(r.id, 1);
import OpenAI, { type ClientOptions } from "openai";
import type { FeedbackBody, ListPageBody } from "../server/http/schemas/store-responses.js";
import { JobsResource } from "./jobs.js";
import { VersionsResource, type ModelBody } from "./versions.js";

export type { FeedbackBody };
export type FeedbackType = FeedbackBody["type"];

export interface FeedbackOptions {
  /** which choice of an `n > 1` completion is judged (default 0) */
  choiceIndex?: number;
  /** makes a retry of the same call safe: the server answers it with the first response */
  idempotencyKey?: string;
}

/** A preference: two stored completions, two choices of one, or plain text. */
export type Preference =
  | { chosenId: string; rejectedId: string }
  | { completionId: string; chosenIndex: number; rejectedIndex: number }
  | { prompt: string | OpenAI.ChatCompletionMessageParam[]; chosen: string; rejected: string };

export interface FeedbackQuery {
  type?: FeedbackType;
  source?: FeedbackBody["source"];
  /** "pending": the free-text preferences waiting for an admin's review */
  status?: FeedbackBody["status"];
  completionId?: string;
  model?: string;
  /** unix seconds */
  since?: number;
  until?: number;
  after?: string;
  limit?: number;
  order?: "asc" | "desc";
}

/** POST/GET /v1/feedback (a hybridchat extension). */
export class FeedbackResource {
  constructor(private readonly client: OpenAI) {}

  /** a thumbs up (1) or down (-1) on a stored completion */
  rate(completionId: string, rating: 1 | -1, opts: FeedbackOptions & { comment?: string } = {}): Promise<FeedbackBody> {
    return this.#send({ completion_id: completionId, rating, comment: opts.comment, choice_index: opts.choiceIndex }, opts);
  }

  /** a better answer for a stored completion (becomes an SFT example) */
  correct(completionId: string, correction: string, opts: FeedbackOptions = {}): Promise<FeedbackBody> {
    return this.#send({ completion_id: completionId, correction, choice_index: opts.choiceIndex }, opts);
  }

  prefer(p: Preference, opts: Pick<FeedbackOptions, "idempotencyKey"> = {}): Promise<FeedbackBody> {
    const body =
      "chosenId" in p
        ? { chosen_id: p.chosenId, rejected_id: p.rejectedId }
        : "completionId" in p
          ? { completion_id: p.completionId, chosen_index: p.chosenIndex, rejected_index: p.rejectedIndex }
          : { prompt: p.prompt, chosen: p.chosen, rejected: p.rejected };
    return this.#send(body, opts);
  }

  /** one page of collected feedback, oldest first unless `order: "desc"` (`after` pages on) */
  list(q: FeedbackQuery = {}): Promise<ListPageBody<FeedbackBody>> {
    const query: Record<string, string | number> = {};
    if (q.type) query.type = q.type;
    if (q.source) query.source = q.source;
    if (q.status) query.status = q.status;
    if (q.completionId) query.completion_id = q.completionId;
    if (q.model) query.model = q.model;
    if (q.since !== undefined) query.since = q.since;
    if (q.until !== undefined) query.until = q.until;
    if (q.after) query.after = q.after;
    if (q.limit !== undefined) query.limit = q.limit;
    if (q.order) query.order = q.order;
    return this.client.get<ListPageBody<FeedbackBody>>("/feedback", { query });
  }

  /** the feedback as JSONL in OpenAI's fine-tuning formats: "sft" (chat) or "dpo" (preference) */
  async export(format: "sft" | "dpo"): Promise<string> {
    const res = await this.client.get<Response>("/feedback/export", { query: { format }, __binaryResponse: true });
    return res.text();
  }

  /** admin keys: let a piece of feedback (e.g. a pending free-text preference) train */
  approve(id: string): Promise<FeedbackBody> {
    return this.client.post<FeedbackBody>(`/feedback/${encodeURIComponent(id)}/approve`);
  }

  /** admin keys: keep a piece of feedback out of training for good */
  reject(id: string): Promise<FeedbackBody> {
    return this.client.post<FeedbackBody>(`/feedback/${encodeURIComponent(id)}/reject`);
  }

  #send(body: Record<string, unknown>, opts: Pick<FeedbackOptions, "idempotencyKey">): Promise<FeedbackBody> {
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    const headers = opts.idempotencyKey ? { "Idempotency-Key": opts.idempotencyKey } : undefined;
    return this.client.post<FeedbackBody>("/feedback", { body, headers });
  }
}

/** The key sent when none is given: a server without API keys ignores it. */
const NO_KEY = "unused";

export class HybridchatClient extends OpenAI {
  readonly feedback: FeedbackResource;
  /** fine-tuning jobs: every method the server runs, and `stream(id)` over the WebSocket */
  readonly jobs: JobsResource;
  /** served versions: list, promote, rollback */
  readonly versions: VersionsResource;

  /** `apiKey` defaults to $HYBRIDCHAT_API_KEY; a server without keys needs none */
  constructor(opts: ClientOptions = {}) {
    super({ ...opts, apiKey: opts.apiKey ?? process.env.HYBRIDCHAT_API_KEY ?? NO_KEY });
    this.feedback = new FeedbackResource(this);
    this.jobs = new JobsResource(this);
    this.versions = new VersionsResource(this);
  }

  /** the same as `versions.promote` */
  promote(modelId: string): Promise<ModelBody> {
    return this.versions.promote(modelId);
  }
}
