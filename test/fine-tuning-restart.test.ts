// Restart: `hybridchat serve` in a child process publishes a version (and promotes it),
// then is SIGKILLed while a second job runs. After a restart on the same data dir the
// killed job is failed with the reason, and the published version is served again under
// its id, still promoted. A job running at a graceful shutdown (SIGTERM) is failed too.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import OpenAI from "openai";
import { loadModel } from "../engine/model.js";
import { testModelDir } from "./api-helpers.js";
import { greedy, MODEL, waitForJob } from "./fine-tuning-helpers.js";
import { serve, stop, type Served } from "./serve-process.js";
import { HELD_OUT, NEW_NAME, nameChangeData } from "./sft-helpers.js";

const dir = mkdtempSync(join(tmpdir(), "hc-ft-restart-"));
const dataDir = join(dir, "data");
const children: Served[] = [];
after(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) await stop(c, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<{ s: Served; client: OpenAI }> {
  const s = await serve(["--model", testModelDir, "--data-dir", dataDir]);
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

  const b = await first.client.fineTuning.jobs.create({ model: MODEL, training_file: file.id, method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 25 } } } });
  await waitForJob(first.client, b.id, ["running"]);
  // let it take a few steps on the serving weights before the kill
  for (;;) {
    const ev = await first.client.fineTuning.jobs.listEvents(b.id, { limit: 100 });
    if (ev.data.some((e) => e.type === "metrics")) break;
    await sleep(20);
  }
  assert.equal(await stop(first.s, "SIGKILL"), null);

  const second = await start();
  const killed = await second.client.fineTuning.jobs.retrieve(b.id);
  assert.equal(killed.status, "failed");
  assert.equal(killed.error?.code, "server_restarted");
  assert.match(killed.error!.message, /restarted while this job was running/);
  assert.ok(killed.finished_at !== null);
  assert.equal((await second.client.fineTuning.jobs.retrieve(a.id)).status, "succeeded");

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
