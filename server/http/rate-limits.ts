// Per-key rate limits, over any 60 s window:
// - requests: each API key may start at most N requests (--key-rate-limit, or the key's
//   own `--requests-per-minute`); a sliding window of start times.
// - generated tokens: each key may have at most N tokens generated for it (--key-token-limit,
//   or the key's own `--tokens-per-minute`). Tokens are debited as they are generated, so
//   a request admitted under the budget runs to its end and may overdraw it; from then on
//   the key's generating requests get 429 until enough of the window's tokens have aged out.
// Over either: 429 rate_limit_exceeded with Retry-After saying when the window frees.
// Public routes and keyless servers are not limited (there is no key to count against);
// /health never is.
import type { FastifyInstance } from "fastify";
import { errors } from "./errors.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** the route generates tokens: a key over its token budget is refused here */
    generates?: boolean;
  }
  interface FastifyRequest {
    /** debits tokens generated for this request from its key's budget; null when the key has none */
    tokenMeter: ((tokens: number) => void) | null;
  }
}

const WINDOW_MS = 60_000;
const BUCKET_MS = 1000;

export interface RateLimits {
  /** requests one API key may start per minute, unless the key says otherwise; null: unlimited */
  requestsPerMinute: number | null;
  /** tokens that may be generated for one API key per minute, unless the key says otherwise; null: unlimited */
  tokensPerMinute: number | null;
}

/** seconds until `at` (ms), at least 1: Retry-After is in whole seconds and "0" invites a busy loop */
const secondsUntil = (at: number, t: number): number => Math.max(1, Math.ceil((at - t) / 1000));

/**
 * One key's generated tokens, in one-second buckets (so a busy key keeps at most 61
 * numbers). A bucket counts until a whole window has passed since its second ended.
 */
class TokenWindow {
  readonly #buckets: { second: number; tokens: number }[] = [];

  #expire(t: number): void {
    while (this.#buckets.length > 0 && (this.#buckets[0]!.second + 1) * BUCKET_MS + WINDOW_MS <= t) this.#buckets.shift();
  }

  add(tokens: number, t: number): void {
    this.#expire(t);
    const second = Math.floor(t / BUCKET_MS);
    const last = this.#buckets.at(-1);
    if (last?.second === second) last.tokens += tokens;
    else this.#buckets.push({ second, tokens });
  }

  /** null when under `limit`; else when (ms) the window's tokens fall below it */
  blockedUntil(limit: number, t: number): number | null {
    this.#expire(t);
    let used = this.#buckets.reduce((s, b) => s + b.tokens, 0);
    if (used < limit) return null;
    for (const b of this.#buckets) {
      used -= b.tokens;
      if (used < limit) return (b.second + 1) * BUCKET_MS + WINDOW_MS;
    }
    return t; // unreachable: an empty window is under any positive limit
  }
}

export function installRateLimits(app: FastifyInstance, limits: RateLimits, now: () => number = Date.now): void {
  const starts = new Map<string, number[]>();
  const tokens = new Map<string, TokenWindow>();
  app.decorateRequest("tokenMeter", null);
  app.addHook("onRequest", async (request) => {
    const key = request.apiKeyId;
    if (key === null) return;
    const t = now();
    const own = request.apiKeyLimits;
    const tokenLimit = own?.tokensPerMinute ?? limits.tokensPerMinute;
    if (tokenLimit !== null) {
      let w = tokens.get(key);
      if (w === undefined) tokens.set(key, (w = new TokenWindow()));
      const until = request.routeOptions.config.generates === true ? w.blockedUntil(tokenLimit, t) : null;
      if (until !== null) throw errors.rateLimited(`${tokenLimit} generated tokens`, secondsUntil(until, t));
      const window = w;
      request.tokenMeter = (n) => window.add(n, now());
    }
    const max = own?.requestsPerMinute ?? limits.requestsPerMinute;
    if (max === null) return;
    const recent = (starts.get(key) ?? []).filter((s) => s > t - WINDOW_MS);
    if (recent.length >= max) {
      starts.set(key, recent);
      throw errors.rateLimited(`${max} requests`, secondsUntil(recent[0]! + WINDOW_MS, t));
    }
    recent.push(t);
    starts.set(key, recent);
  });
}
