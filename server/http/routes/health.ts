// GET /health: 503 while the model loads (or if it failed), 200 once requests can be served.
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { RouteOptions } from "../request-context.js";

export interface HealthBody {
  status: "ok" | "loading" | "error";
  model?: string;
  /** where the forward runs: "cpu" or "cuda" */
  device?: string;
  /** the CUDA device's name ("cpu" on the CPU) */
  deviceName?: string;
  /** devices serving (0 on the CPU; on cuda 1, or --tensor-parallel N's N) */
  devices?: number;
  /** cuda: the GEMM serving the linears, "cublaslt" or "builtin" (no libcublasLt found) */
  gemm?: string;
  /** the KV cache's element type: "f32" or "bf16" */
  kvDtype?: string;
  message?: string;
}

export const healthRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.get("/health", { config: { access: "public" } }, async (_request, reply): Promise<HealthBody> => {
    const s = opts.slot.state;
    if (s.status === "ready") {
      const d = s.serving.model.device;
      const body: HealthBody = { status: "ok", model: s.serving.servedModelName };
      return d ? { ...body, device: d.kind, deviceName: d.name, devices: d.devices, ...(d.gemm ? { gemm: d.gemm } : {}), kvDtype: d.kvDtype } : body;
    }
    reply.code(503).header("retry-after", "1");
    return s.status === "loading" ? { status: "loading" } : { status: "error", message: s.message };
  });
};
