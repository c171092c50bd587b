// build(): the Fastify app with its plugins, schemas and the one error handler. It does
// not listen (server/listen.ts does) and may be built before the model is loaded:
// /health answers 503 "loading" until `app.serving.ready(...)` (or `attachModel`).
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import type { Engine } from "../../engine/engine.js";
import type { LoadedModel } from "../../engine/model.js";
import { clientErrorHandler, frameworkErrorHandler, installErrorHandling } from "./error-handler.js";
import { errors } from "./errors.js";
import { servingFor, type AdapterVariant } from "../serving/served-model.js";
import { ServingSlot } from "../serving/serving.js";
import { chatCompletionsRoutes } from "./routes/chat-completions.js";
import { completionsRoutes } from "./routes/completions.js";
import { tokenizeRoutes } from "./routes/tokenize.js";
import { feedbackRoutes } from "./routes/feedback.js";
import { healthRoutes } from "./routes/health.js";
import { deleteModelRoute, modelsRoutes } from "./routes/models.js";
import { storedCompletionsRoutes } from "./routes/stored-completions.js";
import { metricsRoutes } from "./routes/metrics.js";
import { webRoutes } from "./routes/web.js";
import { ServerMetrics } from "./metrics.js";
import type { Store } from "../store/store.js";
import { FineTuning } from "../fine-tuning/fine-tuning.js";
import type { RlhfPolicyConfig } from "../rlhf/policy.js";
import { DEFAULT_TRAINING_SOURCES, type FeedbackSource } from "../store/feedback.js";
import { promoteVersion } from "../fine-tuning/versions.js";
import { filesRoutes } from "./routes/files.js";
import { fileLimits, type FileLimits } from "../fine-tuning/uploads.js";
import { fineTuningJobsRoutes } from "./routes/fine-tuning-jobs.js";
import { ApiKeys, installAuth, type ApiKey } from "./auth.js";
import { installPromptGuard } from "./prompt-guard.js";
import { installJsonBodyParser } from "./json-body.js";
import { installBrowserGuard } from "./browser-guard.js";
import { installRateLimits } from "./rate-limits.js";
import { DEFAULT_CONNECTION_LIMITS, installConnectionLimits, type ConnectionLimits } from "./slow-clients.js";
import { TokenizerThread } from "../../engine/tokenizer-thread.js";

declare module "fastify" {
  interface FastifyInstance {
    /** the model being served, once loaded */
    serving: ServingSlot;
    /** what GET /metrics reports; its `observer` belongs in the engine's options */
    metrics: ServerMetrics;
    /** files and fine-tuning jobs; null without a store */
    fineTuning: FineTuning | null;
    /** the keys requests are checked against: --api-key ones and the store's live ones */
    apiKeys: ApiKeys;
  }
}

export interface AppOptions {
  /** both or neither: without them the app starts in the "loading" state */
  engine?: Engine;
  model?: LoadedModel;
  /** the id clients send as `model`; default: the model directory's base name */
  servedModelName?: string;
  /** LoRA adapters already loaded on the model, each served under its own id */
  adapters?: readonly AdapterVariant[];
  /** largest request body accepted (413 above); default 8 MiB */
  maxBodyBytes?: number;
  logger?: FastifyServerOptions["logger"];
  /**
   * where completions and feedback are kept (opened and closed by the caller); null or
   * absent: nothing is kept and the store's routes answer 404 store_disabled
   */
  store?: Store | null;
  /** the metrics the engine reports to (pass the same object's observer to the Engine); default: new */
  metrics?: ServerMetrics;
  /** where uploaded files, job data and model versions are kept; default: a temporary directory */
  dataDir?: string;
  /** continuous RLHF on the collected preferences (needs the store); default off */
  rlhf?: RlhfPolicyConfig | null;
  /** the feedback sources that may train (--rlhf-sources); default DEFAULT_TRAINING_SOURCES */
  trainingSources?: readonly FeedbackSource[];
  /**
   * who may call what (server/http/auth.ts), besides the store's keys (`hybridchat keys`);
   * while there are none anywhere, every route is open
   */
  apiKeys?: readonly ApiKey[];
  /** requests one API key may start per minute (429 + Retry-After above), unless the key has its own; default unlimited */
  keyRequestsPerMinute?: number | null;
  /** tokens that may be generated for one API key per minute, unless the key has its own; default unlimited */
  keyTokensPerMinute?: number | null;
  /** the rate limits' clock (ms); default Date.now */
  rateLimitClock?: () => number;
  /** host names clients may use besides IP addresses and localhost (server/http/browser-guard.ts) */
  allowedHosts?: readonly string[];
  /** header/body deadlines and connections per address (server/http/slow-clients.ts); default DEFAULT_CONNECTION_LIMITS */
  limits?: Partial<ConnectionLimits>;
  /** what an uploaded file may be (server/fine-tuning/uploads.ts); default DEFAULT_FILE_LIMITS */
  fileLimits?: Partial<FileLimits>;
}

