// GET /health: 503 while the model loads (or if it failed), 200 once requests can be served.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { RouteOptions } from "../request-context.js";

export interface HealthBody {
  status: "ok" | "loading" | "error";
  model?: string;
  message?: string;
}

export const healthRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.get("/health", { config: { access: "public" } }, async (_request, reply): Promise<HealthBody> => {
    const s = opts.slot.state;
    if (s.status === "ready") return { status: "ok", model: s.serving.servedModelName };
    reply.code(503).header("retry-after", "1");
    return s.status === "loading" ? { status: "loading" } : { status: "error", message: s.message };
  });
};
