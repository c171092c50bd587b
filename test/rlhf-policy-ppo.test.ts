// Continuous RLHF with --rlhf-method ppo over real HTTP on stories260K: after N preferences
// (chat n: 2, the animal preference of test/loop-helpers.ts) the policy runs a reward_model
// job and then a ppo job against it, both visible, on the same train / held-out files; the
// ppo candidate then meets the not-worse gate, and what happens to it (published and
// promoted, or failed unpublished) must follow from the margins the gate measured. A run's
// reward_model job that a restart left queued is run after it, and its ppo job follows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toFile } from "openai";
import { RLHF_RM_SUFFIX, RLHF_SUFFIX } from "../server/rlhf/policy.js";
import { STORY_PROMPTS } from "./pref-helpers.js";
import { chats, preferAnimals } from "./loop-helpers.js";
import { MODEL, serverForFile, startServer, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

let s: FtServer;
const RLHF = {

  after: 40,
  everyMinutes: null,
  method: "ppo",
  promote: true,
  pollMs: 20,
  heldOut: 0.3,
  rewardModelHyperparameters: { n_epochs: 6, batch_size: 8 },
  hyperparameters: { n_epochs: 2, batch_size: 16, max_new_tokens: 32, learning_rate_multiplier: 10 },
} as const;
serverForFile("hc-rlhf-ppo-", (x) => (s = x), { rlhf: RLHF });

const VERDICT =
  /Held-out evaluation on (\d+) preference pairs: candidate margin\/token (-?\d+\.\d+), accuracy \d\.\d+; served (\S+) margin\/token (-?\d+\.\d+), accuracy \d\.\d+; paired improvement (-?\d+\.\d+) \(sd \S+\), 95 % lower bound (-?\d+\.\d+|-Infinity): (better, publishing|not shown better, not published)/;

test("--rlhf-method ppo: a reward_model job, then a ppo job against it, then the gate's decision as its numbers say", { timeout: 240_000 }, async (t) => {
  const policy = s.server.app.fineTuning!.policy!;
  const pairs = await preferAnimals(s.url, await chats(s.client, MODEL, STORY_PROMPTS, 12, 2, 1));
  // 40 fire the run; fewer than 40 more, so no second run follows it
  assert.ok(pairs >= 40 && pairs < 80, `${pairs} pairs`);
  await new Promise((r) => setTimeout(r, 100));
  await policy.idle();

  const jobs = (await s.client.fineTuning.jobs.list({ limit: 100 })).data.reverse();
  const suffix = (id: string): string | null => s.server.store!.jobs.get(id)!.suffix;
  assert.deepEqual(jobs.map((j) => [j.method?.type, suffix(j.id)]), [["reward_model", RLHF_RM_SUFFIX], ["ppo", RLHF_SUFFIX]], "one run: the reward model first, then PPO");
  const [rm, ppo] = jobs as [(typeof jobs)[0], (typeof jobs)[0]];
  assert.equal(rm.status, "succeeded", JSON.stringify(rm.error));
  assert.equal(rm.fine_tuned_model, null);
  assert.equal(ppo.training_file, rm.training_file);
  assert.equal(ppo.validation_file, rm.validation_file);
  const hp = (ppo.method as unknown as { ppo: { hyperparameters: Record<string, unknown> } }).ppo.hyperparameters;
  assert.equal(hp.reward_model, rm.id);
  assert.equal(hp.max_new_tokens, 32);
  const rmEvents = (await s.client.fineTuning.jobs.listEvents(rm.id, { limit: 100 })).data.map((e) => e.message);
  assert.ok(rmEvents.some((m) => /held-out pairwise accuracy/.test(m)), "the reward model is evaluated on the held-out file");

  // the gate's verdict: an event when it passed, the job's error when it did not
  const events = (await s.client.fineTuning.jobs.listEvents(ppo.id, { limit: 100 })).data.map((e) => e.message);
  assert.ok(events.some((m) => m.startsWith("Step ")), "the ppo job trained");
  const text = ppo.status === "succeeded" ? events.find((m) => VERDICT.test(m)) : ppo.error?.message;
  const m = VERDICT.exec(text ?? "");
  assert.ok(m, `no verdict: ${ppo.status} ${JSON.stringify(ppo.error)} ${events.join(" | ")}`);
  t.diagnostic(`${pairs} pairs posted; ${m[0]}`);
  const [cand, served, diff, lower] = [Number(m[2]), Number(m[4]), Number(m[5]), Number(m[6])];
  assert.equal(m[3], MODEL, "judged against what the base id served");
  assert.ok(Math.abs(cand - served - diff) < 2e-4, "the paired improvement is the difference of the means");
  assert.ok(lower <= diff);
  const pass = lower > 0;
  assert.equal(m[7] === "better, publishing", pass, "the verdict follows the measured lower bound");
  if (pass) {
    assert.equal(ppo.status, "succeeded");
    assert.equal(ppo.fine_tuned_model, `ft:${MODEL}:${RLHF_SUFFIX}:${ppo.id}`);
    assert.ok((await s.client.models.list()).data.some((x) => x.id === ppo.fine_tuned_model));
    assert.equal(s.server.store!.versions.promoted(MODEL), ppo.fine_tuned_model);
  } else {
    assert.equal(ppo.status, "failed");
    assert.equal(ppo.error?.code, "candidate_not_better");
    assert.equal(ppo.fine_tuned_model, null);
    assert.equal(s.server.store!.versions.promoted(MODEL), null);
  }
  const c = await s.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8 });
  assert.ok(c.choices[0]!.message.content!.length > 0, "serving goes on");
});

