// `hybridchat serve`: listen first (so /health says "loading"), then load the model.
import { rlhfConfig, rlhfSources, RLHF_FLAGS } from "./serve-rlhf-flags.js";
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { intOption, matmulPrecisionOption, memoryOption, UsageError } from "./errors.js";
import { SERVE_HELP } from "./serve.help.js";
import { createServer, type HybridchatServer, type ServerOptions } from "../server/server.js";
import { DB_FILE, DEFAULT_DATA_DIR } from "../server/store/db.js";
import { DEFAULT_MODEL_ENV, findDefaultModel } from "../engine/default-model.js";
import { checkBind, parseApiKey, parseApiKeys, type ApiKey } from "../server/http/auth.js";
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from "../server/http/slow-clients.js";
import { DEVICE_CHOICES, DeviceUnavailableError, resolveDevice, cudaGemmLine, type DeviceChoice } from "../engine/device.js";
import type { DeviceInfo, DeviceKind, MatmulPrecision } from "../native/index.js";

const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** `--adapter NAME=DIR`: a PEFT adapter directory served as model id NAME. */
function adapterOption(spec: string, c: string): { name: string; dir: string } {
  const eq = spec.indexOf("=");
  const name = eq > 0 ? spec.slice(0, eq) : "";
  const dir = eq > 0 ? resolve(spec.slice(eq + 1)) : "";
  if (!name || !dir) throw new UsageError(`--adapter ${spec}: expected NAME=DIR (the model id to serve it as, then a PEFT adapter directory)`, c);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--adapter ${spec}: no such directory ${dir}`, c);
  return { name, dir };
}

/** --api-key KEY:ROLE (repeatable) and HYBRIDCHAT_API_KEYS="k1:admin,k2:user", together. */
function apiKeysOption(flags: readonly string[], env: string | undefined, c: string): ApiKey[] {
  try {
    return [...flags.map(parseApiKey), ...parseApiKeys(env ?? "")];
  } catch (e) {
    throw new UsageError((e as Error).message, c);
  }
}

function connectionLimits(requestTimeout: string | undefined, perClient: string | undefined, c: string): Partial<ConnectionLimits> {
  const limits: Partial<ConnectionLimits> = {};
  const seconds = intOption(requestTimeout, "request-timeout", c, 1, 86_400);
  if (seconds !== undefined) {
    limits.requestTimeoutMs = seconds * 1000;
    // the headers' deadline is part of the request's (node requires headers <= request)
    limits.headersTimeoutMs = Math.min(DEFAULT_CONNECTION_LIMITS.headersTimeoutMs, limits.requestTimeoutMs);
  }
  const n = intOption(perClient, "max-connections-per-client", c, 1, 1_000_000);
  if (n !== undefined) limits.maxConnectionsPerAddress = n;
  return limits;
}

/** Where the start-up line says a cuda model serves: device 0, or each tensor-parallel rank's device. */
function cudaPlacement(d: DeviceInfo): string {
  return d.devices > 1
    ? `on CUDA devices 0-${d.devices - 1} (${d.name}; ${d.devices} tensor-parallel ranks, each its shard of the weights, its KV heads and its activations resident on its device, NCCL between them)`
    : `on CUDA device 0 (${d.name}: weights, KV cache and activations resident there)`;
}

export async function serveCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8000" },
      "served-model-name": { type: "string" },
      adapter: { type: "string", multiple: true },
      "api-key": { type: "string", multiple: true },
      threads: { type: "string" },
      "tensor-parallel": { type: "string" },
      device: { type: "string", default: "cpu" },
      "matmul-precision": { type: "string", default: "auto" },
      "max-batch": { type: "string" },
      "max-queue": { type: "string" },
      "max-context": { type: "string" },
      "kv-cache-memory": { type: "string" },
      "kv-dtype": { type: "string" },
      "cuda-graphs": { type: "string" },
      "max-body-bytes": { type: "string" },
      "max-file-bytes": { type: "string" },
      "max-file-lines": { type: "string" },
      "max-line-bytes": { type: "string" },
      "request-timeout": { type: "string" },
      "allowed-hosts": { type: "string" },
      "key-rate-limit": { type: "string" },
      "key-token-limit": { type: "string" },
      "max-connections-per-client": { type: "string" },
      "data-dir": { type: "string", default: DEFAULT_DATA_DIR },
      "no-store": { type: "boolean", default: false },
      "log-level": { type: "string", default: "info" },
      ...RLHF_FLAGS,
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return;
  }
  const c = "serve";
  if (values.model !== undefined) {
    const dir = resolve(values.model);
    const gguf = dir.toLowerCase().endsWith(".gguf");
    if (!existsSync(dir) || statSync(dir).isDirectory() === gguf)
      throw new UsageError(`--model ${values.model}: no such ${gguf ? "file" : "directory"} (give a Hugging Face checkpoint directory or a .gguf file, or leave --model out for the built-in demo model)`, c);
  }
  const adapters = (values.adapter ?? []).map((spec) => adapterOption(spec, c));
  if (!LEVELS.includes(values["log-level"]!)) throw new UsageError(`--log-level must be one of ${LEVELS.join(", ")}`, c);
  const port = intOption(values.port, "port", c, 0, 65535)!;
  const apiKeys = apiKeysOption(values["api-key"] ?? [], process.env.HYBRIDCHAT_API_KEYS, c);
  if (!(DEVICE_CHOICES as readonly string[]).includes(values.device!)) throw new UsageError(`--device must be one of ${DEVICE_CHOICES.join(", ")}, got "${values.device}"`, c);
  let device: DeviceKind;
  try {
    device = resolveDevice(values.device as DeviceChoice);
  } catch (e) {
    if (e instanceof DeviceUnavailableError) throw new UsageError(e.message, c);
    throw e;
  }
  const matmulPrecision = matmulPrecisionOption(values["matmul-precision"]!, c);
  if (matmulPrecision !== "highest" && matmulPrecision !== "auto" && (device !== "cpu" || (values["tensor-parallel"] !== undefined && values["tensor-parallel"] !== "1")))
    throw new UsageError(`--matmul-precision ${matmulPrecision} runs on --device cpu with --tensor-parallel 1 only`, c);
  if (device === "cuda") process.stderr.write(`hybridchat: ${cudaGemmLine()}\n`);
  const kvDtype = values["kv-dtype"];
  if (kvDtype !== undefined && kvDtype !== "auto" && kvDtype !== "f32" && kvDtype !== "bf16" && kvDtype !== "f16")
    throw new UsageError(`--kv-dtype must be auto, f32, bf16 or f16, got "${kvDtype}"`, c);
  if (kvDtype === "f16" && device === "cuda") throw new UsageError("--kv-dtype f16 runs on the CPU only: a cuda KV cache is bf16 or f32", c);
  const cudaGraphs = values["cuda-graphs"];
  if (cudaGraphs !== undefined && cudaGraphs !== "on" && cudaGraphs !== "off") throw new UsageError(`--cuda-graphs must be on or off, got "${cudaGraphs}"`, c);
  if (cudaGraphs !== undefined && device !== "cuda") throw new UsageError("--cuda-graphs is a --device cuda option: the CPU launches no kernels", c);
  const dataDir = resolve(values["data-dir"]!);
  const options: ServerOptions = {
    model: values.model === undefined ? undefined : resolve(values.model),
    servedModelName: values["served-model-name"],
    adapters,
    threads: intOption(values.threads, "threads", c, 1, 1024),
    tensorParallel: intOption(values["tensor-parallel"], "tensor-parallel", c, 1, 64),
    device,
    matmulPrecision,
    maxBatch: intOption(values["max-batch"], "max-batch", c, 1, 4096),
    maxQueue: intOption(values["max-queue"], "max-queue", c, 0, 1_000_000),
    maxContext: intOption(values["max-context"], "max-context", c, 2, 10_000_000),
    kvCacheMemory: memoryOption(values["kv-cache-memory"], "kv-cache-memory", c),
    kvDtype,
    cudaGraphs: cudaGraphs === undefined ? undefined : cudaGraphs === "on",
    maxBodyBytes: intOption(values["max-body-bytes"], "max-body-bytes", c, 1024, 1 << 30),
    keyRequestsPerMinute: intOption(values["key-rate-limit"], "key-rate-limit", c, 1, 1_000_000) ?? null,
    keyTokensPerMinute: intOption(values["key-token-limit"], "key-token-limit", c, 1, 1_000_000_000) ?? null,
    allowedHosts: values["allowed-hosts"]?.split(",").map((h) => h.trim()).filter((h) => h.length > 0),
    limits: connectionLimits(values["request-timeout"], values["max-connections-per-client"], c),
    fileLimits: {
      maxBytes: intOption(values["max-file-bytes"], "max-file-bytes", c, 1, Number.MAX_SAFE_INTEGER),
      maxLines: intOption(values["max-file-lines"], "max-file-lines", c, 1, Number.MAX_SAFE_INTEGER),
      maxLineBytes: intOption(values["max-line-bytes"], "max-line-bytes", c, 1, Number.MAX_SAFE_INTEGER),
    },
    dataDir,
    store: !values["no-store"],
    rlhf: rlhfConfig(values, c),
    trainingSources: rlhfSources(values["rlhf-sources"], c),
    logger: { level: values["log-level"]! },
    apiKeys,
  };
  let server: HybridchatServer;
  try {
    server = createServer(options);
  } catch (e) {
    // the store opens here, before anything listens: say which directory is the problem
    throw new UsageError(`--data-dir ${values["data-dir"]}: cannot open ${join(dataDir, DB_FILE)} (${(e as Error).message}); pick another directory, or pass --no-store`, c);
  }
  // after the store opened: keys made with `hybridchat keys create` count too (the process
  // exits on a refusal, before the model has loaded)
  try {
    checkBind(values.host!, server.app.apiKeys);
  } catch (e) {
    throw new UsageError((e as Error).message, c);
  }

  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) {
      process.stderr.write(`hybridchat: ${signal} again, exiting now\n`);
      process.exit(130);
    }
    process.stderr.write(`hybridchat: ${signal}: finishing running requests (up to 10 s), then exiting; ${signal} again to force\n`);
    server.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`hybridchat: error while shutting down: ${(e as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));

  let url: string;
  try {
    url = await server.listen({ host: values.host, port });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "EADDRINUSE") throw new UsageError(`port ${port} on ${values.host} is already in use; pick another with --port`, c);
    if (err.code === "EADDRNOTAVAIL") throw new UsageError(`cannot bind to ${values.host}: no such local address; try --host 127.0.0.1`, c);
    throw e;
  }
  process.stderr.write(`hybridchat: listening on ${url} (GET ${url}/health says 503 until the model is loaded)\n`);
  process.stderr.write(
    !server.app.apiKeys.required()
      ? "hybridchat: no API keys: every route is open, so listening on loopback only; add --api-key KEY:admin to serve other hosts\n" +
          "            (or `hybridchat keys create`: from the first key on, every request needs one)\n"
      : `hybridchat: API keys required (${apiKeys.filter((k) => k.role === "admin").length} admin, ${apiKeys.filter((k) => k.role === "user").length} user ` +
          `on the command line${server.app.apiKeys.stored ? ", and those of `hybridchat keys` in the database" : ""}): send Authorization: Bearer KEY\n`,
  );
  if (values.model === undefined) {
    const def = findDefaultModel();
    process.stderr.write(
      def.dir !== null
        ? `hybridchat: no --model given: serving the bundled pretrained TinyStories 260K Llama from ${def.dir}\n` +
            "            (it tells short children's stories; pass --model DIR to serve another checkpoint)\n"
        : "hybridchat: ************************************************************************\n" +
            `hybridchat: no --model given and no pretrained default found (looked in ${def.looked.join(", ")};\n` +
            `            set ${DEFAULT_MODEL_ENV} to a checkpoint directory): serving the built-in tiny model.\n` +
            "            It is UNTRAINED (random weights): its output is gibberish. Pass --model DIR.\n" +
            "hybridchat: ************************************************************************\n",
    );
  }
  try {
    await server.ready;
  } catch (e) {
    process.stderr.write(`hybridchat: could not load the model: ${(e as Error).message}\n`);
    await server.close(0);
    process.exit(1);
  }
  const s = server.app.serving.state;
  if (s.status === "ready") {
    const m = s.serving;
    process.stderr.write(
      `hybridchat: ready: serving ${[...m.variants.keys()].map((id) => `"${id}"`).join(", ")}${m.model.untrained ? " (UNTRAINED weights)" : ""}` +
        ` from ${server.model!.dir}, context ${m.model.maxContext} tokens, ` +
        (device === "cuda"
          ? cudaPlacement(server.model!.native.device())
          : `on the CPU, ${values.threads ?? availableParallelism()} threads` +
            `${values["tensor-parallel"] ? ` over ${values["tensor-parallel"]} tensor-parallel ranks` : ""}` +
            precisionNote(server.model!.matmulPrecision)) +
        "\n" +
        `            chat template: ${server.model!.chatTemplate.origin}\n` +
        `            ${server.store ? `storing completions and feedback in ${join(dataDir, DB_FILE)}` : "storing nothing (--no-store)"}\n` +
        `            try: curl ${url}/v1/chat/completions -H 'content-type: application/json' ` +
        `-d '{"model":"${m.servedModelName}","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":32}'\n`,
    );
  }
}

/** The banner's word on how x meets bf16 weights (nothing for highest, the fp32 default of every other type). */
function precisionNote(p: MatmulPrecision): string {
  return p === "highest" ? "" : `, matmul precision ${p} (bf16 weights: x as ${p === "medium" ? "one bf16" : "hi + lo bf16"})`;
}
