// What keeps slow or greedy clients from holding the server's connections: deadlines for
// the headers and the whole request, a limit on silence while a body arrives, a cap on the
// connections one address may hold open, and no unread body left to drain after a refusal
// (the connection closes instead). Node's HTTP server enforces the two deadlines itself
// (checked every `checkIntervalMs`); the rest is done here. A response may take as long as
// generation takes: none of these limits applies once the request has arrived.
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Socket } from "node:net";
import { errors } from "./errors.js";
import { writeRawError } from "./error-handler.js";

export interface ConnectionLimits {
  /** the request line and headers must arrive within this (408 otherwise) */
  headersTimeoutMs: number;
  /** the whole request, body included, must arrive within this (408 otherwise) */
  requestTimeoutMs: number;
  /** while a body arrives, at most this long without a byte (408 otherwise) */
  bodyIdleMs: number;
  /** an idle keep-alive connection is closed after this */
  keepAliveMs: number;
  /** connections one client address may hold open at once; more are answered 429 and closed */
  maxConnectionsPerAddress: number;
  /** how often Node checks the header and request deadlines */
  checkIntervalMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  headersTimeoutMs: 15_000,
  // a 100 MB upload at 10 Mbit/s takes 80 s
  requestTimeoutMs: 300_000,
  bodyIdleMs: 15_000,
  keepAliveMs: 5_000,
  maxConnectionsPerAddress: 128,
  checkIntervalMs: 1_000,
};

function hasBody(request: FastifyRequest): boolean {
  const h = request.headers;
  return (h["content-length"] !== undefined && h["content-length"] !== "0") || h["transfer-encoding"] !== undefined;
}

/** `limits.requestTimeoutMs` goes to Fastify's constructor; the rest is installed here. */
export function installConnectionLimits(app: FastifyInstance, limits: ConnectionLimits): void {
  const server = app.server;
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveMs;
  // read when the server starts listening (node's http.Server; not in @types/node 20)
  (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = limits.checkIntervalMs;

  const open = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress ?? "";
    const n = (open.get(address) ?? 0) + 1;
    open.set(address, n);
    socket.once("close", () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
    if (n > limits.maxConnectionsPerAddress) writeRawError(socket, errors.tooManyConnections(limits.maxConnectionsPerAddress), "Too Many Requests");
  });

  app.addHook("onRequest", async (request) => {
    if (!hasBody(request)) return;
    const raw = request.raw;
    // app.inject's requests have no socket
    if (!raw.socket || typeof raw.setTimeout !== "function") return;
    // Node resets this timer on every chunk it parses; it stops once the body has been read
    raw.setTimeout(limits.bodyIdleMs, () => writeRawError(raw.socket, errors.requestTimeout(), "Request Timeout"));
    raw.once("end", () => raw.socket?.setTimeout(0));
  });

  // a request answered before its body was read (refused by auth, a bad route...) closes its
  // connection instead of draining a body nobody wants
  app.addHook("onSend", async (request, reply) => {
    if (hasBody(request) && !request.raw.complete) reply.header("connection", "close");
  });
}
