// method.type "ppo" over real HTTP with the official client on stories260K: preferences on
// the model's own chats (an animal mentioned, test/loop-helpers.ts) → a reward_model job →
// a ppo job against it on the prompts of the same feedback, trained on the serving weights
// while chat requests keep being answered → the published ft: id serves and mentions animals
// on held-out prompts clearly more often than the base, and the reward model scores those
// answers clearly higher (both by margins sized from the sampling noise); its events carry reward, KL and the
// losses per step, the job gauges follow them. A reward_model reference that is unknown, not
// a reward model or not succeeded is a 400 naming the param; a cancelled ppo job stops,
// publishes nothing and leaves no role adapter behind. A file of {"prompt"} lines uploads as
// prompts, which ppo trains on and supervised refuses.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { APIError, BadRequestError, toFile } from "openai";
import { HELD_OUT_PROMPTS, STORY_PROMPTS } from "./pref-helpers.js";
import { animalRate, chats, preferAnimals } from "./loop-helpers.js";
import { MODEL, serverForFile, waitForJob, type FtServer } from "./fine-tuning-helpers.js";
import { mean, trendT, welch } from "./stats.js";
import { loadPeftAdapter } from "../engine/peft.js";
import { scoreSequences } from "../engine/train/preference/rm.js";
import { waitFor } from "./api-helpers.js";

let s: FtServer;
// a queue that a burst of users fills exactly (the chats() helper sends 16 × n 4 at most)
const MAX_QUEUE = 64;
const dir = serverForFile("hc-ppo-job-", (x) => (s = x), { maxQueue: MAX_QUEUE });

const PPO: Record<string, number> & { n_epochs: number } = { n_epochs: 4, batch_size: 16, max_new_tokens: 32, learning_rate_multiplier: 10 };
let rmJob = "";

function ppoJob(hyperparameters: Record<string, unknown>, suffix = "ppo") {
  return s.client.fineTuning.jobs.create({ model: MODEL, training_file: "feedback", suffix, seed: 3, method: { type: "ppo", ppo: { hyperparameters } } as never });
}

async function badRequest(hyperparameters: Record<string, unknown>): Promise<APIError> {
  const e = await ppoJob(hyperparameters).then(
    () => assert.fail("accepted"),
    (x: unknown) => x,
  );
  assert.ok(e instanceof BadRequestError, String(e));
  return e;
}

test("a ppo job names its reward model: missing, unknown or not a reward model → 400 naming the param", async () => {
  let e = await badRequest({ n_epochs: 1 });
  assert.equal(e.param, "method.ppo.hyperparameters");
  assert.match(e.message, /reward_model/);
  e = await badRequest({ reward_model: "ftjob-nope" });
  assert.equal(e.param, "method.ppo.hyperparameters.reward_model");
  assert.equal(e.code, "invalid_reference");
  assert.match(e.message, /ftjob-nope/);
  e = await badRequest({ reward_model: "ft:stories260K:x:ftjob-nope:ckpt-step-3" });
  assert.equal(e.param, "method.ppo.hyperparameters.reward_model");
  e = await badRequest({ reward_model: 3 });
  assert.equal(e.param, "method.ppo.hyperparameters");
  assert.equal((await s.client.fineTuning.jobs.list()).data.length, 0, "nothing was stored");
});

