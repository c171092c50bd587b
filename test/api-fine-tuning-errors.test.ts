// Files and jobs given bad input, over HTTP with the official client: malformed JSONL
// (every bad line named), unknown ids (404), a method this server does not run, cancel
// (a running job stops and its adapter goes; a finished one gives 409), a job whose data
// makes training fail and one with no feedback to train on: failed, and serving goes on.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { toFile } from "openai";
import WebSocket from "ws";
import { MODEL, startServer, uploadNameChange, waitForJob, type FtServer } from "./fine-tuning-helpers.js";
import { apiFailure } from "./api-helpers.js";

const dir = mkdtempSync(join(tmpdir(), "hc-ft-err-"));
let s: FtServer;
let goodFile: string;

before(async () => {
  s = await startServer(join(dir, "data"));
  goodFile = await uploadNameChange(s, join(dir, "names.jsonl"));
});
after(async () => {
  await s?.server.close();
  rmSync(dir, { recursive: true, force: true });
});

const upload = async (text: string, purpose = "fine-tune") =>
  s.client.files.create({ file: await toFile(Buffer.from(text), "data.jsonl"), purpose: purpose as "fine-tune" });

async function chatWorks(): Promise<void> {
  const r = await s.client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Tom had a dog" }], max_tokens: 8 });
  assert.ok(r.choices[0]!.message.content!.length > 0);
}

describe("files", () => {
  test("malformed JSONL: 400 naming every bad line; nothing is stored", async () => {
    const before = (await s.client.files.list()).data.length;
    const text = ['{"prompt":"a","completion":" b"}', '{"prompt": "a", ', '{"prompt":"a"}', "", '{"prompt":"a","completion":" b","x":1}'].join("\n");
    const e = await apiFailure(upload(text));
    assert.equal(e.status, 400);
    assert.equal(e.code, "invalid_file");
    assert.equal(e.param, "file");
    assert.match(e.message, /3 bad lines/);
    assert.match(e.message, /line 2: not valid JSON/);
    assert.match(e.message, /line 3: "completion" must be a string/);
    assert.match(e.message, /line 5: unknown key "x"/);
    assert.equal((await s.client.files.list()).data.length, before);
  });

  test("a purpose other than fine-tune: 400", async () => {
    const e = await apiFailure(upload('{"prompt":"a","completion":" b"}\n', "assistants"));
    assert.equal(e.status, 400);
    assert.equal(e.param, "purpose");
  });

  test("preference (DPO) lines are checked too", async () => {
    const e = await apiFailure(upload('{"input":{"messages":[{"role":"user","content":"hi"}]},"preferred_output":[{"role":"assistant","content":"a"}]}\n'));
    assert.equal(e.status, 400);
    assert.match(e.message, /line 1: non_preferred_output/);
  });

  test("unknown file ids: 404; delete removes a file", async () => {
    for (const call of [() => s.client.files.retrieve("file-nope"), () => s.client.files.content("file-nope"), () => s.client.files.delete("file-nope")]) {
      const e = await apiFailure(call());
      assert.equal(e.status, 404);
      assert.equal(e.code, "file_not_found");
    }
    const f = await upload('{"prompt":"a","completion":" b"}\n');
    assert.deepEqual(await s.client.files.delete(f.id), { id: f.id, object: "file", deleted: true });
    assert.equal((await apiFailure(s.client.files.retrieve(f.id))).status, 404);
  });
});

