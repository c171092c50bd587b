// The store: one SQLite database and the table groups on it. The server opens it at
// start and closes it on shutdown; tests open one in a temp dir or in memory.
import { ApiKeyStore } from "./api-keys.js";
import { CompletionStore } from "./completions.js";
import { openDb, type Db } from "./db.js";
import { FeedbackStore } from "./feedback.js";
import { FileStore } from "./files.js";
import { IdempotencyStore } from "./idempotency.js";
import { JobStore } from "./jobs.js";
import { VersionStore } from "./versions.js";

export class Store {
  readonly completions: CompletionStore;
  readonly feedback: FeedbackStore;
  readonly idempotency: IdempotencyStore;
  readonly files: FileStore;
  readonly jobs: JobStore;
  readonly versions: VersionStore;
  readonly apiKeys: ApiKeyStore;
  readonly #db: Db;
  #closed = false;

  private constructor(db: Db) {
    this.#db = db;
    this.completions = new CompletionStore(db);
    this.feedback = new FeedbackStore(db);
    this.idempotency = new IdempotencyStore(db);
    this.files = new FileStore(db);
    this.jobs = new JobStore(db);
    this.versions = new VersionStore(db);
    this.apiKeys = new ApiKeyStore(db);
  }

  /** `<dataDir>/hybridchat.sqlite`, or `":memory:"` (gone when closed). */
  static open(dataDir: string | ":memory:"): Store {
    return new Store(openDb(dataDir));
  }

  /** Runs `fn` in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Idempotent. Committed transactions are already durable; this folds the WAL back. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.idempotency.close();
    this.#db.close();
  }
}
