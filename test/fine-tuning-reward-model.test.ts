// method.type "reward_model" over HTTP: a reward model trained on the collected preferences
// is no served version; its last checkpoint (PEFT + value_head.safetensors), loaded on a
// fresh model, ranks every chosen answer it was trained on above the rejected one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../engine/model.js";
import { loadPeftAdapter, VALUE_HEAD_WEIGHTS } from "../engine/peft.js";
import { evaluatePairs } from "../engine/train/preference/rm.js";
import { encodeJobPairs } from "../server/fine-tuning/methods/pairs.js";
import { testModelDir } from "./api-helpers.js";
import { MODEL, serverForFile, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

let s: FtServer;
// the pairs are text preferences, which do not train by default (--rlhf-sources)
serverForFile("hc-rm-job-", (x) => (s = x), { trainingSources: ["rating", "pairwise", "text"] });

const PAIRS = [
  [" The dog ran to the park.", " It was late and dark."],
  [" A cat sat on the mat.", " The sun set over the hill."],
  [" The bird sang a song.", " He went inside the house."],
  [" A little fish swam fast.", " She did not like it."],
  [" The bunny hopped away.", " They all went to bed."],
  [" A big bear was happy.", " The box was very heavy."],
];

test("a reward_model job keeps its result as a checkpoint that ranks the preferred answers first", { timeout: 120_000 }, async () => {
  for (const [chosen, rejected] of PAIRS) {
    const r = await fetch(`${s.url}/v1/feedback`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Once upon a time", chosen, rejected }) });
    assert.equal(r.status, 200);
  }
  const job = await s.client.fineTuning.jobs.create({
    model: MODEL,
    training_file: "feedback",
    method: { type: "reward_model", reward_model: { hyperparameters: { n_epochs: 6, batch_size: 2 } } } as never,
  });
  const done = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  assert.equal(done.fine_tuned_model, null, "a reward model is not a chat model to serve");
  assert.ok(!(await s.client.models.list()).data.some((m) => m.id.endsWith(job.id)));
  const ckpts = await s.client.fineTuning.jobs.checkpoints.list(job.id);
  assert.equal(ckpts.data.length, 6);
  assert.equal(ckpts.data[0]!.step_number, 18);
  const events = (await s.client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data.map((e) => e.message);
  assert.ok(events.some((m) => m.includes(`its result is checkpoint ${ckpts.data[0]!.fine_tuned_model_checkpoint}`)), events.join("\n"));

  const last = s.server.store!.jobs.checkpoints(job.id, { limit: 1 })!.items[0]!;
  assert.ok(existsSync(join(last.dir, VALUE_HEAD_WEIGHTS)));
  const fresh = await loadModel(testModelDir, { threads: 2, kvBlocks: 4 });
  try {
    await loadPeftAdapter(fresh.native, fresh.config, "rm", last.dir);
    const pairs = await encodeJobPairs(fresh, readFileSync(join(s.server.app.fineTuning!.dataDir, "jobs", job.id, "training.jsonl"), "utf8"), "training");
    const stats = await evaluatePairs(fresh.native, "rm", pairs);
    assert.equal(stats.accuracy, 1, JSON.stringify(stats));
  } finally {
    fresh.dispose();
  }
});
