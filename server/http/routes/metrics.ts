// GET /metrics: Prometheus' text exposition format (server/http/metrics.ts says what is in it).
import type { FastifyPluginAsync } from "fastify";
import type { ServerMetrics } from "../metrics.js";

export const metricsRoutes: FastifyPluginAsync<{ metrics: ServerMetrics }> = async (app, opts) => {
  // admin: it names the served versions and shows traffic and training progress; Prometheus
  // scrapes with `authorization: { credentials: KEY }`
  app.get("/metrics", { config: { access: "admin" } }, async (_request, reply) => {
    reply.header("content-type", opts.metrics.registry.contentType);
    return opts.metrics.registry.metrics();
  });
};