test("preferences → reward_model job → ppo job on the serving weights → the new id serves the preferred behaviour", { timeout: 240_000 }, async (t) => {
  const t0 = performance.now();
  const pairs = await preferAnimals(s.url, await chats(s.client, MODEL, STORY_PROMPTS, 36, 2, 1));
  assert.ok(pairs >= 40, `${pairs} preference pairs`);
  const rm = await s.client.fineTuning.jobs.create({ model: MODEL, training_file: "feedback", seed: 1, method: { type: "reward_model", reward_model: { hyperparameters: { n_epochs: 8, batch_size: 8 } } } as never });
  // a reward model that has not succeeded yet is refused by name
  const early = await badRequest({ reward_model: rm.id });
  assert.equal(early.param, "method.ppo.hyperparameters.reward_model");
  assert.match(early.message, new RegExp(`${rm.id}, which is (validating_files|queued|running)`));
  const rmDone = await waitForJob(s.client, rm.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(rmDone.status, "succeeded", JSON.stringify(rmDone.error));
  rmJob = rm.id;
  const t1 = performance.now();

  const job = await ppoJob({ ...PPO, reward_model: rm.id });
  assert.equal(job.method?.type, "ppo");
  // serving during the job: chat requests on the base keep succeeding
  let served = 0;
  let failed = 0;
  const load = (async () => {
    for (let i = 0; ; i++) {
      const j = await s.client.fineTuning.jobs.retrieve(job.id);
      if (j.status !== "running" && j.status !== "queued" && j.status !== "validating_files") return;
      await s.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: STORY_PROMPTS[i % STORY_PROMPTS.length]! }], max_tokens: 16, seed: i }).then(
        () => served++,
        () => failed++,
      );
    }
  })();
  const done = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
  await load;
  const t2 = performance.now();
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  assert.equal(failed, 0);
  assert.ok(served >= 5, `${served} requests answered during the job`);
  assert.equal(done.fine_tuned_model, `ft:${MODEL}:ppo:${job.id}`);
  const hp = (done.method as unknown as { ppo: { hyperparameters: Record<string, unknown> } }).ppo.hyperparameters;
  assert.equal(hp.reward_model, rm.id);
  assert.equal(hp.kl_ctl, 0.1, "auto resolved to DeepSpeed-Chat's default");
  assert.ok((await s.client.models.list()).data.some((m) => m.id === done.fine_tuned_model));

  // events: one metrics event per PPO step with reward, KL and both losses
  const events = (await s.client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data.reverse();
  const steps = events.filter((e) => e.type === "metrics").map((e) => e.data as Record<string, number>);
  const total = steps[0]!.total_steps!;
  assert.equal(steps.length, total);
  assert.deepEqual(steps.map((m) => m.step), Array.from({ length: total }, (_, i) => i + 1));
  for (const m of steps) for (const k of ["reward", "kl", "policy_loss", "value_loss", "entropy", "response_length"]) assert.ok(Number.isFinite(m[k]), `${k} = ${m[k]}`);
  // the step means of 16 sampled answers scatter by ~0.5 around their rise (measured: slope
  // 0.011/step, 1.3 standard errors over 36 steps), too noisy to show it; the reward
  // comparison with a margin is on held-out samples below
  const rewards = steps.map((m) => m.reward!);
  // checkpoints: one per epoch, the actor adapter
  const ckpts = await s.client.fineTuning.jobs.checkpoints.list(job.id);
  assert.equal(ckpts.data.length, PPO.n_epochs);
  assert.equal(ckpts.data[0]!.step_number, total);
  // the job's gauges live while it runs (test/api-metrics.test.ts reads them mid-job) and are
  // dropped once it ends, so finished jobs do not pile up series (issue 16 item 11)
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  assert.doesNotMatch(metrics, new RegExp(`hybridchat_fine_tuning_job_\\w+\\{job_id="${job.id}"`));

  // 32 requests × n 4 per held-out prompt: 512 samples per model, the same seeds for both
  const c0 = await chats(s.client, MODEL, HELD_OUT_PROMPTS, 32, 4, 7);
  const c1 = await chats(s.client, done.fine_tuned_model!, HELD_OUT_PROMPTS, 32, 4, 7);
  const [p0, p1] = [animalRate(c0), animalRate(c1)];
  // the reward model's own verdict on those held-out answers: its newest checkpoint loaded
  // beside the served weights (as one exclusive task: nothing else runs), one score per answer,
  // so the noise is the spread of the scores themselves
  const lm = s.server.model!;
  const rmDirs = readdirSync(join(dir, "data", "jobs", rm.id)).filter((d) => d.startsWith("checkpoint-"));
  const rmDir = join(dir, "data", "jobs", rm.id, rmDirs.sort((a, b) => Number(a.slice(11)) - Number(b.slice(11))).at(-1)!);
  // chats() asks 32 requests per prompt, in prompt order
  const sequences = (cs: typeof c0) => cs.flatMap((c, i) => c.choices.map((x) => Int32Array.from(lm.tokenizer.encode(HELD_OUT_PROMPTS[Math.floor(i / 32)]! + (x.message.content ?? ""), true))));
  const [s0, s1] = await s.server.engine!.runExclusive(async () => {
    await loadPeftAdapter(lm.native, lm.config, "rm-eval", rmDir);
    try {
      return [[...(await scoreSequences(lm.native, "rm-eval", sequences(c0)))], [...(await scoreSequences(lm.native, "rm-eval", sequences(c1)))]];
    } finally {
      lm.native.removeAdapter("rm-eval");
    }
  });
  const zr = welch(s0, s1);
  t.diagnostic(
    `${pairs} pairs; feedback+rm ${((t1 - t0) / 1000).toFixed(0)} s, ppo job ${((t2 - t1) / 1000).toFixed(0)} s (${total} steps, ${served} requests served meanwhile); ` +
      `reward per step ${rewards.map((r) => r.toFixed(2)).join(" ")} (slope ${trendT(rewards).slope.toFixed(3)}, ${trendT(rewards).t.toFixed(1)} SE); held-out score base ${mean(s0).toFixed(3)} → ppo ${mean(s1).toFixed(3)} (${zr.toFixed(1)} SE); animal rate base ${p0} → ppo ${p1}`,
  );
  assert.ok(zr > 4, `held-out reward-model score base ${mean(s0)} → ppo ${mean(s1)}: ${zr.toFixed(2)} standard errors`);
  // under "no change" the difference of two rates of 512 samples near 0.2 has sd ≈ 0.025: a rise of 0.15 is 6 sd
  assert.ok(p0 < 0.4, `base rate ${p0}`);
  assert.ok(p1 >= p0 + 0.15, `rate base ${p0} → ppo ${p1}`);
});

