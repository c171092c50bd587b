// The fine-tuning job endpoints, OpenAI's shapes: create, list, retrieve, cancel, events,
// checkpoints; and GET /v1/fine_tuning/jobs/{id}/events/stream, a WebSocket that replays
// the job's events and then sends new ones (and the job object at each status change)
// until the job finishes.
import websocket from "@fastify/websocket";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { WebSocket } from "ws";
import { chooseWsProtocol } from "../auth.js";
import { ApiError, errors } from "../errors.js";
import type { FineTuning } from "../../fine-tuning/fine-tuning.js";
import type { JobUpdate } from "../../fine-tuning/job-runner.js";
import { checkpointBody, eventBody, jobBody, type CheckpointBody, type JobBody, type JobEventBody } from "../../fine-tuning/shapes.js";
import { listPage } from "../list-pages.js";
import { queryValidatorCompiler } from "../query-validation.js";
import { CreateJobSchema, ListQuerySchema } from "../schemas/fine-tuning.js";
import { IdParamsSchema } from "../schemas/store-queries.js";
import type { ListPageBody } from "../schemas/store-responses.js";
import { isFinal, type JobRecord } from "../../store/jobs.js";
import type { Page } from "../../store/types.js";
import { requireFineTuning, type FineTuningRouteOptions } from "./files.js";

const DEFAULT_LIMIT = 20;
/** WebSocket close code for an unknown job (4000-4999: the application's own) */
const WS_NOT_FOUND = 4404;

function getJob(ft: FineTuning, id: string): JobRecord {
  const j = ft.store.jobs.get(id);
  if (!j) throw errors.jobNotFound(id);
  return j;
}

function page<T, B extends { id: string }>(p: Page<T> | null, after: string | undefined, body: (t: T) => B): ListPageBody<B> {
  if (p === null) throw new ApiError(404, "invalid_request_error", "not_found", `No item with id '${after}' to list after.`, "after");
  return listPage({ items: p.items.map(body), hasMore: p.hasMore });
}

/** Every event of the job so far (oldest first), then live updates until it is final. */
function streamJob(ft: FineTuning, socket: WebSocket, id: string): void {
  const job = ft.store.jobs.get(id);
  if (!job) {
    socket.send(JSON.stringify(errors.jobNotFound(id).body()));
    socket.close(WS_NOT_FOUND, "fine-tuning job not found");
    return;
  }
  const send = (b: JobBody | JobEventBody): void => socket.send(JSON.stringify(b));
  const runner = ft.runner;
  const onUpdate = (u: JobUpdate): void => {
    if (u.kind === "event") return send(eventBody(u.event));
    send(jobBody(u.job));
    if (isFinal(u.job.status)) socket.close(1000, u.job.status);
  };
  // subscribe before the replay and store what was announced but not stored yet; all in
  // this turn, so nothing falls between them and nothing comes twice
  runner?.updates.on(id, onUpdate);
  runner?.flushEvents();
  socket.on("close", () => runner?.updates.off(id, onUpdate));
  let after: string | undefined;
  for (;;) {
    const p = ft.store.jobs.events(id, { after, limit: 100, order: "asc" })!;
    for (const e of p.items) send(eventBody(e));
    if (!p.hasMore) break;
    after = p.items.at(-1)!.id;
  }
  send(jobBody(job));
  if (isFinal(job.status) || runner === null) socket.close(1000, job.status);
}

export const fineTuningJobsRoutes: FastifyPluginAsyncTypebox<FineTuningRouteOptions> = async (app, opts) => {
  await app.register(websocket, { options: { handleProtocols: chooseWsProtocol } });

  app.post("/v1/fine_tuning/jobs", { schema: { body: CreateJobSchema } }, async (request): Promise<JobBody> => {
    const ft = requireFineTuning(opts.fineTuning);
    return jobBody(ft.requireRunner().create(request.body, request.apiKeyId));
  });

  app.get(
    "/v1/fine_tuning/jobs",
    { schema: { querystring: ListQuerySchema }, validatorCompiler: queryValidatorCompiler },
    async (request): Promise<ListPageBody<JobBody>> => {
      const ft = requireFineTuning(opts.fineTuning);
      const q = request.query;
      return page(ft.store.jobs.list({ after: q.after, limit: q.limit ?? DEFAULT_LIMIT }), q.after, jobBody);
    },
  );

  app.get("/v1/fine_tuning/jobs/:id", { schema: { params: IdParamsSchema }, validatorCompiler: queryValidatorCompiler }, async (request): Promise<JobBody> => {
    return jobBody(getJob(requireFineTuning(opts.fineTuning), request.params.id));
  });

  app.post("/v1/fine_tuning/jobs/:id/cancel", { schema: { params: IdParamsSchema }, validatorCompiler: queryValidatorCompiler }, async (request): Promise<JobBody> => {
    const ft = requireFineTuning(opts.fineTuning);
    getJob(ft, request.params.id);
    return jobBody(ft.requireRunner().cancel(request.params.id));
  });

  app.get(
    "/v1/fine_tuning/jobs/:id/events",
    { schema: { params: IdParamsSchema, querystring: ListQuerySchema }, validatorCompiler: queryValidatorCompiler },
    async (request): Promise<ListPageBody<JobEventBody>> => {
      const ft = requireFineTuning(opts.fineTuning);
      const id = getJob(ft, request.params.id).id;
      const q = request.query;
      return page(ft.store.jobs.events(id, { after: q.after, limit: q.limit ?? DEFAULT_LIMIT }), q.after, eventBody);
    },
  );

  app.get(
    "/v1/fine_tuning/jobs/:id/checkpoints",
    { schema: { params: IdParamsSchema, querystring: ListQuerySchema }, validatorCompiler: queryValidatorCompiler },
    async (request): Promise<ListPageBody<CheckpointBody>> => {
      const ft = requireFineTuning(opts.fineTuning);
      const id = getJob(ft, request.params.id).id;
      const q = request.query;
      return page(ft.store.jobs.checkpoints(id, { after: q.after, limit: q.limit ?? 10 }), q.after, checkpointBody);
    },
  );

  app.get("/v1/fine_tuning/jobs/:id/events/stream", { websocket: true }, (socket, request) => {
    const ft = opts.fineTuning;
    if (ft === null) {
      socket.send(JSON.stringify(errors.storeDisabled().body()));
      socket.close(WS_NOT_FOUND, "no fine-tuning on this server");
      return;
    }
    streamJob(ft, socket, (request.params as { id: string }).id);
  });
};
