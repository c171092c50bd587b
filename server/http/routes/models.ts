// GET /v1/models and GET /v1/models/{id}: the base model and each adapter served on it;
// POST /v1/models/{id}/promote (extension): the base id serves that version from now on
// (promoting the base id itself rolls back to the base weights); DELETE /v1/models/{id}: a
// published version goes (as OpenAI deletes fine-tuned models), unless it is promoted.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { promoteVersion } from "../../fine-tuning/versions.js";
import { readyServing, requireServing, type RouteOptions } from "../request-context.js";
import { errors } from "../errors.js";
import type { ModelBody, ModelListBody } from "../schemas/responses.js";
import type { Serving, ServedVariant } from "../../serving/serving.js";

// `root`/`parent` as vLLM reports LoRA modules: an adapter's parent is the base it runs on
const modelBody = (s: Serving, v: ServedVariant): ModelBody => ({
  id: v.id,
  object: "model",
  created: v.created,
  owned_by: "hybridchat",
  root: s.servedModelName,
  parent: v.id === s.servedModelName ? null : s.servedModelName,
  ...(v.id === s.servedModelName ? { serves: s.promoted ?? s.servedModelName } : {}),
});

export const modelsRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.get("/v1/models", { config: { access: "user" } }, async (): Promise<ModelListBody> => {
    const serving = readyServing(opts.slot);
    return { object: "list", data: [...serving.variants.values()].map((v) => modelBody(serving, v)) };
  });

  // a wildcard, because served names may hold slashes ("org/model")
  app.get("/v1/models/*", { config: { access: "user" } }, async (request): Promise<ModelBody> => {
    const { serving, variant } = requireServing(opts.slot, (request.params as { "*": string })["*"]);
    return modelBody(serving, variant);
  });

  app.post("/v1/models/*", { config: { access: "admin" } }, async (request): Promise<ModelBody> => {
    const path = (request.params as { "*": string })["*"];
    const m = /^(.+)\/promote$/.exec(path);
    if (!m) throw errors.routeNotFound("POST", request.url);
    const target = m[1]!;
    const base = requireServing(opts.slot, target).serving.servedModelName;
    // persisted first (a restart serves the same thing under the base id), then swapped in
    opts.store?.versions.promote(base, target === base ? null : target);
    const serving = promoteVersion(opts.slot, target);
    return modelBody(serving, serving.variants.get(base)!);
  });
};

export const deleteModelRoute: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.delete("/v1/models/*", { config: { access: "admin" } }, async (request) => {
    const id = (request.params as { "*": string })["*"];
    const base = requireServing(opts.slot, id).serving.servedModelName;
    if (id === base) throw errors.modelNotDeletable(id, "it is the base model");
    const version = opts.store?.versions.get(id) ?? null;
    if (!version || !app.fineTuning) throw errors.modelNotDeletable(id, "it was loaded with --adapter, not published by a job");
    if (opts.store!.versions.promoted(base) === id) throw errors.modelPromoted(id, base);
    await app.fineTuning.deleteVersion(id);
    return { id, object: "model", deleted: true };
  });
};
