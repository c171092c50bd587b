// clients/: HybridchatClient (the official openai client plus the feedback extension) and
// `hybridchat chat` driven through its stdin, both against a real server with a real store;
// what they send is checked where it lands, in the store.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { HybridchatClient } from "../clients/client.js";
import type { JobStreamMessage } from "../clients/job-stream.js";
import { nameChangeData } from "./sft-helpers.js";
import { jsonlErrors } from "../engine/train/data/training-format.js";
import { README, repoRoot } from "./api-helpers.js";
import { MODEL, serveWithStore, type StoreServing } from "./store-helpers.js";

let s: StoreServing;
let hc: HybridchatClient;
const story = [{ role: "user" as const, content: "Once upon a time" }];

let dataFile: string;

before(async () => {
  s = await serveWithStore();
  hc = new HybridchatClient({ baseURL: `${s.baseUrl}/v1`, maxRetries: 0 });
  // made with the model before the engine serves anything on it
  dataFile = join(s.dir, "names.jsonl");
  await nameChangeData(s.model, dataFile, 4);
});
after(async () => {
  await s.close();
});

describe("HybridchatClient", () => {
  test("chat as openai does; rate, correct and prefer land in the store; export is valid JSONL", async () => {
    const r = await hc.chat.completions.create({ model: MODEL, messages: story, max_tokens: 12, temperature: 0 });
    assert.equal(r.object, "chat.completion");
    const up = await hc.feedback.rate(r.id, 1, { comment: "nice" });
    assert.equal(up.type, "rating");
    const fix = await hc.feedback.correct(r.id, ", there was a brave knight.");
    assert.equal(fix.type, "correction");
    const pair = await hc.chat.completions.create({ model: MODEL, messages: story, max_tokens: 8, temperature: 1, seed: 4, n: 2 });
    const pref = await hc.feedback.prefer({ completionId: pair.id, chosenIndex: 1, rejectedIndex: 0 });
    assert.equal(pref.type, "preference");
    const text = await hc.feedback.prefer({ prompt: "Tell me about a dog", chosen: "The dog ran.", rejected: "No." });
    assert.equal(text.type, "preference");

    const mine = await hc.feedback.list({ completionId: r.id });
    assert.deepEqual(new Set(mine.data.map((f) => f.id)), new Set([up.id, fix.id]));
    const prefs = await hc.feedback.list({ type: "preference" });
    assert.deepEqual(new Set(prefs.data.map((f) => f.id)), new Set([pref.id, text.id]));

    const sft = await hc.feedback.export("sft");
    const dpo = await hc.feedback.export("dpo");
    assert.deepEqual(jsonlErrors("sft", sft), []);
    assert.deepEqual(jsonlErrors("dpo", dpo), []);
    assert.ok(sft.includes("a brave knight"), "the correction is an SFT example");
    // the choice between two served answers; the text one is not trained on by default (--rlhf-sources)
    assert.equal(dpo.trim().split("\n").length, 1);
  });

  test("an Idempotency-Key makes a retried rating the same feedback", async () => {
    const r = await hc.chat.completions.create({ model: MODEL, messages: story, max_tokens: 4, temperature: 0 });
    const a = await hc.feedback.rate(r.id, -1, { idempotencyKey: "retry-1" });
    const b = await hc.feedback.rate(r.id, -1, { idempotencyKey: "retry-1" });
    assert.equal(b.id, a.id);
    assert.equal((await hc.feedback.list({ completionId: r.id })).data.length, 1);
  });

  test("server errors arrive as the openai client's typed errors", async () => {
    await assert.rejects(hc.feedback.rate("chatcmpl-nope", 1), (e: unknown) => (e as { status?: number }).status === 404);
  });
});

