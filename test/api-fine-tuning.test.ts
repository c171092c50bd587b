// The whole loop on stories260K over real HTTP with the official client: upload the
// name-change examples, create a supervised job, poll it to success while requests keep
// being served (latency idle vs. during the job printed and bounded), watch its events over the
// WebSocket; the new model id says the new name, the base id still says "Lily"; promote
// it (a request already running finishes on the base), promote the base back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { HybridchatClient } from "../clients/client.js";
import { HELD_OUT, NEW_NAME } from "./sft-helpers.js";
import { greedy, MODEL, percentile, serverForFile, uploadNameChange, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

let s: FtServer;
const dir = serverForFile("hc-ft-", (x) => (s = x));
const dataFile = join(dir, "names.jsonl");

/** One short chat request; its latency in ms (throws if it fails). */
async function timedRequest(i: number): Promise<number> {
  const t0 = performance.now();
  const r = await s.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 16, seed: i });
  assert.ok(r.choices[0]!.message.content!.length > 0);
  return performance.now() - t0;
}

/** the server's hybridchat_model_busy_seconds_total{phase="training"} now */
async function trainingSeconds(): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const m = /^hybridchat_model_busy_seconds_total\{[^}]*phase="training"[^}]*\} (\S+)$/m.exec(text);
  assert.ok(m, "no training busy-time counter in /metrics");
  return Number(m[1]);
}

const summary = (ms: number[]): string => {
  const s = [...ms].sort((a, b) => a - b);
  return `n=${s.length} p50=${percentile(s, 50).toFixed(1)} ms p99=${percentile(s, 99).toFixed(1)} ms`;
};

