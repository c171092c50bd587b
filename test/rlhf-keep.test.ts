// --rlhf-keep: continuous RLHF keeps the newest N versions it published. Three versions are
// made by real gated "rlhf" jobs (DPO on a clear preference, held out on their own file);
// with keep 1 the older two go with their run's files and job data — except the promoted
// one, which stays until it is no longer promoted. Versions of other jobs are never touched.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toFile } from "openai";
import { RLHF_SUFFIX } from "../server/rlhf/policy.js";
import { rlhfConfig } from "../cli/serve-rlhf-flags.js";
import { STORY_PROMPTS } from "./pref-helpers.js";
import { MODEL, startServer, uploadNameChange, waitForJob, type FtServer } from "./fine-tuning-helpers.js";

const dir = mkdtempSync(join(tmpdir(), "hc-rlhf-keep-"));
let s: FtServer;
before(async () => {
  // the policy never fires by itself here (after: a million); its pruning is what is tested
  s = await startServer(join(dir, "data"), { rlhf: { after: 1_000_000, everyMinutes: null, method: "dpo", promote: false, pollMs: 1e9, keep: 1 } });
});
after(async () => {
  await s?.server.close();
  rmSync(dir, { recursive: true, force: true });
});

const pairs = STORY_PROMPTS.slice(0, 8)
  .map((p) => JSON.stringify({ input: { messages: [{ role: "user", content: p }] }, preferred_output: [{ role: "assistant", content: " The cat and the dog played in the park." }], non_preferred_output: [{ role: "assistant", content: " It was late and he went home." }] }))
  .join("\n");

const upload = async (name: string): Promise<string> => (await s.client.files.create({ file: await toFile(Buffer.from(pairs), name), purpose: "fine-tune" })).id;

/** a gated "rlhf" job, as the policy creates them; its published version */
async function rlhfVersion(i: number): Promise<{ id: string; job: string; files: string[]; dir: string }> {
  const files = [await upload(`rlhf-${i}.train.jsonl`), await upload(`rlhf-${i}.heldout.jsonl`)];
  const job = await s.client.fineTuning.jobs.create({
    model: MODEL,
    training_file: files[0]!,
    validation_file: files[1]!,
    suffix: RLHF_SUFFIX,
    method: { type: "dpo", dpo: { hyperparameters: { n_epochs: 3, batch_size: 4 } } },
  });
  const done = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(done.status, "succeeded", JSON.stringify(done.error));
  const v = s.server.store!.versions.get(done.fine_tuned_model!)!;
  return { id: v.id, job: job.id, files, dir: v.dir };
}

test("--rlhf-keep N: parsed, needs a trigger", () => {
  assert.deepEqual(rlhfConfig({ "rlhf-after": "5", "rlhf-keep": "3" }, "serve"), { after: 5, everyMinutes: null, method: "dpo", promote: false, keep: 3 });
  assert.throws(() => rlhfConfig({ "rlhf-after": "5", "rlhf-keep": "0" }, "serve"), /--rlhf-keep must be between 1/);
  assert.throws(() => rlhfConfig({ "rlhf-keep": "2" }, "serve"), /need --rlhf-after N or --rlhf-every MINUTES/);
});

test("keep 1: older versions go with their files and job data; the promoted one stays while promoted; others' versions are untouched", { timeout: 300_000 }, async () => {
  const policy = s.server.app.fineTuning!.policy!;
  const dataDir = s.server.app.fineTuning!.dataDir;
  // a version of a plain job: not the policy's, never pruned
  const plainFile = await uploadNameChange(s, join(dir, "names.jsonl"));
  const plain = await s.client.fineTuning.jobs.create({ model: MODEL, training_file: plainFile, suffix: "zara", method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 1 } } } });
  const plainDone = await waitForJob(s.client, plain.id, ["succeeded", "failed", "cancelled"]);
  assert.equal(plainDone.status, "succeeded", JSON.stringify(plainDone.error));

  const [v1, v2, v3] = [await rlhfVersion(1), await rlhfVersion(2), await rlhfVersion(3)];
  assert.equal((await fetch(`${s.url}/v1/models/${encodeURIComponent(v1!.id)}/promote`, { method: "POST" })).status, 200);

  const served = async (): Promise<string[]> => (await s.client.models.list()).data.map((m) => m.id);
  const gone = async (v: typeof v1): Promise<void> => {
    assert.ok(!(await served()).includes(v!.id), `${v!.id} is not served`);
    assert.equal(s.server.store!.versions.get(v!.id), null);
    assert.ok(!existsSync(v!.dir), "its adapter directory is removed");
    assert.ok(!existsSync(join(dataDir, "jobs", v!.job)), "its job's data and checkpoints are removed");
    for (const f of v!.files) {
      assert.equal(s.server.store!.files.get(f), null);
      assert.ok(!existsSync(join(dataDir, "files", `${f}.jsonl`)));
    }
    // the job itself stays, and says what it made
    assert.equal((await s.client.fineTuning.jobs.retrieve(v!.job)).status, "succeeded");
  };
  const kept = async (v: typeof v1): Promise<void> => {
    assert.ok((await served()).includes(v!.id));
    assert.ok(existsSync(v!.dir));
    for (const f of v!.files) assert.ok(s.server.store!.files.get(f));
  };

  // newest kept (v3); v2 goes; v1 is promoted, so it stays
  assert.deepEqual(await policy.prune(), [v2!.id]);
  await gone(v2);
  await kept(v1);
  await kept(v3);
  assert.equal(s.server.store!.versions.promoted(MODEL), v1!.id);

  // no longer promoted: v1 goes on the next prune
  assert.equal((await fetch(`${s.url}/v1/models/${MODEL}/promote`, { method: "POST" })).status, 200);
  assert.deepEqual(await policy.prune(), [v1!.id]);
  await gone(v1);
  await kept(v3);
  assert.ok((await served()).includes(plainDone.fine_tuned_model!), "a version of another job is never pruned");
  assert.deepEqual(await policy.prune(), []);

  // the served base and the kept version still answer
  for (const model of [MODEL, v3!.id]) {
    const r = await s.client.completions.create({ model, prompt: "Once upon a time", max_tokens: 4, temperature: 0 });
    assert.ok(r.choices[0]!.text.length > 0);
  }
});
