// Issue 16 item 11 (part): published versions can be deleted (DELETE /v1/models/{id}, as
// OpenAI deletes fine-tuned models) — not while promoted, never the base — and a deleted
// version leaves the served list, the database, the disk and the native model.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { MODEL, serverForFile, uploadNameChange, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

let s: FtServer;
const dir = serverForFile("hc-delete-model-", (x) => (s = x));

async function del(id: string): Promise<{ status: number; body: any }> {
  const r = await fetch(`${s.url}/v1/models/${id}`, { method: "DELETE" });
  return { status: r.status, body: await r.json() };
}

test("a published version is deleted; a promoted one and the base are not", { timeout: 120_000 }, async () => {
  const fileId = await uploadNameChange(s, join(dir, "names.jsonl"));
  const job = await s.client.fineTuning.jobs.create({
    model: MODEL,
    training_file: fileId,
    suffix: "gone",
    seed: 0,
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 1, batch_size: 1 } } },
  });
  const done = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  const id = done.fine_tuned_model!;
  // the job's metric series went with it (its steps are in its events)
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  assert.ok(!metrics.includes(job.id), "no series of an ended job");
  const version = s.server.store!.versions.get(id)!;
  assert.ok(existsSync(version.dir));

  const base = await del(MODEL);
  assert.equal(base.status, 400);
  assert.equal(base.body.error.code, "model_not_deletable");

  assert.equal((await fetch(`${s.url}/v1/models/${id}/promote`, { method: "POST" })).status, 200);
  const promoted = await del(id);
  assert.equal(promoted.status, 409);
  assert.equal(promoted.body.error.code, "model_promoted");
  assert.equal((await fetch(`${s.url}/v1/models/${MODEL}/promote`, { method: "POST" })).status, 200);

  const gone = await del(id);
  assert.equal(gone.status, 200, JSON.stringify(gone.body));
  assert.deepEqual(gone.body, { id, object: "model", deleted: true });
  assert.ok(!(await s.client.models.list()).data.some((m) => m.id === id));
  assert.equal(s.server.store!.versions.get(id), null);
  assert.ok(!existsSync(version.dir), "its directory is removed");
  // the native adapter is gone: the name can be added again
  s.server.model!.native.addAdapter(id, { lora: { rank: 2, alpha: 4, dropout: 0, targets: ["q"], seed: 1 }, valueHead: false });
  s.server.model!.native.removeAdapter(id);
  assert.equal((await del(id)).status, 404, "deleting twice: unknown model");
  const chat = await s.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 4 });
  assert.ok(chat.choices[0]!.message.content!.length > 0, "serving goes on");
});
