// GET /v1/models and GET /v1/models/{id}: the one model this server serves.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { errors } from "../errors.js";
import type { RouteOptions } from "../request-context.js";
import type { ModelBody, ModelListBody } from "../schemas/responses.js";
import type { Serving, ServingSlot } from "../serving.js";

function ready(slot: ServingSlot): Serving {
  const s = slot.state;
  if (s.status === "loading") throw errors.modelLoading();
  if (s.status === "failed") throw errors.modelFailed(s.message);
  return s.serving;
}

const modelBody = (s: Serving): ModelBody => ({ id: s.servedModelName, object: "model", created: s.createdAt, owned_by: "hybridchat" });

export const modelsRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.get("/v1/models", async (): Promise<ModelListBody> => ({ object: "list", data: [modelBody(ready(opts.slot))] }));

  // a wildcard, because served names may hold slashes ("org/model")
  app.get("/v1/models/*", async (request): Promise<ModelBody> => {
    const serving = ready(opts.slot);
    const id = (request.params as { "*": string })["*"];
    if (id !== serving.servedModelName) throw errors.modelNotFound(id, serving.servedModelName);
    return modelBody(serving);
  });
};
