// `hybridchat keys create|list|revoke`: the API keys in the server's database, managed
// while the server runs (SQLite in WAL mode: the CLI and the server each hold their own
// connection; a write waits up to the busy timeout for the other's). The server looks keys
// up per request, so what this command does counts from the next request.
import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { intOption, UsageError } from "./errors.js";
import { didYouMean } from "./suggest.js";
import { KEYS_CREATE_HELP, KEYS_HELP, KEYS_LIST_HELP, KEYS_REVOKE_HELP } from "./keys.help.js";
import { DB_FILE, DEFAULT_DATA_DIR, openDb } from "../server/store/db.js";
import { ApiKeyStore, KeyStoreError, type StoredKey } from "../server/store/api-keys.js";

const SUBCOMMANDS = ["create", "list", "revoke"];

export async function keysCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") {
    process.stdout.write(KEYS_HELP);
    return;
  }
  if (sub === "create") return create(rest);
  if (sub === "list") return list(rest);
  if (sub === "revoke") return revoke(rest);
  throw new UsageError(`unknown subcommand "${sub}"${didYouMean(sub, SUBCOMMANDS)} (available: ${SUBCOMMANDS.join(", ")})`, "keys");
}

const DATA_DIR_OPTION = { "data-dir": { type: "string", default: DEFAULT_DATA_DIR }, help: { type: "boolean", short: "h" } } as const;

/**
 * The keys of the database under --data-dir. Only `create` may make a new database (keys
 * can be made before the first `serve`); listing or revoking in a directory that holds
 * none is a mistyped --data-dir.
 */
function withKeys<T>(dataDir: string, command: string, mayCreate: boolean, fn: (keys: ApiKeyStore, file: string) => T): T {
  const dir = resolve(dataDir);
  const file = join(dir, DB_FILE);
  if (!mayCreate && !existsSync(file))
    throw new UsageError(`--data-dir ${dataDir}: no ${DB_FILE} there (give the directory \`hybridchat serve --data-dir\` uses)`, command);
  const db = openDb(dir);
  try {
    return fn(new ApiKeyStore(db), file);
  } catch (e) {
    if (e instanceof KeyStoreError) throw new UsageError(e.message, command);
    throw e;
  } finally {
    db.close();
  }
}

function create(argv: string[]): void {
  const c = "keys create";
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      name: { type: "string" },
      role: { type: "string" },
      "requests-per-minute": { type: "string" },
      "tokens-per-minute": { type: "string" },
      ...DATA_DIR_OPTION,
    },
  });
  if (values.help) {
    process.stdout.write(KEYS_CREATE_HELP);
    return;
  }
  if (values.name === undefined) throw new UsageError("--name NAME is required (what logs and `keys list` call the key)", c);
  const role = values.role;
  if (role !== "user" && role !== "admin") throw new UsageError(`--role must be user or admin${role ? `, got "${role}"` : ""}`, c);
  const requestsPerMinute = intOption(values["requests-per-minute"], "requests-per-minute", c, 1, 1_000_000_000) ?? null;
  const tokensPerMinute = intOption(values["tokens-per-minute"], "tokens-per-minute", c, 1, 1_000_000_000) ?? null;
  withKeys(values["data-dir"], c, true, (keys, file) => {
    const { key, record } = keys.create({ name: values.name!, role, requestsPerMinute, tokensPerMinute });
    process.stdout.write(`${key}\n`);
    process.stderr.write(
      `hybridchat: created ${record.role} key ${record.id} "${record.name}" in ${file}${limitsText(record)}\n` +
        "hybridchat: this is the only time the key is shown (only its SHA-256 is stored): keep it now.\n" +
        "            Send it as Authorization: Bearer KEY; a running server accepts it from the next request.\n",
    );
  });
}

function list(argv: string[]): void {
  const c = "keys list";
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: { all: { type: "boolean", default: false }, json: { type: "boolean", default: false }, ...DATA_DIR_OPTION },
  });
  if (values.help) {
    process.stdout.write(KEYS_LIST_HELP);
    return;
  }
  const rows = withKeys(values["data-dir"], c, false, (keys) => keys.list()).filter((k) => values.all || k.revokedAt === null);
  process.stdout.write(values.json ? `${JSON.stringify(rows.map(keyJson), null, 2)}\n` : table(rows, values.all));
}

function revoke(argv: string[]): void {
  const c = "keys revoke";
  const { values, positionals } = parseArgs({ args: argv, strict: true, allowPositionals: true, options: DATA_DIR_OPTION });
  if (values.help) {
    process.stdout.write(KEYS_REVOKE_HELP);
    return;
  }
  if (positionals.length !== 1) throw new UsageError(`give one key id (key_…) or name to revoke${positionals.length ? `, got ${positionals.length}` : ""}`, c);
  const k = withKeys(values["data-dir"], c, false, (keys) => keys.revoke(positionals[0]!));
  process.stderr.write(`hybridchat: revoked ${k.role} key ${k.id} "${k.name}": from the next request on it gets 401\n`);
}

function limitsText(k: StoredKey): string {
  const parts = [k.requestsPerMinute === null ? null : `${k.requestsPerMinute} requests`, k.tokensPerMinute === null ? null : `${k.tokensPerMinute} tokens`];
  const set = parts.filter((p) => p !== null);
  return set.length ? ` (at most ${set.join(" and ")} a minute)` : "";
}

const seconds = (ms: number | null): number | null => (ms === null ? null : Math.floor(ms / 1000));

/** OpenAI's admin API key objects are snake_case with unix-second times; so is this */
function keyJson(k: StoredKey): Record<string, unknown> {
  return {
    id: k.id,
    name: k.name,
    role: k.role,
    requests_per_minute: k.requestsPerMinute,
    tokens_per_minute: k.tokensPerMinute,
    created_at: seconds(k.createdAt),
    last_used_at: seconds(k.lastUsedAt),
    revoked_at: seconds(k.revokedAt),
  };
}

/** UTC to the minute: last_used_at is only kept that precisely */
const when = (ms: number | null): string => (ms === null ? "-" : `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")}Z`);

function table(rows: readonly StoredKey[], withRevoked: boolean): string {
  if (rows.length === 0) return withRevoked ? "no keys\n" : "no keys (revoked ones: --all)\n";
  const head = ["ID", "NAME", "ROLE", "REQUESTS/MIN", "TOKENS/MIN", "CREATED", "LAST USED", ...(withRevoked ? ["REVOKED"] : [])];
  const body = rows.map((k) => [
    k.id,
    k.name,
    k.role,
    k.requestsPerMinute === null ? "default" : String(k.requestsPerMinute),
    k.tokensPerMinute === null ? "default" : String(k.tokensPerMinute),
    when(k.createdAt),
    when(k.lastUsedAt),
    ...(withRevoked ? [when(k.revokedAt)] : []),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  return [head, ...body].map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
}
