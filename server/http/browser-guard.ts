// What a web page the user happens to visit can do to a server on their machine. Without
// keys a loopback server trusts whoever connects, and a browser will connect for any page:
// a form can POST to it (cross-site request), and a name the attacker controls can be
// re-pointed at 127.0.0.1 (DNS rebinding) so the page can read the answers too. So:
//   - the Host header must be an IP address, "localhost", or a name in --allowed-hosts (a
//     server on every interface without --allowed-hosts takes any name);
//   - a state-changing request (anything but GET/HEAD/OPTIONS) and any WebSocket upgrade
//     from a browser page of another origin is refused (the server grants no CORS consent);
//   - every response says nosniff and may not be framed; the page also gets a CSP.
// Clients that are not browsers (the SDK, curl) send no Origin and are not affected.
import { isIP } from "node:net";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { errors } from "./errors.js";
import { closeUpgradeIfRefused } from "./auth.js";

export interface BrowserGuardOptions {
  /** extra host names (or host:port) clients may use, e.g. the name behind a reverse proxy; "*" allows any */
  allowedHosts?: readonly string[];
}

/** The page's policy: its own scripts, styles and API only; never framed. */
export const PAGE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** `host[:port]` → lower-case host without brackets or port */
function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") >= 0 ? h.indexOf("]") : undefined);
  const colon = h.indexOf(":");
  // a bare IPv6 address has several colons
  return colon >= 0 && h.indexOf(":", colon + 1) < 0 ? h.slice(0, colon) : h;
}

const UNSPECIFIED = new Set(["0.0.0.0", "::"]);

/**
 * DNS rebinding needs a name the attacker controls, so an IP literal or "localhost" is always
 * fine; any other name must be in --allowed-hosts. A server bound to every interface with no
 * --allowed-hosts takes any name (it has API keys: auth.ts checkBind).
 */
function hostAllowed(request: FastifyRequest, app: FastifyInstance, allowed: ReadonlySet<string>): boolean {
  const header = request.headers.host;
  if (header === undefined) return false;
  const name = hostName(header);
  if (isIP(name) !== 0 || name === "localhost") return true;
  if (allowed.has("*") || allowed.has(name) || allowed.has(header.trim().toLowerCase())) return true;
  const bound = app.server.address();
  // not listening (app.inject): no socket a page could reach
  if (bound === null || typeof bound === "string") return true;
  return UNSPECIFIED.has(bound.address) && allowed.size === 0;
}

/** The request comes from a browser page of another origin than the server's own. */
function crossOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin;
  if (origin === undefined) {
    // browsers that send Sec-Fetch-Site say so even where they omit Origin
    const site = request.headers["sec-fetch-site"];
    return site === "cross-site" || site === "same-site";
  }
  if (origin === "null") return true;
  let o: URL;
  try {
    o = new URL(origin);
  } catch {
    return true;
  }
  return o.host.toLowerCase() !== (request.headers.host ?? "").trim().toLowerCase();
}

export function installBrowserGuard(app: FastifyInstance, opts: BrowserGuardOptions = {}): void {
  const allowed = new Set((opts.allowedHosts ?? []).map((h) => h.trim().toLowerCase()).filter((h) => h.length > 0));
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-content-type-options", "nosniff");
    reply.header("x-frame-options", "DENY");
    closeUpgradeIfRefused(request, reply);
    if (!hostAllowed(request, app, allowed)) throw errors.hostNotAllowed(request.headers.host ?? "");
    const upgrade = request.headers.upgrade !== undefined;
    if ((upgrade || !SAFE_METHODS.has(request.method)) && crossOrigin(request))
      throw errors.crossOrigin(request.method, String(request.headers.origin ?? request.headers["sec-fetch-site"]));
  });
  app.addHook("onSend", async (_request, reply, payload) => {
    if (String(reply.getHeader("content-type") ?? "").startsWith("text/html")) reply.header("content-security-policy", PAGE_CSP);
    return payload;
  });
}
