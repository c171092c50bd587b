// API keys kept in the database (`hybridchat keys create|list|revoke`): a name, a role,
// optional limits, and the key's SHA-256, never the key. The server looks a request's
// key up here on every request, so a key created or revoked by another process (the CLI,
// while the server runs) counts from the next request on.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Db } from "./db.js";

export type KeyRole = "user" | "admin";

/** What every key is known by: the SHA-256 of the whole key. */
export function keyDigest(key: string): Buffer {
  return createHash("sha256").update(key).digest();
}

/** `key_` + the first 16 hex digits of the key's SHA-256 (the same for --api-key keys and stored ones). */
export function keyIdOfDigest(digest: Buffer): string {
  return `key_${digest.toString("hex").slice(0, 16)}`;
}

/** Prefix of the keys `keys create` makes: recognisable in a config file or a leak scanner. */
export const KEY_PREFIX = "hc-";

/** A new key: the prefix and 32 random bytes in base64url (43 characters). */
export function newKeySecret(): string {
  return KEY_PREFIX + randomBytes(32).toString("base64url");
}

/** Letters, digits and . _ - @, up to 64; never shaped like a key id, so `revoke X` is unambiguous. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export interface StoredKey {
  id: string;
  name: string;
  role: KeyRole;
  createdAt: number;
  revokedAt: number | null;
  /** null: the server's --key-rate-limit */
  requestsPerMinute: number | null;
  /** null: the server's --key-token-limit */
  tokensPerMinute: number | null;
  /** to the minute; null: never used */
  lastUsedAt: number | null;
}

interface Row {
  id: string;
  name: string;
  role: KeyRole;
  key_sha256: Buffer;
  created_at: number;
  revoked_at: number | null;
  requests_per_minute: number | null;
  tokens_per_minute: number | null;
  last_used_at: number | null;
}

const fromRow = (r: Row): StoredKey => ({
  id: r.id,
  name: r.name,
  role: r.role,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
  requestsPerMinute: r.requests_per_minute,
  tokensPerMinute: r.tokens_per_minute,
  lastUsedAt: r.last_used_at,
});

export class KeyStoreError extends Error {
  constructor(
    readonly code: "invalid_name" | "name_taken" | "not_found" | "already_revoked",
    message: string,
  ) {
    super(message);
    this.name = "KeyStoreError";
  }
}

export interface NewKey {
  name: string;
  role: KeyRole;
  requestsPerMinute?: number | null;
  tokensPerMinute?: number | null;
}

/** last_used_at is written when the stored one is older than this: one write a minute, not one a request */
const TOUCH_MS = 60_000;

export class ApiKeyStore {
  readonly #db: Db;
  readonly #insert;
  readonly #byDigest;
  readonly #anyLive;
  readonly #all;
  readonly #byId;
  readonly #liveByName;
  readonly #revoke;
  readonly #touch;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare(
      "INSERT INTO api_keys (id, name, role, key_sha256, created_at, requests_per_minute, tokens_per_minute) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    this.#byDigest = db.prepare("SELECT * FROM api_keys WHERE key_sha256 = ? AND revoked_at IS NULL");
    this.#anyLive = db.prepare("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)").pluck();
    this.#all = db.prepare("SELECT * FROM api_keys ORDER BY seq");
    this.#byId = db.prepare("SELECT * FROM api_keys WHERE id = ?");
    this.#liveByName = db.prepare("SELECT * FROM api_keys WHERE name = ? AND revoked_at IS NULL");
    this.#revoke = db.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL");
    this.#touch = db.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?");
  }

  /** Makes a key; the returned `key` is the only copy there will ever be. */
  create(k: NewKey, now = Date.now()): { key: string; record: StoredKey } {
    if (!NAME.test(k.name) || /^key_/i.test(k.name))
      throw new KeyStoreError("invalid_name", `key name "${k.name}": use 1 to 64 letters, digits and . _ - @, starting with a letter or digit (not "key_", which key ids start with)`);
    const key = newKeySecret();
    const digest = keyDigest(key);
    const id = keyIdOfDigest(digest);
    return this.#db.transaction(() => {
      if (this.#liveByName.get(k.name) !== undefined)
        throw new KeyStoreError("name_taken", `a key named "${k.name}" already exists; revoke it first or pick another name`);
      this.#insert.run(id, k.name, k.role, digest, now, k.requestsPerMinute ?? null, k.tokensPerMinute ?? null);
      return { key, record: fromRow(this.#byId.get(id) as Row) };
    }).immediate();
  }

  /**
   * The live key whose SHA-256 is `digest`, or null. The index lookup's timing depends on
   * the digest alone, which tells an attacker nothing about any stored key; the match is
   * then confirmed in constant time.
   */
  findLive(digest: Buffer): StoredKey | null {
    const r = this.#byDigest.get(digest) as Row | undefined;
    if (r === undefined || !timingSafeEqual(r.key_sha256, digest)) return null;
    return fromRow(r);
  }

  /** whether any key is live (a keyless server starts asking for keys once one is) */
  anyLive(): boolean {
    return this.#anyLive.get() === 1;
  }

  /** Records a use of `k` (found by findLive), at most once a minute per key. */
  touch(k: StoredKey, now = Date.now()): void {
    if (k.lastUsedAt === null || now - k.lastUsedAt >= TOUCH_MS) this.#touch.run(now, k.id);
  }

  /** every key ever made, live and revoked, oldest first */
  list(): StoredKey[] {
    return (this.#all.all() as Row[]).map(fromRow);
  }

  /** Revokes the key with this id (key_…) or, failing that, the live key with this name. */
  revoke(idOrName: string, now = Date.now()): StoredKey {
    return this.#db.transaction(() => {
      const r = (this.#byId.get(idOrName) ?? this.#liveByName.get(idOrName)) as Row | undefined;
      if (r === undefined) throw new KeyStoreError("not_found", `no key with id or name "${idOrName}" (see \`hybridchat keys list\`; --api-key keys live on the command line, not here)`);
      if (r.revoked_at !== null) throw new KeyStoreError("already_revoked", `key ${r.id} ("${r.name}") was already revoked`);
      this.#revoke.run(now, r.id);
      return fromRow(this.#byId.get(r.id) as Row);
    }).immediate();
  }
}
