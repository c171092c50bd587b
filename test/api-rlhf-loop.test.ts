// The whole loop over real HTTP with the official client on stories260K: chat with n: 2 →
// a pairwise preference on the two stored choices whenever exactly one of them mentions an
// animal (the model's own samples, test/pref-helpers.ts) → POST /v1/fine_tuning/jobs with
// training_file "feedback", method dpo → the job succeeds → the new model id, served by the
// same process, mentions animals on held-out prompts clearly more often than the base.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HELD_OUT_PROMPTS, STORY_PROMPTS } from "./pref-helpers.js";
import { animalRate, chats, preferAnimals } from "./loop-helpers.js";
import { MODEL, serverForFile, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

let s: FtServer;
serverForFile("hc-loop-", (x) => (s = x));

test("chat → pairwise feedback → dpo job on the feedback → the new model prefers what people preferred", { timeout: 150_000 }, async (t) => {
  const pairs = await preferAnimals(s.url, await chats(s.client, MODEL, STORY_PROMPTS, 12, 2, 1));
  assert.ok(pairs >= 40, `${pairs} preference pairs`);

  const job = await s.client.fineTuning.jobs.create({ model: MODEL, training_file: "feedback", suffix: "animals", seed: 0, method: { type: "dpo", dpo: { hyperparameters: { beta: 0.1 } } } });
  assert.equal(job.method?.type, "dpo");
  const done = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  assert.equal(done.fine_tuned_model, `ft:${MODEL}:animals:${job.id}`);
  assert.equal(done.method?.dpo?.hyperparameters?.beta, 0.1);
  assert.ok((await s.client.models.list()).data.some((m) => m.id === done.fine_tuned_model));

  // 16 requests × n 4 per held-out prompt: 256 samples per model, seeds the same for both
  const p0 = animalRate(await chats(s.client, MODEL, HELD_OUT_PROMPTS, 16, 4, 7));
  const p1 = animalRate(await chats(s.client, done.fine_tuned_model!, HELD_OUT_PROMPTS, 16, 4, 7));
  t.diagnostic(`${pairs} pairs; animal rate base ${p0} → dpo ${p1}`);
  // as in test/pref-e2e.test.ts: under "no change" the difference of two rates of 256 samples
  // near 0.2 has sd ≈ 0.035, so a rise of 0.15 is over 4 sd
  assert.ok(p0 < 0.4, `base rate ${p0}`);
  assert.ok(p1 >= p0 + 0.15, `rate base ${p0} → dpo ${p1}`);
});