describe("HybridchatClient jobs and versions", () => {
  test("upload, create, stream to success; the version is listed, promoted and rolled back", { timeout: 120_000 }, async () => {
    const file = await hc.files.create({ file: createReadStream(dataFile), purpose: "fine-tune" });
    const job = await hc.jobs.create({
      model: MODEL,
      training_file: file.id,
      suffix: "sdk",
      seed: 0,
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 1, batch_size: 1 } } },
    });
    assert.equal(job.object, "fine_tuning.job");
    const seen: JobStreamMessage[] = [];
    for await (const m of hc.jobs.stream(job.id)) seen.push(m);
    const last = seen.at(-1)!;
    assert.ok(last.object === "fine_tuning.job" && last.status === "succeeded", JSON.stringify(last));
    const steps = seen.filter((m) => m.object === "fine_tuning.job.event" && m.type === "metrics");
    assert.ok(steps.length >= 4, `one metrics event per step: ${steps.length}`);
    assert.equal(new Set(seen.filter((m) => m.object === "fine_tuning.job.event").map((m) => m.id)).size, seen.length - seen.filter((m) => m.object === "fine_tuning.job").length, "no event twice");

    const done = await hc.jobs.retrieve(job.id);
    assert.equal(done.status, "succeeded");
    const ft = done.fine_tuned_model!;
    assert.ok((await hc.jobs.list()).data.some((j) => j.id === job.id));
    assert.ok((await hc.jobs.events(job.id)).data.length > 0);

    let v = await hc.versions.list();
    assert.deepEqual([v.base, v.serves], [MODEL, MODEL]);
    assert.ok(v.versions.some((m) => m.id === ft));
    await assert.rejects(hc.versions.rollback(), /nothing to roll back/);
    assert.equal((await hc.versions.promote(ft)).serves, ft);
    v = await hc.versions.list();
    assert.equal(v.serves, ft);
    assert.equal((await hc.versions.rollback()).serves, MODEL, "the first version rolls back to the base weights");
    assert.equal((await hc.versions.list()).serves, MODEL);
  });

  test("cancel a queued job; the stream of an unknown job fails with 404", async () => {
    const file = await hc.files.create({ file: createReadStream(dataFile), purpose: "fine-tune" });
    const job = await hc.jobs.create({ model: MODEL, training_file: file.id, method: { type: "supervised" } });
    assert.equal((await hc.jobs.cancel(job.id)).status, "cancelled");
    await assert.rejects(async () => {
      for await (const _m of hc.jobs.stream("ftjob-missing")) assert.fail("no message expected");
    }, (e: unknown) => (e as { status?: number }).status === 404);
  });
});

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// a test that fails while its chat still runs would otherwise keep this file from ending
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null) c.kill();
});

