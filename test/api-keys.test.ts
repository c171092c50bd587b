// Issue 16 item 7: keys made with `hybridchat keys create` (the CLI run as a user runs it,
// against the database of a server that is running) work from the next request, are
// refused from the next request once revoked, are listed by name and role but never shown
// again, are stored as their SHA-256 only; per-key request and generated-token limits give
// 429 with a Retry-After that is exactly right (on a controlled clock); the request log
// names the key. Over real HTTP with the official `openai` client.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import OpenAI from "openai";
import { Store } from "../server/store/store.js";
import { DB_FILE } from "../server/store/db.js";
import { apiKeyId } from "../server/http/auth.js";
import { createServer } from "../server/server.js";
import { apiFailure, serveModel, testModelDir, waitFor, type TestServing } from "./api-helpers.js";
import { CLI, serve, stop } from "./serve-process.js";

const MODEL = "stories260K";
const story = [{ role: "user" as const, content: "Once upon a time" }];
const run = promisify(execFile);

/** `hybridchat keys ARGS --data-dir DIR` in a child process */
async function keys(dir: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, "keys", ...args, "--data-dir", dir], { encoding: "utf8" });
}

interface Served {
  s: TestServing;
  store: Store;
  dir: string;
  url: string;
  logs: Record<string, unknown>[];
  clock: { t: number };
  client(key?: string): OpenAI;
  close(): Promise<void>;
}