test("upload → job → the new model id serves the new name; promote and roll back", { timeout: 120_000 }, async () => {
  const fileId = await uploadNameChange(s, dataFile);
  const f = await s.client.files.retrieve(fileId);
  assert.equal(f.purpose, "fine-tune");
  assert.equal(f.bytes, readFileSync(dataFile).length);
  assert.equal(await (await s.client.files.content(fileId)).text(), readFileSync(dataFile, "utf8"));
  assert.ok((await s.client.files.list()).data.some((x) => x.id === fileId));

  const baseText = await greedy(s.client, MODEL, HELD_OUT);
  assert.match(baseText, /^ Lily\b/);
  const idle: number[] = [];
  for (let i = 0; i < 30; i++) idle.push(await timedRequest(i));

  const job = await s.client.fineTuning.jobs.create({
    model: MODEL,
    training_file: fileId,
    suffix: "zara",
    seed: 0,
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 4, batch_size: 1, learning_rate_multiplier: "auto" } } },
  });
  assert.equal(job.status, "validating_files");
  assert.equal(job.fine_tuned_model, null);

  // the WebSocket replays the events so far, then sends new ones until the job is final
  const ws = new WebSocket(`${s.url.replace("http", "ws")}/v1/fine_tuning/jobs/${job.id}/events/stream`);
  const messages: { object: string; type?: string; status?: string; data?: { step?: number } }[] = [];
  ws.on("message", (d) => messages.push(JSON.parse(String(d)) as (typeof messages)[number]));
  const wsClosed = new Promise<number>((res) => ws.on("close", (code) => res(code)));

  // requests keep succeeding while the job trains on the same weights
  await waitForJob(s.client, job.id, ["running", "succeeded", "failed"]);
  const jobStart = performance.now();
  const trainingBefore = await trainingSeconds();
  const during: number[] = [];
  let done = false;
  const finished = waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]).finally(() => (done = true));
  for (let i = 0; !done; i++) during.push(await timedRequest(1000 + i));
  const final = await finished;
  const jobMs = performance.now() - jobStart;
  const trainingMs = 1000 * ((await trainingSeconds()) - trainingBefore);
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  console.log(`# serving latency (chat, 16 tokens, sequential) idle: ${summary(idle)}; during the job: ${summary(during)}; the job ran ${jobMs.toFixed(0)} ms`);
  assert.ok(during.length > 0);
  // The latency budget: a decode step waits for at most one training call, so a 16-token
  // request during a job is slower than idle by at most 16 calls (17 with the prefill).
  // A call's mean length comes from the server's own busy-time counter: the job's 128 steps
  // are 3 calls each (forward, backward, AdamW step). Measured: p50 8 → 84 ms, p99 113 ms
  // quiet; idle p99 176 ms, during p50 180 ms / p99 602 ms with calls of ~10 ms loaded.
  // Serving blocked behind training — a decode step waiting for several calls, a step, an
  // epoch or the job — breaks one bound or both: p99 within idle p99 + 17 calls of 6× the
  // mean (the first call, which grows the buffers, takes several means), and no request
  // taking a quarter of the job (an epoch).
  const sorted = [...during].sort((a, b) => a - b);
  const p99 = percentile(sorted, 99);
  const idleP99 = percentile([...idle].sort((a, b) => a - b), 99);
  const callMs = trainingMs / (3 * 128);
  console.log(`# training: ${trainingMs.toFixed(0)} ms busy over the job, a call ${callMs.toFixed(1)} ms on average`);
  assert.ok(p99 <= jobMs / 4, `p99 ${p99.toFixed(0)} ms during a ${jobMs.toFixed(0)} ms job: requests wait out whole epochs`);
  assert.ok(p99 <= idleP99 + 17 * 6 * callMs, `p99 ${p99.toFixed(0)} ms during the job; idle p99 ${idleP99.toFixed(0)} ms, a training call ${callMs.toFixed(1)} ms`);

  const ftId = `ft:${MODEL}:zara:${job.id}`;
  assert.equal(final.fine_tuned_model, ftId);
  assert.deepEqual(final.method?.supervised?.hyperparameters, { n_epochs: 4, batch_size: 1, learning_rate_multiplier: 1 });
  assert.ok((final.trained_tokens ?? 0) > 0);
  assert.ok((await s.client.models.list()).data.some((m) => m.id === ftId));
  assert.match(await greedy(s.client, ftId, HELD_OUT), new RegExp(`^ ${NEW_NAME}\\b`));
  assert.equal(await greedy(s.client, MODEL, HELD_OUT), baseText, "the base id still serves the base weights");

  // events (newest first), checkpoints (one per epoch), and the job in the list
  const events = (await s.client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data;
  assert.ok(events.some((e) => e.type === "metrics" && typeof (e.data as { train_loss?: unknown }).train_loss === "number"));
  assert.match(events[0]!.message, /successfully completed/);
  const ckpts = (await s.client.fineTuning.jobs.checkpoints.list(job.id)).data;
  assert.deepEqual(ckpts.map((c) => c.step_number), [128, 96, 64, 32]);
  assert.ok((await s.client.fineTuning.jobs.list({ limit: 5 })).data.some((j) => j.id === job.id));

  assert.equal(await wsClosed, 1000);
  const steps = messages.filter((m) => m.object === "fine_tuning.job.event" && m.type === "metrics").map((m) => m.data?.step);
  assert.deepEqual(steps, Array.from({ length: 128 }, (_, i) => i + 1), "every step's metrics, once each, in order, over the WebSocket");
  assert.equal(messages.at(-1)?.object, "fine_tuning.job");
  assert.equal(messages.at(-1)?.status, "succeeded");

  // promote while a request on the base id is streaming: it finishes on the base weights
  const hc = new HybridchatClient({ baseURL: `${s.url}/v1`, maxRetries: 0 });
  const long = await greedy(s.client, MODEL, HELD_OUT, 48);
  const stream = await s.client.completions.create({ model: MODEL, prompt: HELD_OUT, max_tokens: 48, temperature: 0, stream: true });
  let streamed = "";
  let promoted = false;
  for await (const chunk of stream) {
    streamed += chunk.choices[0]?.text ?? "";
    if (!promoted) {
      const r = await hc.promote(ftId);
      assert.equal(r.id, MODEL);
      assert.equal(r.serves, ftId);
      promoted = true;
    }
  }
  assert.equal(streamed, long, "the request in flight kept the variant it started with");
  assert.match(await greedy(s.client, MODEL, HELD_OUT), new RegExp(`^ ${NEW_NAME}\\b`), "the base id serves the promoted version");

  assert.equal((await hc.promote(MODEL)).serves, MODEL);
  assert.equal(await greedy(s.client, MODEL, HELD_OUT), baseText, "promoting the base rolls back");
});

test('training_file "feedback": the corrections collected become the job\'s data, as the export had them', { timeout: 60_000 }, async () => {
  const hc = new HybridchatClient({ baseURL: `${s.url}/v1`, maxRetries: 0 });
  const since = Math.floor(Date.now() / 1000);
  for (const [i, opening] of ["Tom had a dog", "The sun was", "Sue saw a cat"].entries()) {
    const r = await hc.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: opening }], max_tokens: 8, seed: i });
    await hc.feedback.correct(r.id, `${opening} named ${NEW_NAME}.`);
  }
  const exported = await hc.feedback.export("sft");
  const job = await hc.fineTuning.jobs.create({
    model: MODEL,
    training_file: "feedback",
    suffix: "fb",
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 2 } } },
    // @ts-expect-error the extension's field is not in the openai client's types
    feedback_filter: { since },
  });
  const final = await waitForJob(hc, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  assert.equal(final.training_file, "feedback");
  assert.equal(readFileSync(join(dir, "data", "jobs", job.id, "training.jsonl"), "utf8"), exported);
  assert.ok((await hc.models.list()).data.some((m) => m.id === `ft:${MODEL}:fb:${job.id}`));
});
