// The embeddable server: builds the app at once (so /health answers "loading"), loads the
// model and starts the engine in the background, listens, and shuts down gracefully.
import type { FileLimits } from "./fine-tuning/uploads.js";
import type { DeviceKind, KvDtype, MatmulPrecision } from "../native/index.js";
import type { RlhfPolicyConfig } from "./rlhf/policy.js";
import type { FeedbackSource } from "./store/feedback.js";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance, FastifyServerOptions } from "fastify";
import { ensureBuiltinModel } from "../engine/builtin.js";
import { findDefaultModel } from "../engine/default-model.js";
import { Engine } from "../engine/engine.js";
import { loadModel, type KvCacheMemory, type LoadedModel } from "../engine/model.js";
import { loadPeftAdapter } from "../engine/peft.js";
import { attachModel, buildApp } from "./http/app.js";
import { Store } from "./store/store.js";
import { restoreVersions } from "./fine-tuning/restore.js";
import { checkBind, isLoopback, type ApiKey } from "./http/auth.js";
import type { ConnectionLimits } from "./http/slow-clients.js";

export interface ServerOptions {
  /**
   * checkpoint directory; default: the pretrained stories260K the package ships (see
   * engine/default-model.ts), or, where there is none, the built-in tiny model (untrained, random weights)
   */
  model?: string;
  /** the id clients send as `model`; default: the directory's base name */
  servedModelName?: string;
  /** PEFT LoRA adapters loaded onto the base at start, each served as model id `name` */
  adapters?: { name: string; dir: string }[];
  /** compute threads; default: all cores */
  threads?: number;
  /** thread ranks each layer is split over (tensor parallelism); default 1 */
  tensorParallel?: number;
  /** where the serving forward runs (default cpu) */
  device?: DeviceKind;
  /** how the serving forward's activations meet bf16 weights (LoadModelOptions.matmulPrecision; default auto) */
  matmulPrecision?: MatmulPrecision | "auto";
  /** most sequences decoded together; default 8 */
  maxBatch?: number;
  /** most requests waiting for a batch slot before 429; default 64 */
  maxQueue?: number;
  /** most tokens in one forward step; default max(512, maxBatch) */
  maxBatchTokens?: number;
  /** cap on prompt + completion tokens; default: the model's positions */
  maxContext?: number;
  /** KV cache pool size (serve --kv-cache-memory); default: loadModel's */
  kvCacheMemory?: KvCacheMemory;
  /** the KV pool's element type (serve --kv-dtype); default: loadModel's "auto" */
  kvDtype?: KvDtype | "auto";
  /** cuda: decode steps as CUDA graphs (serve --cuda-graphs); default on */
  cudaGraphs?: boolean;
  /** largest request body; default 8 MiB */
  maxBodyBytes?: number;
  /** where the server keeps its state: hybridchat.sqlite, the built-in model's cache */
  dataDir?: string;
  /** keep completions and feedback (default true); without dataDir they are kept in memory only */
  store?: boolean;
  /** continuous RLHF on the collected preferences (needs the store); default off */
  rlhf?: RlhfPolicyConfig | null;
  /** the feedback sources that may train (--rlhf-sources); default rating, pairwise */
  trainingSources?: readonly FeedbackSource[];
  logger?: FastifyServerOptions["logger"];
  /** API keys and their roles, besides the store's (`hybridchat keys`); without any the server listens on loopback only */
  apiKeys?: ApiKey[];
  /** requests one API key may start per minute (429 + Retry-After above), unless the key has its own; default unlimited */
  keyRequestsPerMinute?: number | null;
  /** tokens that may be generated for one API key per minute, unless the key has its own; default unlimited */
  keyTokensPerMinute?: number | null;
  /** host names clients may use besides IP addresses and localhost (DNS rebinding guard); "*" any */
  allowedHosts?: string[];
  /** header/body deadlines and connections per client address; default DEFAULT_CONNECTION_LIMITS */
  limits?: Partial<ConnectionLimits>;
  /** what an uploaded file may be (bytes, lines, bytes per line); default DEFAULT_FILE_LIMITS */
  fileLimits?: Partial<FileLimits>;
}

/** The served name of the built-in model (its directory name is a cache key). */
export const BUILTIN_SERVED_NAME = "hybridchat-tiny-untrained";

export interface ListenOptions {
  host?: string;
  port?: number;
}