/** The test model with a store in a temp dir, on a real socket, its log lines kept, its rate limits on `clock`. */
async function serveKeyed(app: { keyTokensPerMinute?: number; keyRequestsPerMinute?: number } = {}): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), "hc-keys-"));
  const store = Store.open(dir);
  const logs: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const clock = { t: 1_000_000_500 };
  const s = await serveModel({ app: { store, logger: { level: "info", stream }, rateLimitClock: () => clock.t, ...app } });
  const url = await s.app.listen({ host: "127.0.0.1", port: 0 });
  return {
    s,
    store,
    dir,
    url,
    logs,
    clock,
    client: (key?: string) => new OpenAI({ baseURL: `${url}/v1`, apiKey: key ?? "none", maxRetries: 0 }),
    async close() {
      await s.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("keys made, used and revoked while the server runs", () => {
  let srv: Served;
  let alice = "";
  before(async () => {
    srv = await serveKeyed();
  });
  after(async () => srv?.close());

  test("a keyless server answers everyone until `keys create` makes a key; from the next request on, a key is needed", async () => {
    const open = await srv.client().chat.completions.create({ model: MODEL, messages: story, max_tokens: 4 });
    assert.equal(open.object, "chat.completion");

    const made = await keys(srv.dir, "create", "--name", "alice", "--role", "user");
    alice = made.stdout.trim();
    assert.match(alice, /^hc-[A-Za-z0-9_-]{43}$/, "hc- and 32 random bytes in base64url, alone on stdout");
    assert.match(made.stderr, /created user key key_[0-9a-f]{16} "alice"/);
    assert.ok(!made.stderr.includes(alice), "the details on stderr do not repeat the key");

    const none = await apiFailure(srv.client().chat.completions.create({ model: MODEL, messages: story, max_tokens: 4 }));
    assert.equal(none.status, 401);
    assert.equal(none.code, "invalid_api_key");
    const missing = await fetch(`${srv.url}/v1/models`);
    assert.equal(missing.status, 401);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "missing_api_key");
    assert.equal((await fetch(`${srv.url}/health`)).status, 200, "public routes stay open");
  });

  test("the new key chats (as a user: admin routes 403); its name, not the key, is on the request's log lines", async () => {
    const r = await srv.client(alice).chat.completions.create({ model: MODEL, messages: story, max_tokens: 6, temperature: 0 });
    assert.equal(r.choices.length, 1);
    const streamed = await srv.client(alice).completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 4, stream: true });
    let chunks = 0;
    for await (const _ of streamed) chunks++;
    assert.ok(chunks > 0);
    const forbidden = await apiFailure(srv.client(alice).fineTuning.jobs.list());
    assert.equal(forbidden.status, 403);

    const id = apiKeyId(alice);
    const completed = srv.logs.filter((l) => l.msg === "request completed" && l.key === id);
    assert.ok(completed.length >= 3, `"request completed" lines with the key id: ${JSON.stringify(srv.logs.slice(-6))}`);
    for (const l of completed) assert.equal(l.key_name, "alice");
    const all = JSON.stringify(srv.logs);
    assert.ok(!all.includes(alice), "the key itself is never logged");
  });

  test("`keys list` shows id, name and role, never the key; --json says the same; the store holds only the key's SHA-256", async () => {
    await keys(srv.dir, "create", "--name", "ops", "--role", "admin", "--requests-per-minute", "600");
    const { stdout } = await keys(srv.dir, "list");
    const lines = stdout.trim().split("\n");
    assert.match(lines[0]!, /^ID\s+NAME\s+ROLE\s+REQUESTS\/MIN\s+TOKENS\/MIN\s+CREATED\s+LAST USED$/);
    assert.match(stdout, new RegExp(`^${apiKeyId(alice)}\\s+alice\\s+user\\s+default\\s+default\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\dZ\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\dZ$`, "m"), "used: a last-used time");
    assert.match(stdout, /^key_[0-9a-f]{16}\s+ops\s+admin\s+600\s+default\s+\S+ \S+\s+-$/m);
    assert.ok(!stdout.includes(alice));
    const json = JSON.parse((await keys(srv.dir, "list", "--json")).stdout) as { id: string; name: string; role: string; last_used_at: number | null }[];
    assert.deepEqual(json.map((k) => [k.id, k.name, k.role]), [[apiKeyId(alice), "alice", "user"], [json[1]!.id, "ops", "admin"]]);
    assert.ok(json[0]!.last_used_at !== null);

    const db = new Database(join(srv.dir, DB_FILE), { readonly: true });
    try {
      const row = db.prepare("SELECT * FROM api_keys WHERE name = 'alice'").get() as Record<string, unknown>;
      assert.deepEqual(row.key_sha256, createHash("sha256").update(alice).digest());
      assert.equal(row.id, apiKeyId(alice), "the id the rest of the server records (ownership) is apiKeyId(key)");
      for (const v of Object.values(row)) assert.ok(!String(v).includes(alice) && !(v instanceof Buffer && v.includes(alice)));
    } finally {
      db.close();
    }
    // nowhere in the database's files, the WAL included
    for (const f of [DB_FILE, `${DB_FILE}-wal`].map((n) => join(srv.dir, n)).filter(existsSync))
      assert.ok(!readFileSync(f).includes(Buffer.from(alice)), `${f} holds the key`);
  });

  test("`keys revoke NAME`: the next request with the key is 401, without a restart; the name may be used again", async () => {
    const { stderr } = await keys(srv.dir, "revoke", "alice");
    assert.match(stderr, /revoked user key key_[0-9a-f]{16} "alice"/);
    const gone = await apiFailure(srv.client(alice).chat.completions.create({ model: MODEL, messages: story, max_tokens: 4 }));
    assert.equal(gone.status, 401);
    assert.equal(gone.code, "invalid_api_key");
    const again = await keys(srv.dir, "revoke", "alice").catch((e: { code: number; stderr: string }) => e);
    assert.ok("code" in again && again.code === 2 && /no key with id or name "alice"/.test(again.stderr), "no live key has that name now");
    const alice2 = (await keys(srv.dir, "create", "--name", "alice", "--role", "user")).stdout.trim();
    assert.notEqual(alice2, alice);
    assert.equal((await srv.client(alice2).models.list()).data[0]!.id, MODEL);
    const listed = (await keys(srv.dir, "list", "--all")).stdout;
    assert.equal([...listed.matchAll(/\balice\b/g)].length, 2, "--all lists the revoked alice too");
    assert.match(listed, /REVOKED$/m);
    await keys(srv.dir, "revoke", apiKeyId(alice2));
  });

  test("with every stored key revoked, the loopback server is open again; beyond loopback it stays closed", async () => {
    await keys(srv.dir, "revoke", "ops");
    assert.equal((await fetch(`${srv.url}/v1/models`)).status, 200);

    // the same database, a server on every interface: it may start (a key exists), and a
    // key stays required when the last one is revoked
    const ops = (await keys(srv.dir, "create", "--name", "ops2", "--role", "admin")).stdout.trim();
    const wide = createServer({ model: testModelDir, dataDir: srv.dir, threads: 1, logger: false });
    try {
      const url = (await wide.listen({ host: "0.0.0.0", port: 0 })).replace("0.0.0.0", "127.0.0.1");
      await wide.ready;
      assert.equal((await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${ops}` } })).status, 200);
      await keys(srv.dir, "revoke", "ops2");
      assert.equal((await fetch(`${url}/v1/models`)).status, 401);
      assert.equal((await fetch(`${srv.url}/v1/models`)).status, 200, "the loopback server is open again");
    } finally {
      await wide.close(0);
    }
  });
});

describe("the CLI beside a busy server", () => {
  test("keys are made and revoked while 24 streamed chats are being stored", async () => {
    const srv = await serveKeyed();
    try {
      const admin = (await keys(srv.dir, "create", "--name", "admin", "--role", "admin")).stdout.trim();
      const c = srv.client(admin);
      const chats = Array.from({ length: 24 }, async () => {
        const st = await c.chat.completions.create({ model: MODEL, messages: story, max_tokens: 24, stream: true });
        for await (const _ of st);
      });
      const made: string[] = [];
      for (let i = 0; i < 4; i++) made.push((await keys(srv.dir, "create", "--name", `busy-${i}`, "--role", "user")).stdout.trim());
      await keys(srv.dir, "revoke", "busy-0");
      await Promise.all(chats);
      await waitFor(() => srv.store.completions.list({ object: "chat.completion", limit: 100, order: "asc" }).items.length === 24, "24 stored chats");
      assert.equal((await apiFailure(srv.client(made[0]).models.list())).status, 401);
      for (const k of made.slice(1)) assert.equal((await srv.client(k).models.list()).data[0]!.id, MODEL);
    } finally {
      await srv.close();
    }
  });

  test("`serve --host 0.0.0.0` starts on a data dir holding a key made by `keys create`, and says keys are required", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hc-keys-serve-"));
    try {
      const key = (await keys(dir, "create", "--name", "boot", "--role", "admin")).stdout.trim();
      const s = await serve(["--model", testModelDir, "--host", "0.0.0.0", "--data-dir", dir], { HYBRIDCHAT_API_KEYS: "" });
      try {
        assert.match(s.stderr(), /API keys required \(0 admin, 0 user on the command line, and those of `hybridchat keys` in the database\)/);
        const url = s.url.replace("0.0.0.0", "127.0.0.1");
        assert.equal((await fetch(`${url}/v1/models`)).status, 401);
        assert.equal((await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status, 200);
      } finally {
        await stop(s, "SIGTERM");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("per-key rate limits", () => {
  let srv: Served;
  before(async () => {
    srv = await serveKeyed({ keyTokensPerMinute: 1000 });
  });
  after(async () => srv?.close());

  /** a fresh key with its own token limit */
  async function keyWith(name: string, tokensPerMinute: number): Promise<OpenAI> {
    return srv.client((await keys(srv.dir, "create", "--name", name, "--role", "user", "--tokens-per-minute", String(tokensPerMinute))).stdout.trim());
  }

  /** the next generating request's refusal, with its Retry-After */
  async function refused(c: OpenAI): Promise<number> {
    const e = await apiFailure(c.chat.completions.create({ model: MODEL, messages: story, max_tokens: 2 }));
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal(e.code, "rate_limit_exceeded");
    assert.match(e.message, /generated tokens per minute/);
    return Number(e.headers?.get("retry-after"));
  }

  // one request of each kind generating exactly 12 tokens (the greedy story has no EOS that early)
  const kinds: Record<string, (c: OpenAI) => Promise<number>> = {
    "chat": async (c) => (await c.chat.completions.create({ model: MODEL, messages: story, max_tokens: 12, temperature: 0 })).usage!.completion_tokens,
    "chat, streamed": async (c) => {
      let usage = 0;
      const s = await c.chat.completions.create({ model: MODEL, messages: story, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
      for await (const ch of s) usage = ch.usage?.completion_tokens ?? usage;
      return usage;
    },
    "completions": async (c) => (await c.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 12, temperature: 0 })).usage!.completion_tokens,
    "completions, streamed, n = 2": async (c) => {
      let usage = 0;
      const s = await c.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 6, n: 2, temperature: 0, stream: true, stream_options: { include_usage: true } });
      for await (const ch of s) usage = ch.usage?.completion_tokens ?? usage;
      return usage;
    },
  };

  for (const [kind, generate] of Object.entries(kinds))
    test(`${kind}: exactly the generated tokens are debited; 429 with a Retry-After that is exactly right, then the key recovers`, async () => {
      const slug = kind.replace(/\W+/g, "-");
      // at 12 tokens a key with 12 a minute is spent, one with 13 is not
      const spent = await keyWith(`spent-${slug}`, 12);
      const left = await keyWith(`left-${slug}`, 13);
      assert.equal(await generate(spent), 12);
      assert.equal(await generate(left), 12);
      assert.equal((await left.chat.completions.create({ model: MODEL, messages: story, max_tokens: 1 })).usage!.completion_tokens, 1, "13 - 12 left: admitted");
      const retry = await refused(spent);
      // the tokens were generated in the clock's current second: free a minute after it ends
      const free = (Math.floor(srv.clock.t / 1000) + 1) * 1000 + 60_000;
      assert.equal(retry, Math.ceil((free - srv.clock.t) / 1000));
      assert.ok((await spent.models.list()).data.length > 0, "routes that generate nothing are not refused");
      const t0 = srv.clock.t;
      srv.clock.t = t0 + (retry - 1) * 1000;
      assert.ok((await refused(spent)) >= 1, "a second early: still refused");
      srv.clock.t = t0 + retry * 1000;
      assert.equal((await spent.chat.completions.create({ model: MODEL, messages: story, max_tokens: 2 })).usage!.completion_tokens, 2);
      srv.clock.t += 120_000;
    });

  test("a request admitted under the budget runs to its end (overdraws), then the key waits until enough tokens age out", async () => {
    const c = await keyWith("overdraw", 5);
    const r = await c.chat.completions.create({ model: MODEL, messages: story, max_tokens: 20, temperature: 0 });
    assert.equal(r.usage!.completion_tokens, 20, "not cut at 5");
    await refused(c);
    srv.clock.t += 120_000;
  });

  test("--key-token-limit is every key's budget unless the key has its own; it applies to keys given with --api-key too", async () => {
    const d = await keys(srv.dir, "create", "--name", "default-budget", "--role", "user");
    const c = srv.client(d.stdout.trim());
    // 1000 a minute: 40 requests of 25 tokens, then refused
    for (let i = 0; i < 40; i++) assert.equal((await c.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 25, temperature: 0 })).usage!.completion_tokens, 25);
    await refused(c);
    srv.clock.t += 120_000;
    const limited = await serveModel({ app: { keyTokensPerMinute: 3, apiKeys: [{ key: "flag-key-0123456789", role: "user" }] } });
    try {
      const post = () => limited.app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: "Bearer flag-key-0123456789" }, payload: { model: MODEL, prompt: "Once", max_tokens: 3 } });
      assert.equal((await post()).statusCode, 200);
      const over = await post();
      assert.equal(over.statusCode, 429, over.body);
      assert.ok(Number(over.headers["retry-after"]) >= 1);
    } finally {
      await limited.close();
    }
  });

  test("a key's own --requests-per-minute replaces --key-rate-limit", async () => {
    const c = srv.client((await keys(srv.dir, "create", "--name", "two-a-minute", "--role", "user", "--requests-per-minute", "2")).stdout.trim());
    await c.models.list();
    await c.models.list();
    const e = await apiFailure(c.models.list());
    assert.ok(e instanceof OpenAI.RateLimitError);
    assert.match(e.message, /2 requests per minute/);
    assert.equal(Number(e.headers?.get("retry-after")), 60);
  });
});
