// Issue 16 item 9: feedback records its source (rating, pairwise, text) and its key; only
// the sources in --rlhf-sources train, and a user key's free-text preference waits for an
// admin's approval. Checked on what the trainers read: the files a continuous-RLHF run
// writes for its job (train and held-out), the training data of a job on training_file
// "feedback", and the export; over real HTTP with the hybridchat client (the `openai` one).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { HybridchatClient } from "../clients/client.js";
import { rlhfSources } from "../cli/serve-rlhf-flags.js";
import { apiKeyId } from "../server/http/auth.js";
import { Store } from "../server/store/store.js";
import type { JobRecord } from "../server/store/jobs.js";
import { serveModel } from "./api-helpers.js";
import { MODEL, startServer, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

const USER = "review-user-key-1";
const ADMIN = "review-admin-key-1";
const PENDING = "ZEBRA a user's own words, pending";
const REJECTED = "OKAPI words an admin rejected";

const dir = mkdtempSync(join(tmpdir(), "hc-review-"));
let s: FtServer;
let user: HybridchatClient;
let admin: HybridchatClient;

before(async () => {
  // ratings (and corrections) are left out; pairwise choices and reviewed text train
  s = await startServer(join(dir, "data"), {
    apiKeys: [{ key: USER, role: "user" }, { key: ADMIN, role: "admin" }],
    trainingSources: ["pairwise", "text"],
    rlhf: { after: 1, everyMinutes: null, method: "dpo", promote: false, pollMs: 1e9, heldOut: 0.5 },
  });
  user = new HybridchatClient({ baseURL: `${s.url}/v1`, apiKey: USER, maxRetries: 0 });
  admin = new HybridchatClient({ baseURL: `${s.url}/v1`, apiKey: ADMIN, maxRetries: 0 });
});
after(async () => {
  await s?.server.close();
  rmSync(dir, { recursive: true, force: true });
});

const twoAnswers = async (c: HybridchatClient, content: string, seed: number) =>
  (await c.chat.completions.create({ model: MODEL, messages: [{ role: "user", content }], n: 2, max_tokens: 6, temperature: 1, seed })).id;

/** What a continuous-RLHF run gave its job to read: the train and held-out files' lines. */
function runData(job: JobRecord): string[] {
  const files = s.server.app.fineTuning!.files;
  return [job.trainingFile, job.validationFile!].flatMap((id) => readFileSync(files.path(id), "utf8").trim().split("\n"));
}

/** The run's job is not needed beyond its data: stop it and let the policy settle. */
async function stopRun(job: JobRecord): Promise<void> {
  await admin.fineTuning.jobs.cancel(job.id).catch(() => undefined); // it may have finished already
  await s.server.app.fineTuning!.policy!.idle();
}

test("--rlhf-sources: known names only; the default is the judgements of served answers", () => {
  assert.deepEqual(rlhfSources(undefined, "serve"), ["rating", "pairwise"]);
  assert.deepEqual(rlhfSources("text, pairwise,text", "serve"), ["text", "pairwise"]);
  assert.throws(() => rlhfSources("rating,thumbs", "serve"), /--rlhf-sources: unknown source "thumbs"; use rating, pairwise, text/);
  assert.throws(() => rlhfSources(",", "serve"), /needs at least one/);
});

test("each piece of feedback records its source and its key; a user's free text waits, an admin's does not", async () => {
  const c = await twoAnswers(user, "Once upon a time", 1);
  const rated = await user.feedback.rate(c, 1);
  const pair = await user.feedback.prefer({ completionId: c, chosenIndex: 0, rejectedIndex: 1 });
  const text = await user.feedback.prefer({ prompt: "Tell me a story", chosen: PENDING, rejected: "no" });
  const adminText = await admin.feedback.prefer({ prompt: "Tell me a story", chosen: "An admin's story", rejected: "no" });
  assert.deepEqual(
    [rated, pair, text, adminText].map((f) => [f.source, f.status, f.owner]),
    [
      ["rating", "approved", apiKeyId(USER)],
      ["pairwise", "approved", apiKeyId(USER)],
      ["text", "pending", apiKeyId(USER)],
      ["text", "approved", apiKeyId(ADMIN)],
    ],
  );
  assert.deepEqual((await user.feedback.list({ source: "text" })).data.map((f) => f.id), [text.id]);
});

test("the review: admins list what is pending and approve or reject it; a user key cannot", async () => {
  const rejected = await user.feedback.prefer({ prompt: "Tell me a story", chosen: REJECTED, rejected: "no" });
  const pending = (await admin.feedback.list({ status: "pending" })).data;
  assert.deepEqual(pending.map((f) => ("chosen" in f ? f.chosen : null)), [PENDING, REJECTED]);
  // a user sees its own pending items, and may not judge them
  assert.equal((await user.feedback.list({ status: "pending" })).data.length, 2);
  await assert.rejects(user.feedback.approve(rejected.id), (e: unknown) => e instanceof OpenAI.PermissionDeniedError);
  await assert.rejects(user.feedback.reject(rejected.id), (e: unknown) => e instanceof OpenAI.PermissionDeniedError);
  await assert.rejects(admin.feedback.approve("fb_no_such_feedback"), (e: unknown) => e instanceof OpenAI.NotFoundError);
  const r = await admin.feedback.reject(rejected.id);
  assert.equal(r.status, "rejected");
  assert.deepEqual((await admin.feedback.list({ status: "pending" })).data.map((f) => ("chosen" in f ? f.chosen : null)), [PENDING]);
  assert.equal(s.server.store!.feedback.get(rejected.id)!.reviewedBy, apiKeyId(ADMIN));
});

test("a user's free-text pair reaches the RLHF trainer's data only once approved; a rejected one never", { timeout: 120_000 }, async () => {
  const policy = s.server.app.fineTuning!.policy!;
  for (let i = 0; i < 12; i++) await user.feedback.prefer({ completionId: await twoAnswers(user, "Tom had a dog", 100 + i), chosenIndex: 0, rejectedIndex: 1 });
  const first = await policy.check();
  assert.ok(first, "the run started");
  const before = runData(first);
  await stopRun(first);
  // 13 pairwise choices and the admin's text; not the pending text, not the rejected one
  assert.equal(before.length, 14);
  assert.ok(before.some((l) => l.includes("An admin's story")));
  assert.ok(!before.some((l) => l.includes("ZEBRA")), "a pending pair is not trained on");
  assert.ok(!before.some((l) => l.includes("OKAPI")));

  const pending = (await admin.feedback.list({ status: "pending" })).data[0]!;
  assert.equal((await admin.feedback.approve(pending.id)).status, "approved");
  await user.feedback.prefer({ completionId: await twoAnswers(user, "Tom had a dog", 200), chosenIndex: 1, rejectedIndex: 0 });
  const second = await policy.check();
  assert.ok(second, "the next run started");
  const after = runData(second);
  await stopRun(second);
  assert.equal(after.length, 16);
  assert.equal(after.filter((l) => l.includes("ZEBRA")).length, 1, "approved: trained on");
  assert.ok(!after.some((l) => l.includes("OKAPI")), "rejected: never");
});

test("a source not in --rlhf-sources trains nothing: ratings and corrections are out of the SFT export and of a job on feedback", async () => {
  const c = await twoAnswers(user, "Once upon a time", 7);
  await user.feedback.rate(c, 1);
  await user.feedback.correct(c, "Once upon a time, a corrected story.");
  assert.equal((await admin.feedback.list({ source: "rating" })).data.length >= 3, true);
  assert.equal(await admin.feedback.export("sft"), "");
  const job = await admin.fineTuning.jobs.create({ model: MODEL, training_file: "feedback", method: { type: "supervised" } });
  const done = await waitForJob(admin, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(done.status, "failed");
  assert.equal(done.error?.code, "no_feedback");
  // the preference export holds the reviewed text and the pairwise choices, for admins all of them
  const dpo = await admin.feedback.export("dpo");
  assert.equal(dpo.trim().split("\n").length, 16);
  assert.ok(dpo.includes("ZEBRA") && !dpo.includes("OKAPI"));
});

test("by default (rating, pairwise) free text never trains, even from an admin or a server without keys", async () => {
  const store = Store.open(":memory:");
  const keyless = await serveModel({ app: { store } });
  try {
    const hc = new HybridchatClient({ baseURL: `${await keyless.app.listen({ host: "127.0.0.1", port: 0 })}/v1`, maxRetries: 0 });
    const c = await twoAnswers(hc, "Once upon a time", 3);
    await hc.feedback.prefer({ completionId: c, chosenIndex: 0, rejectedIndex: 1 });
    const text = await hc.feedback.prefer({ prompt: "Tell me a story", chosen: "TAPIR text", rejected: "no" });
    assert.equal(text.status, "approved", "no keys: everyone is an admin");
    await hc.feedback.rate(c, 1);
    const dpo = await hc.feedback.export("dpo");
    assert.equal(dpo.trim().split("\n").length, 1);
    assert.ok(!dpo.includes("TAPIR"));
    assert.equal((await hc.feedback.export("sft")).trim().split("\n").length, 1, "the +1 rating");
  } finally {
    await keyless.close();
    store.close();
  }
});
