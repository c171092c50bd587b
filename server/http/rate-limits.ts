// Per-key request rate limits: each API key may start at most `requestsPerMinute` requests
// in any 60 s window (a sliding window of start times); the next gets 429 with Retry-After
// saying when a place frees up. Public routes and keyless servers are not limited (there
// is no key to count against); /health never is.
import type { FastifyInstance } from "fastify";
import { errors } from "./errors.js";

const WINDOW_MS = 60_000;

export interface RateLimits {
  /** requests one API key may start per minute; null: unlimited */
  requestsPerMinute: number | null;
}

export function installRateLimits(app: FastifyInstance, limits: RateLimits, now: () => number = Date.now): void {
  const max = limits.requestsPerMinute;
  if (max === null) return;
  const starts = new Map<string, number[]>();
  app.addHook("onRequest", async (request) => {
    const key = request.apiKeyId;
    if (key === null) return;
    const t = now();
    const recent = (starts.get(key) ?? []).filter((s) => s > t - WINDOW_MS);
    if (recent.length >= max) {
      starts.set(key, recent);
      throw errors.rateLimited(max, Math.max(1, Math.ceil((recent[0]! + WINDOW_MS - t) / 1000)));
    }
    recent.push(t);
    starts.set(key, recent);
  });
}
