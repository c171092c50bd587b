// GET /metrics: Prometheus' text exposition format (server/metrics.ts says what is in it).
import type { FastifyPluginAsync } from "fastify";
import type { ServerMetrics } from "../metrics.js";

export const metricsRoutes: FastifyPluginAsync<{ metrics: ServerMetrics }> = async (app, opts) => {
  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", opts.metrics.registry.contentType);
    return opts.metrics.registry.metrics();
  });
};
