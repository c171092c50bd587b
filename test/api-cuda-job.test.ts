// A fine-tuning job on a server whose model lives on an (emulated) CUDA device: the job
// trains on the device through the same engine calls as on the CPU (test/cuda-train.test.ts
// checks them op for op), succeeds, and the new model id serves a changed model while the
// base id still serves the base. The weight bytes the job moved between host and device
// are logged (a job event too) and bounded by the adapter's size: the base's linear
// weights never move. With HYBRIDCHAT_CUDA_LIB already set,
// it runs on that library's device 0.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { HELD_OUT, NEW_NAME, nameChangeData } from "./sft-helpers.js";
import { greedy, MODEL, serverForFile, waitForJob, type FtServer } from "./fine-tuning-helpers.js";
import { emulatorSkip, useEmulator } from "./cuda-compare.js";

const skip = process.env.HYBRIDCHAT_CUDA_LIB ? false : emulatorSkip;

let s: FtServer;
// registered before serverForFile's hook, so the library is in place when the server loads
useEmulator("hc-cuda-lib-");
const dir = serverForFile("hc-cuda-job-", (x) => (s = x), { device: skip ? "cpu" : "cuda" });

/** log-probability of the first token of " Zara" after HELD_OUT, served by `adapter` (null: the base) */
async function nameLogp(adapter: string | null, seqId: number): Promise<number> {
  const m = s.server.model!;
  const prompt = m.tokenizer.encode(HELD_OUT, true);
  const next = m.tokenizer.encode(`${HELD_OUT} ${NEW_NAME}`, true)[prompt.length]!;
  const logits = await m.native.forward({ seqIds: Int32Array.from([seqId]), tokens: Int32Array.from(prompt), counts: Int32Array.from([prompt.length]), logits: "last", adapters: [adapter] });
  m.native.freeSeq(seqId);
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  return logits[next]! - max - Math.log(sum);
}

// The emulator runs a step of stories260K in seconds, not milliseconds: a short job (4
// examples, one epoch, a high learning rate) whose effect shows in the log-probabilities.
test("a supervised job on a cuda server trains on the device and serves the result", { skip, timeout: 600_000 }, async () => {
  assert.ok(process.env.HYBRIDCHAT_CUDA_LIB);
  const health = (await (await fetch(`${s.url}/health`)).json()) as { device?: string };
  assert.equal(health.device, "cuda");
  const model = s.server.model!;
  await nameChangeData(model, join(dir, "names.jsonl"), 4);
  const fileId = (await s.client.files.create({ file: createReadStream(join(dir, "names.jsonl")), purpose: "fine-tune" })).id;
  const baseText = await greedy(s.client, MODEL, HELD_OUT);
  const baseLogp = await nameLogp(null, 900);

  const moved0 = model.native.weightBytesMoved();
  const t0 = performance.now();
  const job = await s.client.fineTuning.jobs.create({
    model: MODEL,
    training_file: fileId,
    suffix: "zara",
    seed: 0,
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 1, batch_size: 1, learning_rate_multiplier: 10 } } },
  });
  const final = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  const ftId = `ft:${MODEL}:zara:${job.id}`;
  assert.equal(final.fine_tuned_model, ftId);
  assert.ok((await s.client.models.list()).data.some((m) => m.id === ftId));
  const ftLogp = await nameLogp(ftId, 901);
  console.log(`# log p(" ${NEW_NAME}") after the held-out opening: base ${baseLogp.toFixed(3)}, fine-tuned ${ftLogp.toFixed(3)}`);
  assert.ok(ftLogp > baseLogp + 0.5, "the job taught the served model nothing");
  assert.equal(await greedy(s.client, MODEL, HELD_OUT), baseText, "the base id still serves the base weights");

  const moved = model.native.weightBytesMoved() - moved0;
  const adapterBytes = model.native.parameters(ftId).reduce((n, p) => n + 4 * p.shape.reduce((x, y) => x * y, 1), 0);
  console.log(`# a job on the device: ${(performance.now() - t0).toFixed(0)} ms, ${moved} weight bytes moved (the adapter: ${adapterBytes} B)`);
  // the adapter up once, down for the epoch's checkpoint and the result, and the norms
  // re-read after adapters were added; never the base's linear weights
  assert.ok(moved <= 4 * adapterBytes, `${moved} weight bytes moved for a ${adapterBytes} B adapter`);
  const events = (await s.client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data;
  assert.ok(events.some((e) => /^Weights moved between host and device during the job: \d+ bytes$/.test(e.message)));
});