const dpoLine = (chosen: string, rejected: string): string =>
  JSON.stringify({ input: { messages: [{ role: "user", content: "Once upon a time" }] }, preferred_output: [{ role: "assistant", content: chosen }], non_preferred_output: [{ role: "assistant", content: rejected }] });

test("a run's reward_model job left queued by a restart runs after it, and its ppo job follows", { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "hc-rlhf-ppo-restart-"));
  let a: FtServer | undefined;
  let b: FtServer | undefined;
  try {
    // server A, no policy: a long dpo job runs, a run's reward_model job (as the policy names it) waits behind it
    a = await startServer(join(dir, "data"));
    const text = [dpoLine(" A dog ran.", " It was dark."), dpoLine(" The cat sat.", " He went home."), dpoLine(" A bird sang.", " She was sad.")].join("\n") + "\n";
    const train = await a.client.files.create({ file: await toFile(Buffer.from(text), "rlhf-3.train.jsonl"), purpose: "fine-tune" });
    const held = await a.client.files.create({ file: await toFile(Buffer.from(text), "rlhf-3.heldout.jsonl"), purpose: "fine-tune" });
    const long = await a.client.fineTuning.jobs.create({ model: MODEL, training_file: train.id, method: { type: "dpo", dpo: { hyperparameters: { n_epochs: 256, batch_size: 1 } } } });
    await waitForJob(a.client, long.id, ["running"]);
    const rm = await a.client.fineTuning.jobs.create({
      model: MODEL,
      training_file: train.id,
      validation_file: held.id,
      suffix: RLHF_RM_SUFFIX,
      method: { type: "reward_model", reward_model: { hyperparameters: { n_epochs: 1 } } } as never,
    });
    await waitForJob(a.client, rm.id, ["queued"]);
    await a.server.close();
    a = undefined;

    // server B with --rlhf-method ppo: the queued reward model runs, then the policy's ppo job against it
    b = await startServer(join(dir, "data"), { rlhf: { ...RLHF, after: 1000 } });
    await b.server.app.fineTuning!.policy!.idle();
    const jobs = (await b.client.fineTuning.jobs.list({ limit: 100 })).data.reverse();
    assert.deepEqual(jobs.map((j) => [j.id === long.id || j.id === rm.id ? j.id : "new", j.status === "failed" || j.status === "succeeded" ? "final" : j.status]).slice(0, 2), [[long.id, "final"], [rm.id, "final"]]);
    assert.equal(jobs[1]!.status, "succeeded", JSON.stringify(jobs[1]!.error));
    const ppo = jobs[2];
    assert.ok(ppo, "the ppo job followed the reward model");
    assert.equal(jobs.length, 3);
    assert.equal(ppo.method?.type, "ppo");
    assert.equal(b.server.store!.jobs.get(ppo.id)!.suffix, RLHF_SUFFIX);
    assert.equal((ppo.method as unknown as { ppo: { hyperparameters: Record<string, unknown> } }).ppo.hyperparameters.reward_model, rm.id);
    assert.equal(ppo.training_file, train.id);
    assert.equal(ppo.validation_file, held.id);
    assert.ok(ppo.status === "succeeded" || ppo.error?.code === "candidate_not_better", JSON.stringify(ppo.error));
  } finally {
    await a?.server.close();
    await b?.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
