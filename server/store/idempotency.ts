// Idempotency-Key: the first successful response to a (route, key) is kept with a hash of
// its request body; a retry with the same body gets that response back and writes nothing,
// the same key with another body is refused. Keys are scoped by the caller (the route and
// the API key's id: two keys never see each other's responses). Keys older than KEY_TTL_MS
// are forgotten, and swept from the table every SWEEP_MS while the store is open.
import { createHash } from "node:crypto";
import type { Db } from "./db.js";

/** as Stripe: a day */
export const KEY_TTL_MS = 24 * 60 * 60 * 1000;
/** how often expired keys are deleted (they are never answered once expired, swept or not) */
export const SWEEP_MS = 10 * 60 * 1000;

export type IdempotentOutcome<T> =
  | { kind: "fresh"; status: number; body: T }
  | { kind: "replay"; status: number; body: T }
  | { kind: "mismatch" };

/** A hash of a JSON value that ignores key order. */
export function requestHash(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex");
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

interface KeyRow {
  request_hash: string;
  status: number;
  response: string;
  created: number;
}

export class IdempotencyStore {
  readonly #db: Db;
  readonly #find;
  readonly #save;
  readonly #expire;
  readonly #sweep: NodeJS.Timeout;

  constructor(db: Db, ttlMs = KEY_TTL_MS, sweepMs = SWEEP_MS) {
    this.#db = db;
    this.#find = db.prepare("SELECT request_hash, status, response, created FROM idempotency_keys WHERE scope = ? AND key = ?");
    this.#save = db.prepare(
      "INSERT OR REPLACE INTO idempotency_keys (scope, key, request_hash, status, response, created) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.#expire = db.prepare("DELETE FROM idempotency_keys WHERE created < ?");
    this.#ttl = ttlMs;
    this.expire();
    this.#sweep = setInterval(() => this.expire(), sweepMs);
    this.#sweep.unref();
  }

  readonly #ttl: number;

  /** Deletes the keys older than the TTL; returns how many. */
  expire(): number {
    return this.#expire.run(Date.now() - this.#ttl).changes;
  }

  /** Stops the sweep (the store closes). */
  close(): void {
    clearInterval(this.#sweep);
  }

  /**
   * Runs `write` (which may throw: nothing is kept then) and records its response under
   * the key, in one transaction, unless the key already answered. `key` null: no key,
   * just the write in a transaction.
   */
  run<T>(scope: string, key: string | null, body: unknown, write: () => { status: number; body: T }): IdempotentOutcome<T> {
    return this.#db.transaction((): IdempotentOutcome<T> => {
      if (key === null) return { kind: "fresh", ...write() };
      const hash = requestHash(body);
      const now = Date.now();
      const seen = this.#find.get(scope, key) as KeyRow | undefined;
      if (seen && seen.created >= now - this.#ttl) {
        if (seen.request_hash !== hash) return { kind: "mismatch" };
        return { kind: "replay", status: seen.status, body: JSON.parse(seen.response) as T };
      }
      const out = write();
      this.#save.run(scope, key, hash, out.status, JSON.stringify(out.body), now);
      return { kind: "fresh", ...out };
    })();
  }
}