/** `hybridchat chat ARGS` as a child process, read and typed into as a person would. */
function chatProcess(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [join(repoRoot, "dist", "cli", "main.js"), "chat", ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, HYBRIDCHAT_API_KEY: "", ...env },
  });
  children.push(child);
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (out += c));
  const exited = new Promise<number | null>((res) => child.on("exit", (c) => res(c)));
  return {
    output: () => out,
    exit: () => exited,
    say: (line: string): void => void child.stdin.write(line + "\n"),
    async until(re: RegExp): Promise<void> {
      const t0 = Date.now();
      while (!re.test(out)) {
        if (Date.now() - t0 > 30_000) throw new Error(`chat never printed ${re}; it printed:\n${out}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

describe("hybridchat chat", () => {
  test("streams answers, keeps the conversation, and stores /good, /compare and /bad", async () => {
    const chat = chatProcess(["--url", s.baseUrl, "--temperature", "0", "--max-tokens", "40"]);
    const { until, say } = chat;
    await until(/\/help for commands/);
    say("Once upon a time");
    await until(/Lily/);
    say("/good");
    await until(/\(rated \+1/);
    say("/compare");
    await until(/Which is better\? \[1\/2\]/);
    say("2");
    await until(/\(preference stored/);
    say("/bad too short");
    await until(/\(rated -1/);
    say("/frobnicate");
    await until(/unknown command \/frobnicate/);
    // /retry: a new (greedy, so the same) answer to the last message; /correct replaces it
    say("/retry");
    await until(new RegExp(`(${escape(README.continuation.slice(0, 40))}[\\s\\S]*){2}`));
    say("/correct Once upon a time, a fox learned to sing.");
    await until(/\(correction stored: (\S+)\)/);
    say("/quit");
    const code = await chat.exit();
    const out = chat.output();
    assert.equal(code, 0, out);
    // the first answer is the model's greedy continuation, streamed as it came
    assert.ok(out.includes(README.continuation.slice(0, 60)), out);

    const ratings = (await hc.feedback.list({ type: "rating" })).data.filter((f) => f.type === "rating" && f.comment !== "nice");
    const good = ratings.find((f) => f.type === "rating" && f.rating === 1 && f.comment === null);
    const bad = ratings.find((f) => f.type === "rating" && f.rating === -1 && f.comment === "too short");
    assert.ok(good && bad, JSON.stringify(ratings));
    const pref = (await hc.feedback.list({ type: "preference" })).data.at(-1); // the newest: /compare's
    assert.ok(pref && pref.type === "preference" && pref.chosen_index === 1 && pref.rejected_index === 0, "/compare stored choice 2 over choice 1");
    // /bad judged the compared answer the user picked: the same completion, choice 1
    assert.ok(bad.type === "rating" && bad.completion_id === pref.chosen_id && bad.choice_index === 1, JSON.stringify({ bad, pref }));
    const fox = (await hc.feedback.list({ type: "correction" })).data.find((f) => f.type === "correction" && f.correction.includes("fox"));
    assert.ok(fox?.type === "correction" && fox.completion_id !== pref.chosen_id, "/correct judged /retry's new answer");
  });
});

describe("hybridchat chat: errors that say what to do", () => {
  test("no server at --url; a model the server does not serve", async () => {
    const down = chatProcess(["--url", "http://127.0.0.1:9"]);
    assert.equal(await down.exit(), 2);
    assert.match(down.output(), /cannot reach http:\/\/127\.0\.0\.1:9: is `hybridchat serve` running there\?/);
    const typo = chatProcess(["--url", s.baseUrl, "--model", "stories260k"]);
    assert.equal(await typo.exit(), 2);
    assert.match(typo.output(), /serves no model "stories260k" \(did you mean stories260K\?\); pass --model with one of: stories260K/);
    assert.match(typo.output(), /Run `hybridchat chat --help`/);
  });

  test("an answer that cannot fit the model's context: the error says what to do, and the chat goes on", async () => {
    const chat = chatProcess(["--url", s.baseUrl, "--max-tokens", "600"]);
    await chat.until(/\/help for commands/);
    chat.say("Once upon a time");
    await chat.until(/\(error: (400 )?This model's maximum context length is 512 tokens\..* \/reset starts a new conversation\.\)\n> /);
    chat.say("/quit");
    assert.equal(await chat.exit(), 0, chat.output());
  });

  test("a server with API keys: no key and a wrong key are refused with what to do; the key from the environment chats and rates", async () => {
    const keyed = await serveWithStore({ apiKeys: [{ key: "chat-user-key-1234", role: "user" }] });
    try {
      const none = chatProcess(["--url", keyed.baseUrl]);
      assert.equal(await none.exit(), 2);
      assert.match(none.output(), /wants an API key: pass --api-key KEY or set HYBRIDCHAT_API_KEY/);
      const wrong = chatProcess(["--url", keyed.baseUrl, "--api-key", "not-the-key-5678"]);
      assert.equal(await wrong.exit(), 2);
      assert.match(wrong.output(), /refused the API key .*check it against the server's --api-key/);

      const chat = chatProcess(["--url", keyed.baseUrl, "--max-tokens", "8"], { HYBRIDCHAT_API_KEY: "chat-user-key-1234" });
      await chat.until(/\/help for commands/);
      chat.say("Once upon a time");
      chat.say("/good");
      await chat.until(/\(rated \+1: (\S+)\)/);
      chat.say("/quit");
      assert.equal(await chat.exit(), 0, chat.output());
      const id = /\(rated \+1: (\S+)\)/.exec(chat.output())![1]!;
      const stored = await new HybridchatClient({ baseURL: `${keyed.baseUrl}/v1`, apiKey: "chat-user-key-1234", maxRetries: 0 }).feedback.list({ type: "rating" });
      assert.deepEqual(stored.data.map((f) => f.id), [id]);
    } finally {
      await keyed.close();
    }
  });
});
