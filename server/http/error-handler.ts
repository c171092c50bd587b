// The one error handler: whatever a route, a parser or the engine throws becomes an
// ApiError from the catalogue, sent in the OpenAI shape. Nothing leaves unshaped.
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { EngineError } from "../../engine/errors.js";
import { ApiError, errors } from "./errors.js";
import { validationError, type SchemaError } from "./validation-errors.js";

export function engineErrorToApi(e: EngineError): ApiError {
  switch (e.code) {
    case "queue_full":
      return errors.queueFull();
    case "context_length_exceeded":
      return new ApiError(400, "invalid_request_error", "context_length_exceeded", e.message, "messages");
    case "invalid_request":
      return errors.invalidRequest(e.message, null);
    case "engine_closed":
      return errors.shuttingDown();
    case "cancelled":
      // only seen when the client already left; the status is for the log
      return new ApiError(499, "invalid_request_error", "cancelled", "The request was cancelled.");
    default:
      return errors.internal();
  }
}

/** Maps anything thrown to the catalogue entry a client should see. */
export function toApiError(error: unknown, request: FastifyRequest, bodyLimit: number): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof EngineError) return engineErrorToApi(error);
  const fe = error as Partial<FastifyError> & { validation?: SchemaError[]; validationContext?: string };
  if (Array.isArray(fe.validation)) {
    const ctx = fe.validationContext;
    const data = ctx === "querystring" ? request.query : ctx === "params" ? request.params : request.body;
    return validationError(fe.validation, data, request.routeOptions.url);
  }
  switch (fe.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return errors.bodyTooLarge(bodyLimit);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return errors.unsupportedMediaType(String(request.headers["content-type"] ?? ""));
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return errors.invalidJson("the body is empty");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return errors.invalidJson(fe.message ?? "invalid JSON");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return errors.invalidRequest("The Content-Length header does not match the body.", null, "invalid_content_length");
  }
  // JSON.parse and secure-json-parse (prototype poisoning) report bad bodies as SyntaxError
  if (error instanceof SyntaxError) return errors.invalidJson(error.message);
  if (fe.statusCode === 413) return errors.bodyTooLarge(bodyLimit);
  if (fe.statusCode === 415) return errors.unsupportedMediaType(String(request.headers["content-type"] ?? ""));
  // any other client error Fastify raises keeps its status, in our shape
  if (typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500)
    return new ApiError(fe.statusCode, "invalid_request_error", fe.code?.toLowerCase() ?? null, fe.message ?? "Bad request.");
  return errors.internal();
}

/** Errors Fastify raises before routing (a URL that does not decode), in the OpenAI shape. */
export function frameworkErrorHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const e =
    error.code === "FST_ERR_BAD_URL"
      ? new ApiError(400, "invalid_request_error", "invalid_url", `${error.message}.`)
      : error.statusCode !== undefined && error.statusCode < 500
        ? new ApiError(error.statusCode, "invalid_request_error", error.code?.toLowerCase() ?? null, error.message)
        : errors.internal();
  void sendApiError(reply, e);
}

export function sendApiError(reply: FastifyReply, e: ApiError): FastifyReply {
  return reply.code(e.status).headers(e.headers).type("application/json; charset=utf-8").send(e.body());
}

/** Installs the error handler and the 404/405 handler on the root instance. */
export function installErrorHandling(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((error, request, reply) => {
    const e = toApiError(error, request, bodyLimit);
    if (e.status >= 500) request.log.error({ err: error }, "request failed");
    else request.log.info({ code: e.code, param: e.param }, e.message);
    return sendApiError(reply, e);
  });

  const methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] as const;
  app.setNotFoundHandler((request, reply) => {
    const url = request.url.split("?")[0] ?? request.url;
    const allowed = methods.filter((m) => m !== request.method && app.hasRoute({ url, method: m }));
    const e = allowed.length > 0 ? errors.methodNotAllowed(request.method, url, allowed) : errors.routeNotFound(request.method, url);
    return sendApiError(reply, e);
  });
}

/** An error written straight to a socket Fastify does not (or no longer) answer on; the connection closes. */
export function writeRawError(socket: Duplex, e: ApiError, reason: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(e.body());
  const extra = Object.entries(e.headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.end(
    `HTTP/1.1 ${e.status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
  // a peer that never reads its answer does not keep the socket
  setTimeout(() => socket.destroy(), 1_000).unref();
}

/**
 * Requests Node's HTTP parser rejects before Fastify sees them (garbage, bad chunking,
 * oversized headers) still get an OpenAI-shaped body, and so do requests whose headers or
 * body did not arrive in time (server/http/slow-clients.ts).
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") return writeRawError(socket, errors.requestTimeout(), "Request Timeout");
  const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
  const e = new ApiError(
    tooLarge ? 431 : 400,
    "invalid_request_error",
    tooLarge ? "headers_too_large" : "bad_http_request",
    tooLarge ? "The request headers are too large." : "The HTTP request could not be parsed.",
  );
  writeRawError(socket, e, tooLarge ? "Request Header Fields Too Large" : "Bad Request");
}
