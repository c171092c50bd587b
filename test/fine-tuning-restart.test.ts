// Restart: `hybridchat serve` in a child process publishes a version (and promotes it),
// then is SIGKILLed while a DPO job on the collected feedback runs and chats and feedback
// keep arriving. After a restart on the same data dir the killed job is failed with the
// reason, every completion and piece of feedback answered before the kill is there, and the
// published version is served again under its id, still promoted. A job running at a
// graceful shutdown (SIGTERM) is failed too.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { loadModel } from "../engine/model.js";
import { testModelDir } from "./api-helpers.js";
import { greedy, MODEL, waitForJob } from "./fine-tuning-helpers.js";
import { serve, stop, type Served } from "./serve-process.js";
import { HELD_OUT, NEW_NAME, nameChangeData } from "./sft-helpers.js";
import { getJson, postJson } from "./store-helpers.js";
import type { FeedbackBody } from "../server/http/schemas/store-responses.js";

const dir = mkdtempSync(join(tmpdir(), "hc-ft-restart-"));
const dataDir = join(dir, "data");
const children: Served[] = [];
after(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) await stop(c, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<{ s: Served; client: OpenAI }> {
  // the job's data are text preferences, which do not train by default
  const s = await serve(["--model", testModelDir, "--data-dir", dataDir, "--rlhf-sources", "rating,pairwise,text"]);
  children.push(s);
  return { s, client: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused", maxRetries: 0 }) };
}

test("a job running at SIGKILL is failed after restart; published versions are served again", { timeout: 120_000 }, async () => {
  const data = join(dir, "names.jsonl");
  const m = await loadModel(testModelDir, { threads: 2, kvBlocks: 8 });
  try {
    await nameChangeData(m, data);
  } finally {
    m.dispose();
  }
  const first = await start();
  const file = await first.client.files.create({ file: createReadStream(data), purpose: "fine-tune" });
  const a = await first.client.fineTuning.jobs.create({ model: MODEL, training_file: file.id, suffix: "zara", seed: 0, method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 4, batch_size: 1 } } } });
  const done = await waitForJob(first.client, a.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  const ftId = done.fine_tuned_model!;
  assert.equal((await fetch(`${first.s.url}/v1/models/${encodeURIComponent(ftId)}/promote`, { method: "POST" })).status, 200);

  const feedbackIds: string[] = [];
  const completions: OpenAI.ChatCompletion[] = [];
  const feedback = async (body: object): Promise<void> => {
    const r = await postJson<FeedbackBody>(first.s.url, "/v1/feedback", body);
    assert.equal(r.status, 200);
    feedbackIds.push(r.json.id);
  };
  for (const [chosen, rejected] of [[" A dog ran.", " It was late."], [" The cat sat.", " The sun set."], [" A bird sang.", " He went in."]])
    await feedback({ prompt: "Once upon a time", chosen, rejected });
  const b = await first.client.fineTuning.jobs.create({ model: MODEL, training_file: "feedback", method: { type: "dpo", dpo: { hyperparameters: { n_epochs: 256, batch_size: 1 } } } });
  await waitForJob(first.client, b.id, ["running"]);
  // chats and feedback while it takes steps on the serving weights, then the kill
  for (let i = 0; ; i++) {
    const c = await first.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8, seed: i, n: 2 });
    completions.push(c);
    await feedback(i % 2 ? { completion_id: c.id, rating: 1 } : { completion_id: c.id, chosen_index: 1, rejected_index: 0 });
    const ev = await first.client.fineTuning.jobs.listEvents(b.id, { limit: 100 });
    if (i >= 3 && ev.data.some((e) => e.type === "metrics")) break;
  }
  assert.equal(await stop(first.s, "SIGKILL"), null);

  const second = await start();
  const killed = await second.client.fineTuning.jobs.retrieve(b.id);
  assert.equal(killed.status, "failed");
  assert.equal(killed.error?.code, "server_restarted");
  assert.match(killed.error!.message, /restarted while this job was running/);
  assert.ok(killed.finished_at !== null);
  // the killed job's data copy and checkpoints are removed at start-up; the succeeded one's stay
  for (let i = 0; i < 100 && existsSync(join(dataDir, "jobs", b.id)); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(!existsSync(join(dataDir, "jobs", b.id)), "the failed job's directory was removed");
  assert.deepEqual((await second.client.fineTuning.jobs.checkpoints.list(b.id)).data, []);
  assert.ok(existsSync(join(dataDir, "jobs", a.id)));
  assert.equal((await second.client.fineTuning.jobs.retrieve(a.id)).status, "succeeded");
  for (const c of completions) assert.deepEqual(await second.client.chat.completions.retrieve(c.id), c);
  const stored = await getJson<{ data: { id: string }[] }>(second.s.url, "/v1/feedback?limit=100");
  assert.deepEqual(stored.json.data.map((f) => f.id).sort(), [...feedbackIds].sort(), "every piece of feedback answered before the kill");

  assert.ok((await second.client.models.list()).data.some((x) => x.id === ftId));
  assert.match(await greedy(second.client, ftId, HELD_OUT), new RegExp(`^ ${NEW_NAME}\\b`));
  assert.match(await greedy(second.client, MODEL, HELD_OUT), new RegExp(`^ ${NEW_NAME}\\b`), "the promotion survived the restart");

  // a job running at a graceful shutdown is failed with that reason
  const c = await second.client.fineTuning.jobs.create({ model: MODEL, training_file: file.id, method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 25 } } } });
  await waitForJob(second.client, c.id, ["running"]);
  assert.equal(await stop(second.s, "SIGTERM"), 0);
  const third = await start();
  const stopped = await third.client.fineTuning.jobs.retrieve(c.id);
  assert.equal(stopped.status, "failed");
  assert.equal(stopped.error?.code, "server_shutdown");
  assert.equal(await stop(third.s, "SIGTERM"), 0);
});
