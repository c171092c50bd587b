// API keys and roles. Each route declares what it needs in its own options
// (`config: { access: "public" | "user" | "admin" }`); a route that says nothing is
// admin-only, so a new route is closed until someone opens it on purpose. One onRequest
// hook checks the caller's key against that declaration. With no keys configured every
// route is open, and the server refuses to listen anywhere but on loopback.
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { errors } from "./errors.js";

export type Role = "user" | "admin";
/** what a route asks of its caller */
export type Access = Role | "public";

declare module "fastify" {
  interface FastifyContextConfig {
    /** who may call this route when API keys are set; default "admin" */
    access?: Access;
  }
  interface FastifyRequest {
    /** the id of the caller's API key (apiKeyId(key): never the key); null without keys or on public routes */
    apiKeyId: string | null;
    /** the caller's role; null without keys (every caller has every role) or on public routes */
    apiKeyRole: Role | null;
  }
}

/** What the store and the logs know a key by: a prefix of its SHA-256, never the key itself. */
export function apiKeyId(key: string): string {
  return `key_${createHash("sha256").update(key).digest("hex").slice(0, 16)}`;
}

export interface ApiKey {
  key: string;
  role: Role;
}

/**
 * Browsers cannot set headers on a WebSocket, so the page sends its key as a subprotocol
 * `hybridchat.key.<KEY>` next to the protocol it wants (`hybridchat`); the server never
 * selects (echoes) the key one. A query string would end up in access logs.
 */
export const WS_PROTOCOL = "hybridchat";
export const WS_KEY_PROTOCOL_PREFIX = "hybridchat.key.";

// the characters a WebSocket subprotocol (an RFC 7230 token) may hold, minus ':' and ','
// which separate keys from roles and keys from keys on the command line
const KEY_CHARS = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

/** `KEY:user` or `KEY:admin` (as --api-key and HYBRIDCHAT_API_KEYS write them). */
export function parseApiKey(spec: string): ApiKey {
  const colon = spec.lastIndexOf(":");
  const key = colon > 0 ? spec.slice(0, colon) : "";
  const role = colon > 0 ? spec.slice(colon + 1) : "";
  if (!key || (role !== "user" && role !== "admin"))
    throw new Error(`API key "${redact(spec)}": expected KEY:user or KEY:admin (e.g. --api-key s3cret-key:admin)`);
  if (!KEY_CHARS.test(key))
    throw new Error(`API key "${redact(key)}": use letters, digits and - _ . ~ only (no spaces, ':' or ','), so a browser can send it too`);
  return { key, role };
}

/** `key1:admin,key2:user` (HYBRIDCHAT_API_KEYS); empty entries are ignored. */
export function parseApiKeys(list: string): ApiKey[] {
  return list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(parseApiKey);
}

/** Enough of a key to recognise it in a message, never enough to use it. */
function redact(key: string): string {
  return key.length <= 8 ? "***" : `${key.slice(0, 3)}***${key.slice(-2)}`;
}

const digest = (key: string): Buffer => createHash("sha256").update(key).digest();

/** The configured keys, compared by their SHA-256 in constant time. */
export class ApiKeys {
  readonly #keys: { digest: Buffer; role: Role }[];

  constructor(keys: readonly ApiKey[]) {
    this.#keys = keys.map((k) => ({ digest: digest(k.key), role: k.role }));
  }

  get size(): number {
    return this.#keys.length;
  }

  /** the key's role, or null for a key that is not configured */
  roleOf(key: string): Role | null {
    const d = digest(key);
    let role: Role | null = null;
    // no early exit: the time taken does not say which entry matched
    for (const k of this.#keys) if (timingSafeEqual(k.digest, d)) role = role === "admin" ? role : k.role;
    return role;
  }
}

/** The key a request carries: `Authorization: Bearer KEY`, or a WebSocket's key subprotocol. */
export function requestKey(request: FastifyRequest): string | null {
  const auth = request.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1]! : "";
  }
  const protocols = request.headers["sec-websocket-protocol"];
  if (protocols === undefined) return null;
  const p = protocols
    .split(",")
    .map((s) => s.trim())
    .find((s) => s.startsWith(WS_KEY_PROTOCOL_PREFIX));
  return p === undefined ? null : p.slice(WS_KEY_PROTOCOL_PREFIX.length);
}

/** For the WebSocket server: choose `hybridchat` if offered, never a key protocol. */
export function chooseWsProtocol(offered: Set<string>): string | false {
  if (offered.has(WS_PROTOCOL)) return WS_PROTOCOL;
  for (const p of offered) if (!p.startsWith(WS_KEY_PROTOCOL_PREFIX)) return p;
  return false;
}

/**
 * A refused WebSocket upgrade is answered on a socket the HTTP server no longer tracks (and
 * before @fastify/websocket marks it as its own): end it after the answer. Call before
 * refusing.
 */
export function closeUpgradeIfRefused(request: FastifyRequest, reply: FastifyReply): void {
  if (request.headers.upgrade !== undefined) reply.raw.once("finish", () => reply.raw.socket?.end());
}

/**
 * Checks every request against its route's declared `access`. Routes that are not found
 * only need a valid key (so a user learns a URL is wrong, not that it is forbidden).
 * Does nothing without keys.
 */
export function installAuth(app: FastifyInstance, keys: ApiKeys): void {
  app.decorateRequest("apiKeyId", null);
  app.decorateRequest("apiKeyRole", null);
  if (keys.size === 0) return;
  app.addHook("onRequest", async (request, reply) => {
    const access: Access = request.is404 ? "user" : (request.routeOptions.config.access ?? "admin");
    if (access === "public") return;
    closeUpgradeIfRefused(request, reply);
    const key = requestKey(request);
    if (key === null) throw errors.missingApiKey();
    const role = keys.roleOf(key);
    if (role === null) throw errors.invalidApiKey(redact(key));
    if (access === "admin" && role !== "admin") throw errors.adminOnly(request.method, request.url.split("?")[0]!);
    request.apiKeyId = apiKeyId(key);
    request.apiKeyRole = role;
    request.log = request.log.child({ key: request.apiKeyId });
  });
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

/**
 * Without keys anyone who can connect has every role (files, jobs, promote), so the
 * server listens on loopback only; with keys, anywhere.
 */
export function checkBind(host: string, keys: ApiKeys): void {
  if (keys.size === 0 && !isLoopback(host))
    throw new Error(
      `refusing to listen on ${host} without API keys: anyone who can reach it could train and replace the model. ` +
        `Add --api-key KEY:admin (or set HYBRIDCHAT_API_KEYS=KEY:admin), or listen on 127.0.0.1`,
    );
}