export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

/** each app's tokenizer threads (one per attached model), stopped when the app closes */
const tokenizerThreads = new WeakMap<FastifyInstance, TokenizerThread[]>();

export function buildApp(opts: AppOptions = {}): FastifyInstance {
  const bodyLimit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const limits: ConnectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...opts.limits };
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveMs,
    // closing is answered below, in the OpenAI error shape
    return503OnClosing: false,
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler,
    ajv: {
      customOptions: {
        // a string where a number belongs is an error, as with OpenAI; no silent coercion
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: false,
        // every branch of a union reports, so the error can name the real culprit
        // (bodies are size-limited, so collecting all errors stays cheap)
        allErrors: true,
      },
    },
  });

  const slot = new ServingSlot();
  app.decorate("serving", slot);
  const metrics = opts.metrics ?? new ServerMetrics();
  app.decorate("metrics", metrics);
  installErrorHandling(app, bodyLimit);
  installConnectionLimits(app, limits);
  installJsonBodyParser(app);
  const trainingSources = opts.trainingSources ?? DEFAULT_TRAINING_SOURCES;
  const fineTuning = opts.store ? new FineTuning(opts.store, opts.dataDir, opts.rlhf ?? null, trainingSources, fileLimits(opts.fileLimits)) : null;
  app.decorate("fineTuning", fineTuning);
  // a running job stops (failed: shut down) before the engine and the store go
  app.addHook("onClose", async () => fineTuning?.close());

  // while shutting down, requests that still arrive on open connections get a 503
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onRequest", async (_request, reply) => {
    if (!closing) return;
    reply.header("connection", "close");
    throw errors.shuttingDown();
  });

  // before auth: a page of another site is refused whatever key it carries
  installBrowserGuard(app, { allowedHosts: opts.allowedHosts });
  const apiKeys = new ApiKeys(opts.apiKeys ?? [], opts.store ?? null);
  app.decorate("apiKeys", apiKeys);
  installAuth(app, apiKeys);
  installRateLimits(app, { requestsPerMinute: opts.keyRequestsPerMinute ?? null, tokensPerMinute: opts.keyTokensPerMinute ?? null }, opts.rateLimitClock);
  installPromptGuard(app, slot);
  const threads: TokenizerThread[] = [];
  tokenizerThreads.set(app, threads);
  app.addHook("onClose", async () => {
    await Promise.all(threads.map((t) => t.close()));
  });

  const routeOpts = { slot, store: opts.store ?? null, trainingSources };
  void app.register(healthRoutes, routeOpts);
  void app.register(modelsRoutes, routeOpts);
  void app.register(deleteModelRoute, routeOpts);
  void app.register(chatCompletionsRoutes, routeOpts);
  void app.register(completionsRoutes, routeOpts);
  void app.register(tokenizeRoutes, routeOpts);
  void app.register(storedCompletionsRoutes, routeOpts);
  void app.register(feedbackRoutes, routeOpts);
  void app.register(metricsRoutes, { metrics });
  void app.register(filesRoutes, { fineTuning });
  void app.register(fineTuningJobsRoutes, { fineTuning });
  void app.register(webRoutes);

  if (opts.engine && opts.model) attachModel(app, opts.engine, opts.model, opts.servedModelName, opts.adapters);
  else if (opts.engine || opts.model) throw new Error("buildApp: pass both `engine` and `model`, or neither");
  return app;
}

/**
 * Switches the app from "loading" to serving this model (the base id serving the version
 * it was promoted to, when the store says so) and starts the fine-tuning job runner.
 */
export function attachModel(
  app: FastifyInstance,
  engine: Engine,
  model: LoadedModel,
  servedModelName?: string,
  adapters: readonly AdapterVariant[] = [],
): void {
  const thread = new TokenizerThread(model.dir);
  tokenizerThreads.get(app)?.push(thread);
  const serving = servingFor(engine, model, thread, servedModelName, adapters);
  app.metrics.attach(serving.servedModelName, engine, serving.model.device, serving.model.stepCounts?.bind(serving.model));
  app.serving.ready(serving);
  const ft = app.fineTuning;
  if (!ft) return;
  const promoted = ft.store.versions.promoted(serving.servedModelName);
  if (promoted !== null && serving.variants.has(promoted)) promoteVersion(app.serving, promoted);
  ft.start(app.serving, engine, model, {
    onStep: (id, method, m) => app.metrics.jobStep(id, method, m),
    onEnd: (id, method) => app.metrics.jobEnded(id, method),
    log: (m) => app.log.info(m),
  });
}