export class HybridchatServer {
  readonly app: FastifyInstance;
  /** settles when the model is loaded and served (rejects if loading failed) */
  readonly ready: Promise<void>;
  engine: Engine | null = null;
  model: LoadedModel | null = null;
  /** null with `store: false` */
  readonly store: Store | null;
  #closing: Promise<void> | null = null;

  constructor(private readonly opts: ServerOptions = {}) {
    this.store = opts.store === false ? null : Store.open(opts.dataDir ?? ":memory:");
    this.app = buildApp({ maxBodyBytes: opts.maxBodyBytes, logger: opts.logger, store: this.store, dataDir: opts.dataDir, rlhf: opts.rlhf, trainingSources: opts.trainingSources, apiKeys: opts.apiKeys, limits: opts.limits, fileLimits: opts.fileLimits, allowedHosts: opts.allowedHosts, keyRequestsPerMinute: opts.keyRequestsPerMinute, keyTokensPerMinute: opts.keyTokensPerMinute });
    // a turn later, so listen() can open the port first
    this.ready = new Promise<void>((res) => setImmediate(res)).then(() => this.#load());
    this.ready.catch((e: unknown) => this.app.serving.failed(e instanceof Error ? e.message : String(e)));
  }

  async #load(): Promise<void> {
    const o = this.opts;
    const pretrained = o.model === undefined ? findDefaultModel().dir : o.model;
    const builtin = pretrained === null;
    const dir = pretrained ?? (await ensureBuiltinModel(o.dataDir ? join(o.dataDir, "models") : tmpdir()));
    const model = await loadModel(dir, { threads: o.threads ?? availableParallelism(), tensorParallel: o.tensorParallel, maxContext: o.maxContext, kvCacheMemory: o.kvCacheMemory, device: o.device, matmulPrecision: o.matmulPrecision, kvDtype: o.kvDtype, cudaGraphs: o.cudaGraphs });
    const servedName = o.servedModelName ?? (builtin ? BUILTIN_SERVED_NAME : model.id);
    const adapters = (o.adapters ?? []).map((a) => ({ id: a.name, dir: a.dir }));
    try {
      for (const a of o.adapters ?? []) await loadPeftAdapter(model.native, model.config, a.name, a.dir);
      // the versions earlier fine-tuning jobs published
      if (this.store) adapters.push(...(await restoreVersions(this.store, model, servedName, (m) => this.app.log.warn(m))));
    } catch (e) {
      model.dispose();
      throw e;
    }
    if (this.#closing) {
      model.dispose();
      return;
    }
    const maxBatch = o.maxBatch ?? 8;
    const engine = new Engine(model, {
      maxBatch,
      maxQueue: o.maxQueue ?? 256,
      maxBatchTokens: o.maxBatchTokens ?? Math.max(512, maxBatch),
      observer: this.app.metrics.observer,
    });
    this.model = model;
    this.engine = engine;
    attachModel(this.app, engine, model, servedName, adapters);
  }

  /**
   * Opens the port (the model may still be loading); resolves with the base URL. Without
   * API keys (given or in the store), a host other than loopback is refused; beyond
   * loopback, a key stays required even if every stored key is later revoked.
   */
  async listen(l: ListenOptions = {}): Promise<string> {
    const host = l.host ?? "127.0.0.1";
    checkBind(host, this.app.apiKeys);
    if (!isLoopback(host)) this.app.apiKeys.requireAlways();
    return this.app.listen({ host, port: l.port ?? 8000 });
  }

  /**
   * Stops taking requests, gives running ones `graceMs` to finish, then cancels the rest
   * (streams get an error event) and frees the engine and the weights. Idempotent.
   */
  close(graceMs = 10_000): Promise<void> {
    this.#closing ??= (async () => {
      const appClosed = this.app.close();
      // keep-alive connections turn idle as their responses finish; close them as they
      // do instead of waiting for the keep-alive timeout
      const sweep = setInterval(() => this.app.server.closeIdleConnections(), 25);
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((res) => (timer = setTimeout(res, graceMs)));
      await Promise.race([appClosed, grace]);
      clearTimeout(timer);
      await this.ready.catch(() => undefined);
      // a running job stops first (failed: shut down), while the engine still runs its calls
      await this.app.fineTuning?.close();
      await this.engine?.close();
      await appClosed.finally(() => clearInterval(sweep));
      // after the app: streams cancelled by the engine's close are never recorded
      this.store?.close();
      this.model?.dispose();
    })();
    return this.#closing;
  }
}

export function createServer(opts: ServerOptions = {}): HybridchatServer {
  return new HybridchatServer(opts);
}