describe("jobs", { timeout: 120_000 }, () => {
  test("unknown file, model or job: 404; an unsupported method or bad hyperparameters: 400", async () => {
    let e = await apiFailure(s.client.fineTuning.jobs.create({ model: MODEL, training_file: "file-nope" }));
    assert.equal(e.status, 404);
    assert.equal(e.code, "file_not_found");
    assert.equal(e.param, "training_file");
    e = await apiFailure(s.client.fineTuning.jobs.create({ model: "gpt-4o", training_file: goodFile }));
    assert.equal(e.status, 404);
    assert.equal(e.code, "model_not_found");
    e = await apiFailure(s.client.fineTuning.jobs.create({ model: MODEL, training_file: goodFile, method: { type: "reinforcement", reinforcement: {} } as never }));
    assert.equal(e.status, 400);
    assert.equal(e.code, "unsupported_method");
    // dpo trains on preference lines, not the supervised ones of goodFile
    e = await apiFailure(s.client.fineTuning.jobs.create({ model: MODEL, training_file: goodFile, method: { type: "dpo", dpo: { hyperparameters: { beta: 0.1 } } } }));
    assert.equal(e.status, 400);
    assert.equal(e.param, "training_file");
    assert.match(e.message, /method 'dpo' trains on preference \(DPO\) lines/);
    e = await apiFailure(s.client.fineTuning.jobs.create({ model: MODEL, training_file: "feedback", method: { type: "dpo", dpo: { hyperparameters: { beta: 0 } } } }));
    assert.equal(e.status, 400);
    assert.equal(e.param, "method.dpo.hyperparameters");
    e = await apiFailure(s.client.fineTuning.jobs.create({ model: MODEL, training_file: goodFile, method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 0 } } } }));
    assert.equal(e.status, 400);
    assert.equal(e.param, "method.supervised.hyperparameters");
    for (const call of [
      () => s.client.fineTuning.jobs.retrieve("ftjob-nope"),
      () => s.client.fineTuning.jobs.cancel("ftjob-nope"),
      () => s.client.fineTuning.jobs.listEvents("ftjob-nope"),
      () => s.client.fineTuning.jobs.checkpoints.list("ftjob-nope"),
    ]) {
      e = await apiFailure(call());
      assert.equal(e.status, 404);
      assert.equal(e.code, "fine_tuning_job_not_found");
    }
    const ws = new WebSocket(`${s.url.replace("http", "ws")}/v1/fine_tuning/jobs/ftjob-nope/events/stream`);
    assert.equal(await new Promise<number>((res) => ws.on("close", (code) => res(code))), 4404);
  });

  test("cancel: a running job stops, its adapter is never served, its checkpoints and data copy go; cancelling it again is 409", async () => {
    const job = await s.client.fineTuning.jobs.create({ model: MODEL, training_file: goodFile, suffix: "long", method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 25 } } } });
    await waitForJob(s.client, job.id, ["running"]);
    const jobDir = join(s.server.app.fineTuning!.dataDir, "jobs", job.id);
    while ((await s.client.fineTuning.jobs.checkpoints.list(job.id)).data.length === 0) await sleep(50);
    assert.ok(readdirSync(jobDir).some((n) => n.startsWith("checkpoint-")), "an epoch's checkpoint is on disk");
    // a WebSocket opened mid-run: the stored events replayed, then the live ones, none twice
    await sleep(300);
    const ws = new WebSocket(`${s.url.replace("http", "ws")}/v1/fine_tuning/jobs/${job.id}/events/stream`);
    const messages: { object: string; type?: string; status?: string; data?: { step?: number } }[] = [];
    ws.on("message", (d) => messages.push(JSON.parse(String(d)) as (typeof messages)[number]));
    const closed = new Promise<number>((res) => ws.on("close", (code) => res(code)));
    await new Promise((res) => ws.once("open", res));
    await sleep(300);
    const c = await s.client.fineTuning.jobs.cancel(job.id);
    assert.equal(c.status, "cancelled");
    await s.server.app.fineTuning!.runner!.idle();
    const j = await s.client.fineTuning.jobs.retrieve(job.id);
    assert.equal(j.status, "cancelled");
    assert.equal(j.fine_tuned_model, null);
    assert.equal(await closed, 1000);
    const steps = messages.filter((m) => m.type === "metrics").map((m) => m.data?.step);
    assert.ok(steps.length > 1);
    assert.deepEqual(steps, Array.from({ length: steps.length }, (_, i) => i + 1), "steps 1..k, each once");
    assert.equal(messages.at(-1)?.status, "cancelled");
    assert.ok(!(await s.client.models.list()).data.some((m) => m.id.includes(job.id)));
    assert.ok(!s.server.model!.native.adapters().some((a) => a.includes(job.id)), "the trained adapter was removed");
    // a job that did not succeed keeps nothing on disk: no checkpoint, no copy of its data
    assert.ok(!existsSync(jobDir), "the job's directory was removed");
    assert.deepEqual((await s.client.fineTuning.jobs.checkpoints.list(job.id)).data, []);
    const e = await apiFailure(s.client.fineTuning.jobs.cancel(job.id));
    assert.equal(e.status, 409);
    assert.equal(e.code, "job_not_cancellable");
    await chatWorks();
  });

  test("a job whose data makes training fail is failed with the reason; serving goes on", async () => {
    // every prompt fills the whole context: no completion token is left to learn from
    const long = "Once upon a time, there was a little girl who liked to play in the park. ".repeat(60);
    const f = await upload(`${JSON.stringify({ prompt: long, completion: " The end." })}\n`);
    const job = await s.client.fineTuning.jobs.create({ model: MODEL, training_file: f.id });
    const j = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
    assert.equal(j.status, "failed");
    assert.equal(j.error?.code, "invalid_training_file");
    assert.match(j.error!.message, /no example has a learned token left/);
    assert.ok(!s.server.model!.native.adapters().some((a) => a.includes(job.id)), "the adapter was removed");
    await s.server.app.fineTuning!.runner!.idle();
    assert.ok(!existsSync(join(s.server.app.fineTuning!.dataDir, "jobs", job.id)), "the failed job's directory was removed");
    await chatWorks();
  });

  test("training_file \"feedback\" with no feedback collected: failed (no_feedback)", async () => {
    const job = await s.client.fineTuning.jobs.create({ model: MODEL, training_file: "feedback" });
    const j = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
    assert.equal(j.status, "failed");
    assert.equal(j.error?.code, "no_feedback");
  });
});
