// Continuous RLHF over real HTTP on stories260K. A server with `rlhf: {after: 40, promote}`
// collects preferences (chat n: 2, the animal preference of test/loop-helpers.ts; half held
// out, so the gate sees ~20 pairs: with ~10 its lower bound sat near 0 and failed ~1 run in 10); the
// policy fires by itself, leaves a visible job and two files (train / held-out), the gate's
// verdict as a job event, and the base id serving the promoted candidate. Restarted with a
// time trigger and a learning rate too small to learn anything, the next candidate is worse
// than the promoted version on the held-out pairs: its job fails with the gate's reason,
// it is neither published nor promoted, and serving goes on. A run in progress blocks
// another; with nothing new, nothing fires.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DpoLine } from "../engine/train/data/training-format.js";
import { isHeldOut, RLHF_SUFFIX } from "../server/rlhf/policy.js";
import { rlhfConfig } from "../cli/serve-rlhf-flags.js";
import { STORY_PROMPTS } from "./pref-helpers.js";
import { chats, preferAnimals } from "./loop-helpers.js";
import { MODEL, startServer, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

const dir = mkdtempSync(join(tmpdir(), "hc-rlhf-"));
const data = join(dir, "data");
let s: FtServer | undefined;
after(async () => {
  await s?.server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function rlhfJobs(f: FtServer) {
  return (await f.client.fineTuning.jobs.list({ limit: 100 })).data.filter((j) => f.server.store!.jobs.get(j.id)?.suffix === RLHF_SUFFIX);
}

test("the split is by content: deterministic, about the share asked, the same pair always on one side", () => {
  const line = (i: number, chosen = `A dog ran ${i}.`): DpoLine => ({
    input: { messages: [{ role: "user", content: `story ${i % 7}` }] },
    preferred_output: [{ role: "assistant", content: chosen }],
    non_preferred_output: [{ role: "assistant", content: "It was dark." }],
  });
  const lines = Array.from({ length: 2000 }, (_, i) => line(i));
  const held = lines.filter((l) => isHeldOut(l, 0.2)).length;
  assert.ok(held > 320 && held < 480, `${held} of 2000 held out`);
  // a copy built afresh (another feedback row with the same texts) lands where the first did
  assert.deepEqual(lines.map((l) => isHeldOut(l, 0.2)), lines.map((_, i) => isHeldOut(line(i), 0.2)));
  const sides = new Set(Array.from({ length: 64 }, (_, i) => isHeldOut(line(0, `A cat sat ${i}.`), 0.5)));
  assert.equal(sides.size, 2, "the answers are part of the key, not only the prompt");
});

test("serve's --rlhf-* flags: off by default, checked, and the config the policy takes", () => {
  assert.equal(rlhfConfig({}, "serve"), null);
  assert.deepEqual(rlhfConfig({ "rlhf-after": "50", "rlhf-promote": true }, "serve"), { after: 50, everyMinutes: null, method: "dpo", promote: true });
  assert.deepEqual(rlhfConfig({ "rlhf-every": "0.5", "rlhf-method": "dpo" }, "serve"), { after: null, everyMinutes: 0.5, method: "dpo", promote: false });
  assert.throws(() => rlhfConfig({ "rlhf-after": "0" }, "serve"), /--rlhf-after must be between 1/);
  assert.throws(() => rlhfConfig({ "rlhf-every": "0" }, "serve"), /--rlhf-every/);
  assert.deepEqual(rlhfConfig({ "rlhf-after": "5", "rlhf-method": "ppo" }, "serve"), { after: 5, everyMinutes: null, method: "ppo", promote: false });
  assert.throws(() => rlhfConfig({ "rlhf-after": "5", "rlhf-method": "sft" }, "serve"), /--rlhf-method must be one of dpo, ppo/);
  assert.throws(() => rlhfConfig({ "rlhf-promote": true }, "serve"), /need --rlhf-after N or --rlhf-every MINUTES/);
});

test("after N preferences the policy trains, gates, publishes and promotes; a worse candidate is not published", { timeout: 150_000 }, async (t) => {
  // checked by hand, not on a timer, so the run trains on every pair below whatever the machine's
  // speed (a poll between two POSTs would cut the set at a different place each time, and the
  // gate's verdict with it); the timer itself is rlhf-policy-ppo's. The doubled learning rate puts
  // the gate's lower bound well clear of 0 (0.11, not 0.05), so other CPUs' kernels cannot tip it.
  s = await startServer(data, { rlhf: { after: 40, everyMinutes: null, method: "dpo", promote: true, pollMs: 1e9, heldOut: 0.5, hyperparameters: { learning_rate_multiplier: 2 } } });
  const policy = s.server.app.fineTuning!.policy!;
  assert.equal(await policy.check(), null, "nothing fires before any preference");
  const pairs = await preferAnimals(s.url, await chats(s.client, MODEL, STORY_PROMPTS, 16, 2, 1));
  assert.ok(pairs >= 40, `${pairs} pairs`);
  const fired = await policy.check();
  assert.ok(fired, `${pairs} preferences ≥ --rlhf-after 40`);
  assert.equal(await policy.check(), null, "one run at a time");
  await policy.idle();
  const [job, ...more] = await rlhfJobs(s);
  assert.equal(job?.id, fired.id, "the policy created a job");
  assert.equal(more.length, 0);
  assert.equal(job.status, "succeeded", JSON.stringify(job.error));
  assert.equal(job.method?.type, "dpo");
  const files = (await s.client.files.list()).data;
  const train = files.find((f) => f.id === job.training_file)!;
  const held = files.find((f) => f.id === job.validation_file)!;
  assert.match(train.filename, /^rlhf-\d+\.train\.jsonl$/);
  assert.match(held.filename, /^rlhf-\d+\.heldout\.jsonl$/);
  assert.equal(job.seed, Number(/^rlhf-(\d+)\./.exec(train.filename)![1]), "seeded by how far the run read: reproducible");
  const events = (await s.client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data.map((e) => e.message);
  const verdict = events.find((m) => m.startsWith("Held-out evaluation"));
  assert.ok(verdict, events.join("\n"));
  assert.match(verdict, new RegExp(`served ${MODEL} margin/token .*lower bound (\\d+\\.\\d+): better, publishing`));
  t.diagnostic(verdict);
  const good = job.fine_tuned_model!;
  assert.equal(s.server.store!.versions.promoted(MODEL), good);
  assert.ok((await s.client.models.list()).data.some((m) => m.id === good));
  await s.server.close();

  // restarted: a time trigger, a candidate that cannot learn; checks by hand (no polling)
  s = await startServer(data, {
    rlhf: { after: null, everyMinutes: 0.0001, method: "dpo", promote: true, pollMs: 1e9, heldOut: 0.3, hyperparameters: { n_epochs: 1, learning_rate_multiplier: 0.001 } },
  });
  const p2 = s.server.app.fineTuning!.policy!;
  // a choice between two served answers (free text does not train by default: --rlhf-sources)
  const two = await s.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Mia had a red ball." }], n: 2, max_tokens: 8, temperature: 1, seed: 5 });
  const r = await fetch(`${s.url}/v1/feedback`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ completion_id: two.id, chosen_index: 0, rejected_index: 1 }) });
  assert.equal(r.status, 200);
  const worse = await p2.check();
  assert.ok(worse, "a preference came and the period has passed");
  assert.equal(await p2.check(), null, "never two runs at once");
  await p2.idle();
  assert.equal(await p2.check(), null, "nothing new since the last run: nothing fires, whatever the period");
  const failed = await waitForJob(s.client, worse.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(failed.status, "failed");
  assert.equal(failed.error?.code, "candidate_not_better");
  assert.match(failed.error!.message, new RegExp(`served ${good.replace(/[.:]/g, "\\$&")} margin/token .*: not shown better, not published`));
  t.diagnostic(failed.error!.message);
  assert.equal(failed.fine_tuned_model, null);
  assert.ok(!(await s.client.models.list()).data.some((m) => m.id.endsWith(worse.id)));
  assert.equal(s.server.store!.versions.promoted(MODEL), good, "the promoted version stays");
  const c = await s.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8 });
  assert.ok(c.choices[0]!.message.content!.length > 0, "serving goes on");
});
