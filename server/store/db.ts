// The SQLite file under --data-dir: opened once at server start, migrated to the latest
// schema, closed on shutdown. better-sqlite3 is synchronous, so every write is one short
// transaction on the JS thread: no two writers, no interleaving, nothing half-written.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { MIGRATIONS, type Migration } from "./migrations.js";

export type Db = Database.Database;

export const DB_FILE = "hybridchat.sqlite";
/** where `serve` and `keys` look for it without --data-dir (relative to the working directory) */
export const DEFAULT_DATA_DIR = "hybridchat-data";

export class StoreError extends Error {
  constructor(
    readonly code: "schema_too_new" | "migration_failed",
    message: string,
  ) {
    super(message);
    this.name = "StoreError";
  }
}

/**
 * Opens `<dataDir>/hybridchat.sqlite` (created if missing), or an in-memory database for
 * `":memory:"`, and applies the migrations it lacks.
 */
export function openDb(dataDir: string | ":memory:", migrations: readonly Migration[] = MIGRATIONS): Db {
  let path = dataDir;
  if (dataDir !== ":memory:") {
    mkdirSync(dataDir, { recursive: true });
    path = join(dataDir, DB_FILE);
  }
  const db = new Database(path);
  try {
    // WAL: readers (list, export) never block the writer and a commit is one append.
    db.pragma("journal_mode = WAL");
    // FULL, not NORMAL: in WAL mode NORMAL already survives a killed process, but a power
    // cut or kernel crash may drop the last commits. The rows here are people's feedback
    // and the completions it refers to, which cannot be regenerated; the price is one
    // fsync of the WAL per commit, i.e. per request, small next to a generation.
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    // another process (a backup, the sqlite3 shell) may hold the lock for a moment
    db.pragma("busy_timeout = 5000");
    migrate(db, migrations);
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}

/** The schema version the database is at (0: empty). */
export function schemaVersion(db: Db): number {
  const row = db.prepare("SELECT max(version) AS v FROM schema_migrations").get() as { v: number | null };
  return row.v ?? 0;
}

function migrate(db: Db, migrations: readonly Migration[]): void {
  db.exec(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
  );
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${m.name}: versions must be 1, 2, 3... in order (got ${m.version} at ${i + 1})`);
  });
  const current = schemaVersion(db);
  if (current > migrations.length)
    throw new StoreError(
      "schema_too_new",
      `the database is at schema version ${current}, newer than this hybridchat knows (${migrations.length}); upgrade hybridchat or use another --data-dir`,
    );
  const record = db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
  for (const m of migrations.slice(current)) {
    // each migration and its record commit together, so a crash leaves a known version
    try {
      db.transaction(() => {
        db.exec(m.up);
        record.run(m.version, m.name, Date.now());
      })();
    } catch (e) {
      throw new StoreError("migration_failed", `migration ${m.version} (${m.name}) failed: ${(e as Error).message}`);
    }
  }
}