test("during a ppo job's rollouts a burst of users at --max-queue gets no 429 and the job still succeeds", { timeout: 120_000 }, async (t) => {
  assert.ok(rmJob, "needs the reward model of the previous test");
  const engine = s.server.engine!;
  const job = await ppoJob({ ...PPO, n_epochs: 1, reward_model: rmJob }, "burst");
  // rollouts waiting (batch_size 16 over max-batch 8) while no user request is in: the rollout phase
  await waitFor(() => engine.stats().waiting > 0, "the job's rollouts queued", 60_000);
  const queuedRollouts = engine.stats().waiting;
  const t0 = performance.now();
  const burst = await Promise.all(
    Array.from({ length: MAX_QUEUE }, (_, i) =>
      s.server.app.inject({ method: "POST", url: "/v1/chat/completions", payload: { model: MODEL, messages: [{ role: "user", content: STORY_PROMPTS[i % STORY_PROMPTS.length]! }], max_tokens: 4, seed: i } }),
    ),
  );
  const wall = performance.now() - t0;
  assert.deepEqual(
    burst.map((r) => r.statusCode),
    burst.map(() => 200),
    burst.find((r) => r.statusCode !== 200)?.body,
  );
  const done = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  t.diagnostic(`${queuedRollouts} rollouts waiting when ${MAX_QUEUE} user chats arrived; all answered in ${wall.toFixed(0)} ms`);
});

test("a cancelled ppo job stops, publishes nothing and removes its role adapters", { timeout: 120_000 }, async () => {
  assert.ok(rmJob, "needs the reward model of the previous test");
  const before = s.server.model!.native.adapters();
  const job = await ppoJob({ ...PPO, n_epochs: 50, reward_model: rmJob }, "cancelme");
  for (;;) {
    const ev = (await s.client.fineTuning.jobs.listEvents(job.id, { limit: 50 })).data;
    if (ev.some((e) => e.type === "metrics")) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const c = await s.client.fineTuning.jobs.cancel(job.id);
  assert.equal(c.status, "cancelled");
  await s.server.app.fineTuning!.runner!.idle();
  const after = await s.client.fineTuning.jobs.retrieve(job.id);
  assert.equal(after.status, "cancelled");
  assert.equal(after.fine_tuned_model, null);
  assert.ok(!(await s.client.models.list()).data.some((m) => m.id.endsWith(job.id)));
  assert.deepEqual(s.server.model!.native.adapters(), before, "the actor, critic and reward adapters are gone");
  // serving goes on
  const r = await s.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 4 });
  assert.ok(r.choices[0]!.message.content !== undefined);
});

test("a file of prompt lines uploads as prompts: a ppo job trains on it, a supervised job refuses it", { timeout: 120_000 }, async () => {
  assert.ok(rmJob, "needs the reward model of the earlier test");
  const text = ["Once upon a time", "Tom had a pet", "One day, a little girl"].map((prompt) => JSON.stringify({ prompt })).join("\n") + "\n";
  const file = await s.client.files.create({ file: await toFile(Buffer.from(text), "prompts.jsonl"), purpose: "fine-tune" });
  assert.equal(s.server.store!.files.get(file.id)!.format, "prompts");
  const bad = await s.client.fineTuning.jobs.create({ model: MODEL, training_file: file.id }).then(
    () => assert.fail("accepted"),
    (x: unknown) => x,
  );
  assert.ok(bad instanceof BadRequestError && bad.param === "training_file" && /holds prompt lines; method 'supervised' trains on supervised lines/.test(bad.message), String(bad));
  const job = await s.client.fineTuning.jobs.create({
    model: MODEL,
    training_file: file.id,
    suffix: "prompts",
    method: { type: "ppo", ppo: { hyperparameters: { reward_model: rmJob, batch_size: 3, max_new_tokens: 8 } } } as never,
  });
  const done = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  const events = (await s.client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data.map((e) => e.message);
  assert.ok(events.some((m) => m.startsWith("PPO on 3 prompts")), events.join("\n"));
  const bad2 = await s.client.files.create({ file: await toFile(Buffer.from('{"prompt":"a"}\n{"prompt":7}\n'), "bad.jsonl"), purpose: "fine-tune" }).then(
    () => assert.fail("accepted"),
    (x: unknown) => x,
  );
  assert.ok(bad2 instanceof BadRequestError && /line 2/.test(bad2.message), String(bad2));
});
