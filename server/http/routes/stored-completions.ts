// GET /v1/chat/completions (list), /v1/chat/completions/{id}, /v1/chat/completions/{id}/messages:
// stored chat completions, exactly as they were returned.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { errors } from "../errors.js";
import { listPage, pageOf, storedMessages } from "../list-pages.js";
import { queryValidatorCompiler } from "../query-validation.js";
import { requireStore, type RouteOptions } from "../request-context.js";
import {
  DEFAULT_LIMIT,
  IdParamsSchema,
  ListCompletionsQuerySchema,
  ListMessagesQuerySchema,
  metadataFilter,
} from "../schemas/store-queries.js";
import type { ChatCompletionBody } from "../schemas/responses.js";
import type { ListPageBody, StoredMessageBody } from "../schemas/store-responses.js";
import { UnknownCursorError } from "../../store/completions.js";
import type { Store } from "../../store/store.js";
import type { CompletionRecord, OwnedBy } from "../../store/types.js";
import { ownedBy } from "../ownership.js";

function storedChat(store: Store, id: string, owner: OwnedBy): CompletionRecord {
  const c = store.completions.get(id, owner);
  if (!c || c.object !== "chat.completion") throw errors.completionNotFound(id, "completion_id");
  return c;
}

export const storedCompletionsRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  const validatorCompiler = queryValidatorCompiler;

  app.get("/v1/chat/completions", { config: { access: "user" }, schema: { querystring: ListCompletionsQuerySchema }, validatorCompiler }, async (request) => {
    const store = requireStore(opts.store);
    const q = request.query;
    try {
      const page = store.completions.list({
        object: "chat.completion",
        after: q.after,
        limit: q.limit ?? DEFAULT_LIMIT,
        order: q.order ?? "asc",
        model: q.model,
        metadata: metadataFilter(q),
        ownedBy: ownedBy(request),
      });
      return listPage({ items: page.items.map((c) => c.response as ChatCompletionBody), hasMore: page.hasMore });
    } catch (e) {
      if (e instanceof UnknownCursorError) throw errors.completionNotFound(e.id, "after");
      throw e;
    }
  });

  app.get("/v1/chat/completions/:id", { config: { access: "user" }, schema: { params: IdParamsSchema }, validatorCompiler }, async (request) => {
    return storedChat(requireStore(opts.store), request.params.id, ownedBy(request)).response as ChatCompletionBody;
  });

  app.get(
    "/v1/chat/completions/:id/messages",
    { config: { access: "user" }, schema: { params: IdParamsSchema, querystring: ListMessagesQuerySchema }, validatorCompiler },
    async (request): Promise<ListPageBody<StoredMessageBody>> => {
      const c = storedChat(requireStore(opts.store), request.params.id, ownedBy(request));
      const q = request.query;
      const page = pageOf(storedMessages(c), { after: q.after, limit: q.limit ?? DEFAULT_LIMIT, order: q.order ?? "asc" });
      if (!page) throw errors.invalidRequest(`No message '${q.after}' in completion '${c.id}'.`, "after", "message_not_found");
      return listPage(page);
    },
  );
};
