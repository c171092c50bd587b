// POST /v1/feedback (ratings, preferences, corrections; Idempotency-Key), GET /v1/feedback
// (list and filter; status=pending is the review queue), GET /v1/feedback/export (JSONL in
// OpenAI's training formats: what may train only) and, for admins, POST
// /v1/feedback/{id}/approve and /reject (the review of free-text preferences).
import { Readable } from "node:stream";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { errors } from "../errors.js";
import { feedbackBody, resolveFeedback } from "../feedback-forms.js";
import { listPage } from "../list-pages.js";
import { nowSeconds } from "../openai-shapes.js";
import { queryValidatorCompiler } from "../query-validation.js";
import { ownedBy } from "../ownership.js";
import { requireStore, type RouteOptions } from "../request-context.js";
import { FeedbackRequestSchema } from "../schemas/feedback.js";
import { DEFAULT_LIMIT, ExportQuerySchema, IdParamsSchema, ListFeedbackQuerySchema } from "../schemas/store-queries.js";
import type { FeedbackBody, ListPageBody } from "../schemas/store-responses.js";
import { exportLines, storedCompletionTools } from "../../store/export.js";
import { trainable, UnknownFeedbackError } from "../../store/feedback.js";

const SCOPE = "POST /v1/feedback";

/** The Idempotency-Key header (Stripe's limit: 255 characters), or null. */
function idempotencyKey(header: string | string[] | undefined): string | null {
  if (header === undefined) return null;
  const key = Array.isArray(header) ? header[0]! : header;
  if (key.length === 0 || key.length > 255)
    throw errors.invalidRequest("The Idempotency-Key header must be 1 to 255 characters.", "Idempotency-Key", "invalid_idempotency_key");
  return key;
}

export const feedbackRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.post("/v1/feedback", { config: { access: "user" }, schema: { body: FeedbackRequestSchema } }, async (request, reply) => {
    const store = requireStore(opts.store);
    const key = idempotencyKey(request.headers["idempotency-key"]);
    // per API key: another key's Idempotency-Key never replays this one's response
    const scope = request.apiKeyId === null ? SCOPE : `${SCOPE} ${request.apiKeyId}`;
    const out = store.idempotency.run<FeedbackBody>(scope, key, request.body, () => ({
      status: 200,
      body: feedbackBody(store.feedback.insert(resolveFeedback(store, request.body, { owner: request.apiKeyId, sees: ownedBy(request), trusted: request.apiKeyRole !== "user" }), nowSeconds())),
    }));
    if (out.kind === "mismatch") throw errors.idempotencyKeyReused();
    if (out.kind === "replay") reply.header("idempotent-replayed", "true");
    return reply.code(out.status).send(out.body);
  });

  app.get(
    "/v1/feedback",
    { config: { access: "user" }, schema: { querystring: ListFeedbackQuerySchema }, validatorCompiler: queryValidatorCompiler },
    async (request): Promise<ListPageBody<FeedbackBody>> => {
      const store = requireStore(opts.store);
      const q = request.query;
      try {
        const page = store.feedback.list({
          type: q.type,
          source: q.source,
          status: q.status,
          completionId: q.completion_id,
          model: q.model,
          since: q.since,
          until: q.until,
          after: q.after,
          limit: q.limit ?? DEFAULT_LIMIT,
          order: q.order ?? "asc",
          ownedBy: ownedBy(request),
        });
        return listPage({ items: page.items.map(feedbackBody), hasMore: page.hasMore });
      } catch (e) {
        if (e instanceof UnknownFeedbackError) throw errors.feedbackNotFound(e.id, "after");
        throw e;
      }
    },
  );

  app.get(
    "/v1/feedback/export",
    { config: { access: "user" }, schema: { querystring: ExportQuerySchema }, validatorCompiler: queryValidatorCompiler },
    async (request, reply) => {
      const store = requireStore(opts.store);
      const q = request.query;
      const lines = exportLines(store.feedback, q.format, { model: q.model, since: q.since, until: q.until, ownedBy: ownedBy(request), ...trainable(opts.trainingSources) }, storedCompletionTools(store.completions));
      return reply
        .type("application/jsonl; charset=utf-8")
        .header("content-disposition", `attachment; filename="feedback-${q.format}.jsonl"`)
        .send(Readable.from(lines));
    },
  );

  // the review: an admin's verdict on any feedback (typically status=pending); approved trains, rejected never does
  for (const [verb, status] of [["approve", "approved"], ["reject", "rejected"]] as const)
    app.post(
      `/v1/feedback/:id/${verb}`,
      { config: { access: "admin" }, schema: { params: IdParamsSchema }, validatorCompiler: queryValidatorCompiler },
      async (request): Promise<FeedbackBody> => {
        const f = requireStore(opts.store).feedback.review(request.params.id, status, request.apiKeyId, nowSeconds());
        if (!f) throw errors.feedbackNotFound(request.params.id, "feedback_id");
        return feedbackBody(f);
      },
    );
};
