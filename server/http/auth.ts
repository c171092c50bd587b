// API keys and roles. Each route declares what it needs in its own options
// (`config: { access: "public" | "user" | "admin" }`); a route that says nothing is
// admin-only, so a new route is closed until someone opens it on purpose. One onRequest
// hook checks the caller's key against that declaration. Keys come from the command line
// (--api-key, fixed for the process) and from the database (`hybridchat keys create`,
// looked up on every request, so creating or revoking one needs no restart). While no key
// exists anywhere every route is open, and the server refuses to listen anywhere but on
// loopback; the first key created makes every request need one.
import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { errors } from "./errors.js";
import { keyDigest, keyIdOfDigest, type KeyRole } from "../store/api-keys.js";
import type { Store } from "../store/store.js";

export type Role = KeyRole;
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
    /** the name of a database key (`keys create --name`); null for --api-key keys, without keys or on public routes */
    apiKeyName: string | null;
    /** the caller key's own limits (null fields: the server's); null without keys or on public routes */
    apiKeyLimits: KeyLimits | null;
  }
}

/** What the store and the logs know a key by: a prefix of its SHA-256, never the key itself. */
export function apiKeyId(key: string): string {
  return keyIdOfDigest(keyDigest(key));
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

/** A key's own rate limits; null: the server's default (--key-rate-limit, --key-token-limit). */
export interface KeyLimits {
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
}

/** Who a request's key says the caller is. */
export interface Caller {
  /** apiKeyId(key) */
  id: string;
  role: Role;
  /** a database key's name; null for --api-key keys */
  name: string | null;
  limits: KeyLimits;
}

const NO_LIMITS: KeyLimits = { requestsPerMinute: null, tokensPerMinute: null };

/**
 * The keys a request may carry: those given at start (compared by their SHA-256 in
 * constant time) and, with a store, the live ones in its database (looked up per request).
 */
export class ApiKeys {
  readonly #keys: { digest: Buffer; role: Role }[];
  readonly #store: Store | null;
  #alwaysRequired = false;

  constructor(keys: readonly ApiKey[], store: Store | null = null) {
    this.#keys = keys.map((k) => ({ digest: keyDigest(k.key), role: k.role }));
    this.#store = store;
  }

  /** whether the database holds a live key now */
  get stored(): boolean {
    const s = this.#store;
    return s !== null && !s.closed && s.apiKeys.anyLive();
  }

  /**
   * Whether a request must carry a key: some key exists now (one given at start, or a live
   * one in the database), or the server listens beyond loopback (then revoking every key
   * closes the server instead of opening it).
   */
  required(): boolean {
    return this.#alwaysRequired || this.#keys.length > 0 || this.stored;
  }

  /** Called once the server listens beyond loopback: from then on a key is always required. */
  requireAlways(): void {
    this.#alwaysRequired = true;
  }

  /** the caller this key stands for, or null for a key that is neither given nor live */
  lookup(key: string): Caller | null {
    const d = keyDigest(key);
    let role: Role | null = null;
    // no early exit: the time taken does not say which entry matched
    for (const k of this.#keys) if (timingSafeEqual(k.digest, d)) role = role === "admin" ? role : k.role;
    if (role !== null) return { id: keyIdOfDigest(d), role, name: null, limits: NO_LIMITS };
    const s = this.#store;
    if (s === null || s.closed) return null;
    const stored = s.apiKeys.findLive(d);
    if (stored === null) return null;
    s.apiKeys.touch(stored);
    return {
      id: stored.id,
      role: stored.role,
      name: stored.name,
      limits: { requestsPerMinute: stored.requestsPerMinute, tokensPerMinute: stored.tokensPerMinute },
    };
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
 * Lets everything through while no key exists (`keys.required()`, asked per request).
 */
export function installAuth(app: FastifyInstance, keys: ApiKeys): void {
  app.decorateRequest("apiKeyId", null);
  app.decorateRequest("apiKeyRole", null);
  app.decorateRequest("apiKeyName", null);
  app.decorateRequest("apiKeyLimits", null);
  app.addHook("onRequest", async (request, reply) => {
    const access: Access = request.is404 ? "user" : (request.routeOptions.config.access ?? "admin");
    if (access === "public" || !keys.required()) return;
    closeUpgradeIfRefused(request, reply);
    const key = requestKey(request);
    if (key === null) throw errors.missingApiKey();
    const caller = keys.lookup(key);
    if (caller === null) throw errors.invalidApiKey(redact(key));
    request.apiKeyId = caller.id;
    request.apiKeyRole = caller.role;
    request.apiKeyName = caller.name;
    request.apiKeyLimits = caller.limits;
    // the key's id and name (never the key) on this request's lines, "request completed" included
    const log = request.log.child(caller.name === null ? { key: caller.id } : { key: caller.id, key_name: caller.name });
    request.log = log;
    reply.log = log;
    // after the log binding: a user key trying an admin route is logged by name
    if (access === "admin" && caller.role !== "admin") throw errors.adminOnly(request.method, request.url.split("?")[0]!);
  });
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

/**
 * Without keys anyone who can connect has every role (files, jobs, promote), so the
 * server listens on loopback only; with keys (given at start or live in the database),
 * anywhere.
 */
export function checkBind(host: string, keys: ApiKeys): void {
  if (!keys.required() && !isLoopback(host))
    throw new Error(
      `refusing to listen on ${host} without API keys: anyone who can reach it could train and replace the model. ` +
        `Add --api-key KEY:admin (or set HYBRIDCHAT_API_KEYS=KEY:admin, or make one with \`hybridchat keys create --role admin\`), or listen on 127.0.0.1`,
    );
}
