// The one catalogue of errors the API returns. Every failure a client can see is an
// ApiError made here; the error handler (server/http/error-handler.ts) turns anything else
// into one of these before it reaches the socket.

export type ErrorType =
  | "invalid_request_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error";

/** The OpenAI error body: `{ "error": { message, type, param, code } }`. */
export interface ErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    readonly code: string | null,
    message: string,
    readonly param: string | null = null,
    /** extra response headers (Retry-After, Allow) */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const errors = {
  invalidRequest: (message: string, param: string | null, code: string | null = "invalid_value") =>
    new ApiError(400, "invalid_request_error", code, message, param),

  invalidJson: (detail: string) =>
    new ApiError(
      400,
      "invalid_request_error",
      "invalid_json",
      `We could not parse the JSON body of your request (${detail}). Send a JSON object with Content-Type: application/json.`,
    ),

  unsupportedMediaType: (contentType: string) =>
    new ApiError(
      415,
      "invalid_request_error",
      "unsupported_media_type",
      `Unsupported Content-Type '${contentType}'. Send the request body as JSON with Content-Type: application/json.`,
    ),

  bodyTooLarge: (limitBytes: number) =>
    new ApiError(
      413,
      "invalid_request_error",
      "request_too_large",
      `The request body is larger than this server accepts (${limitBytes} bytes).`,
    ),

  modelNotFound: (model: string, served: readonly string[]) =>
    new ApiError(
      404,
      "invalid_request_error",
      "model_not_found",
      `The model \`${model}\` does not exist. This server serves ${served.map((s) => `\`${s}\``).join(", ")} (see GET /v1/models).`,
      "model",
    ),

  contextLengthExceeded: (maxContext: number, promptTokens: number, completionTokens: number, param: string) =>
    new ApiError(
      400,
      "invalid_request_error",
      "context_length_exceeded",
      `This model's maximum context length is ${maxContext} tokens. However, you requested ` +
        `${promptTokens + completionTokens} tokens (${promptTokens} in the ${param === "messages" ? "messages" : "prompt"}, ` +
        `${completionTokens} in the completion). Please reduce the length of the ${param} or the completion (max_tokens).`,
      param,
    ),

  /** refused by the character bound alone (server/http/prompt-guard.ts), before any tokenization */
  promptTooLong: (maxContext: number, chars: number, charLimit: number, param: string) =>
    new ApiError(
      400,
      "invalid_request_error",
      "context_length_exceeded",
      `This model's maximum context length is ${maxContext} tokens. However, your ${param === "messages" ? "messages" : "prompt"} ` +
        `hold ${chars} characters, more than any prompt of ${maxContext} tokens can (at most ${charLimit}). Please reduce the length of the ${param}.`,
      param,
    ),

  modelNotDeletable: (id: string, why: string) =>
    new ApiError(400, "invalid_request_error", "model_not_deletable", `Model ${id} cannot be deleted: ${why}.`, "model"),

  modelPromoted: (id: string, base: string) =>
    new ApiError(
      409,
      "invalid_request_error",
      "model_promoted",
      `Model ${id} is what ${base} serves now; promote another version (or ${base} itself) before deleting it.`,
      "model",
    ),

  routeNotFound: (method: string, url: string) =>
    new ApiError(404, "invalid_request_error", "unknown_url", `Invalid URL (${method} ${url}).`),

  methodNotAllowed: (method: string, url: string, allowed: string[]) =>
    new ApiError(
      405,
      "invalid_request_error",
      "method_not_allowed",
      `Method ${method} is not allowed on ${url}; use ${allowed.join(" or ")}.`,
      null,
      { allow: allowed.join(", ") },
    ),

  queueFull: () =>
    new ApiError(
      429,
      "rate_limit_error",
      "queue_full",
      "The server is busy: its request queue is full. Retry after a short wait.",
      null,
      { "retry-after": "1" },
    ),

  hostNotAllowed: (host: string) =>
    new ApiError(
      403,
      "invalid_request_error",
      "host_not_allowed",
      `This server does not answer to the host name '${host.slice(0, 100)}'. Use its address, or start it with --allowed-hosts naming this host.`,
    ),

  crossOrigin: (method: string, origin: string) =>
    new ApiError(
      403,
      "invalid_request_error",
      "cross_origin_request",
      `${method} requests from web pages of another origin (${origin.slice(0, 100)}) are refused: this server grants no cross-origin access. Call it from its own page or from a program.`,
    ),

  requestTimeout: () =>
    new ApiError(
      408,
      "invalid_request_error",
      "request_timeout",
      "The request did not arrive in time: the server stopped waiting for its headers or body.",
    ),

  tooManyConnections: (max: number) =>
    new ApiError(
      429,
      "rate_limit_error",
      "too_many_connections",
      `Too many open connections from your address (at most ${max}). Close idle connections or reuse one.`,
      null,
      { "retry-after": "1" },
    ),

  /** `limit`: what the key may have per minute, e.g. "3 requests" or "500 generated tokens" */
  rateLimited: (limit: string, retryAfterS: number) =>
    new ApiError(
      429,
      "rate_limit_error",
      "rate_limit_exceeded",
      `Rate limit reached for this API key: ${limit} per minute. Retry after ${retryAfterS} s.`,
      null,
      { "retry-after": String(retryAfterS) },
    ),

  modelLoading: () =>
    new ApiError(503, "server_error", "model_loading", "The model is still loading. Retry when GET /health returns 200.", null, {
      "retry-after": "1",
    }),

  modelFailed: (detail: string) =>
    new ApiError(503, "server_error", "model_unavailable", `The model failed to load: ${detail}`),

  shuttingDown: () =>
    new ApiError(503, "server_error", "engine_closed", "The server is shutting down; retry on another instance."),

  completionNotFound: (id: string, param: string) =>
    new ApiError(404, "invalid_request_error", "completion_not_found", `No stored completion found with id '${id}'.`, param),

  feedbackNotFound: (id: string, param: string) =>
    new ApiError(404, "invalid_request_error", "feedback_not_found", `No feedback found with id '${id}'.`, param),

  storeDisabled: () =>
    new ApiError(
      404,
      "invalid_request_error",
      "store_disabled",
      "This server does not keep completions or feedback (it was started with --no-store).",
    ),

  /** Same Idempotency-Key, different body: 422 as the IETF Idempotency-Key draft says (409 is for a key still in flight). */
  idempotencyKeyReused: () =>
    new ApiError(
      422,
      "invalid_request_error",
      "idempotency_key_reused",
      "This Idempotency-Key was already used with a different request body. Use a new key for a new request.",
      "Idempotency-Key",
    ),

  fileNotFound: (id: string, param: string) =>
    new ApiError(404, "invalid_request_error", "file_not_found", `No such File object: ${id}`, param),

  invalidFile: (message: string, param: string) => new ApiError(400, "invalid_request_error", "invalid_file", message, param),

  fileTooLarge: (limitBytes: number) =>
    new ApiError(413, "invalid_request_error", "file_too_large", `The file is larger than this server accepts (${limitBytes} bytes, --max-file-bytes).`, "file"),

  tooManyLines: (limit: number) =>
    new ApiError(400, "invalid_request_error", "too_many_lines", `The file has more lines than this server accepts (${limit}, --max-file-lines).`, "file"),

  lineTooLong: (line: number, limitBytes: number) =>
    new ApiError(400, "invalid_request_error", "line_too_long", `Line ${line} of the file is longer than this server accepts (${limitBytes} bytes, --max-line-bytes).`, "file"),

  jobNotFound: (id: string, param = "fine_tuning_job_id") =>
    new ApiError(404, "invalid_request_error", "fine_tuning_job_not_found", `No such fine-tuning job: ${id}`, param),

  jobNotCancellable: (id: string, status: string) =>
    new ApiError(409, "invalid_request_error", "job_not_cancellable", `Fine-tuning job ${id} has already ${status === "cancelled" ? "been cancelled" : status}; only a job that has not finished can be cancelled.`),

  fineTuningUnavailable: () =>
    new ApiError(503, "server_error", "model_loading", "Fine-tuning starts when the model is loaded. Retry when GET /health returns 200.", null, {
      "retry-after": "1",
    }),

  missingApiKey: () =>
    new ApiError(
      401,
      "invalid_request_error",
      "missing_api_key",
      "You didn't provide an API key. Send it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY); the server's operator gives out keys.",
      null,
      { "www-authenticate": 'Bearer realm="hybridchat"' },
    ),

  invalidApiKey: (redacted: string) =>
    new ApiError(
      401,
      "invalid_request_error",
      "invalid_api_key",
      `Incorrect API key provided: ${redacted}. Check the key, or ask the server's operator for one.`,
      null,
      { "www-authenticate": 'Bearer realm="hybridchat", error="invalid_token"' },
    ),

  adminOnly: (method: string, path: string) =>
    new ApiError(
      403,
      "invalid_request_error",
      "insufficient_permissions",
      `${method} ${path} needs an admin API key; this key has the user role (chat, completions, models, feedback, stored completions).`,
    ),

  internal: () =>
    new ApiError(500, "server_error", "internal_error", "The server had an error while processing your request. Sorry about that!"),
} as const;
