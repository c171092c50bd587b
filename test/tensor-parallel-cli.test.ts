// `--tensor-parallel N` as a user runs it: `serve` answering the README's greedy text,
// `train sft`, `rm`, `dpo`, `ppo` and `pipeline` logging what one rank logs (and sft writing its adapter),
// a fine-tuning job on a split server, sizes refused with the reason, the flag in --help.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../engine/model.js";
import { readF32Tensors } from "../engine/safetensors-writer.js";
import { STEP_DIRS } from "../engine/train/pipeline/pipeline.js";
import { PPO_LOG } from "../engine/train/ppo/ppo-run.js";
import { TRAIN_LOG } from "../engine/train/sft/sft-run.js";
import { README } from "./api-helpers.js";
import { greedy, MODEL, startServer, uploadNameChange, waitForJob } from "./fine-tuning-helpers.js";
import { writePpoInputs } from "./pref-helpers.js";
import { assertClose } from "./reference/check.js";
import { CLI, readmeAnswer, serve, stop } from "./serve-process.js";
import { HELD_OUT, nameChangeData, NEW_NAME } from "./sft-helpers.js";
import { storiesDir } from "./test-model.js";

describe("hybridchat serve --tensor-parallel", () => {
  it("answers with the README's greedy continuation at --tensor-parallel 2", async () => {
    const s = await serve(["--model", storiesDir, "--no-store", "--tensor-parallel", "2"]);
    try {
      assert.equal(await readmeAnswer(s.url), README.continuation);
    } finally {
      assert.equal(await stop(s, "SIGTERM"), 0, s.stderr());
    }
  });

  it("a size that does not divide the model's heads stops serve with the reason", () => {
    const r = spawnSync(process.execPath, [CLI, "serve", "--port", "0", "--no-store", "--model", storiesDir, "--tensor-parallel", "3"], { encoding: "utf8" });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /tensor parallel size 3 must divide the key\/value heads \(4\)/);
    const bad = spawnSync(process.execPath, [CLI, "serve", "--tensor-parallel", "0"], { encoding: "utf8" });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--tensor-parallel/);
    for (const cmd of [["serve"], ["train", "sft"], ["train", "rm"], ["train", "dpo"], ["train", "ppo"], ["pipeline"]]) {  // the flag and an example in each --help
      const help = spawnSync(process.execPath, [CLI, ...cmd, "--help"], { encoding: "utf8" }).stdout;
      assert.match(help, /--tensor-parallel N +split every layer (of the base )?over N (thread )?ranks/);
      assert.match(help, /Examples?:[\s\S]*--tensor-parallel 2/);
    }
  });
});

describe("hybridchat train sft --tensor-parallel", () => {
  let dir = "";
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "hc-tp-sft-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const sft = (args: string[]) => spawnSync(process.execPath, [CLI, "train", "sft", ...args], { encoding: "utf8" });

  it("a LoRA run at --tensor-parallel 2 logs the losses and writes the adapter of --tensor-parallel 1", async () => {
    const data = join(dir, "names.jsonl");
    const lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 4 });
    try {
      await nameChangeData(lm, data, 16);
    } finally {
      lm.dispose();
    }
    const common = ["--model", storiesDir, "--data", data, "--epochs", "1", "--batch-size", "4", "--lora-rank", "4", "--lora-dropout", "0.1", "--threads", "2"];
    const outs = [join(dir, "tp1"), join(dir, "tp2")];
    for (const [i, out] of outs.entries()) {
      const r = sft([...common, "--out", out, ...(i ? ["--tensor-parallel", "2"] : [])]);
      assert.equal(r.status, 0, r.stderr);
    }
    const losses = outs.map((o) =>
      readFileSync(join(o, TRAIN_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string; loss?: number }).filter((l) => l.type === "step").map((l) => l.loss!),
    );
    assert.equal(losses[1]!.length, 4);
    assertClose(losses[1]!, losses[0]!, 1e-5, 1e-4, "step losses");
    const [w1, w2] = outs.map((o) => readF32Tensors(join(o, "adapter_model.safetensors")).tensors);
    assert.deepEqual([...w2!.keys()], [...w1!.keys()]);
    for (const [name, t] of w2!) assertClose(t.data, w1!.get(name)!.data, 1e-4, 1e-3, name);
    const bad = sft([...common, "--out", join(dir, "bad"), "--tensor-parallel", "3"]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr + bad.stdout, /tensor parallel size 3 must divide the key\/value heads \(4\)/);
    const both = sft([...common, "--out", join(dir, "both"), "--tensor-parallel", "2", "--data-parallel", "2"]);
    assert.equal(both.status, 2);
    assert.match(both.stderr, /--tensor-parallel and --data-parallel cannot be combined/);
  });
});

describe("a fine-tuning job on a server at --tensor-parallel 2", () => {
  it("trains on the split layers and serves the result beside the unchanged base", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hc-tp-job-"));
    const s = await startServer(join(dir, "data"), { tensorParallel: 2 });
    try {
      const baseText = await greedy(s.client, MODEL, HELD_OUT);
      const fileId = await uploadNameChange(s, join(dir, "names.jsonl"));
      const job = await s.client.fineTuning.jobs.create({
        model: MODEL,
        training_file: fileId,
        suffix: "tp",
        seed: 0,
        method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 4, batch_size: 1, learning_rate_multiplier: "auto" } } },
      });
      const final = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
      assert.equal(final.status, "succeeded", JSON.stringify(final.error));
      assert.match(await greedy(s.client, final.fine_tuned_model!, HELD_OUT), new RegExp(`^ ${NEW_NAME}\\b`));
      assert.equal(await greedy(s.client, MODEL, HELD_OUT), baseText);
    } finally {
      await s.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("hybridchat train ppo --tensor-parallel", () => {
  it("rollouts and updates on the split layers log the rewards, KL and losses of one rank", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hc-tp-ppo-"));
    try {
      await writePpoInputs(storiesDir, dir);
      const logs = [1, 2].map((tp) => {
        const out = join(dir, `tp${tp}`);
        const r = spawnSync(process.execPath, [CLI, "train", "ppo", "--threads", "2", "--tensor-parallel", String(tp), "--actor", storiesDir, "--reward-model", join(dir, "rm"),
          "--prompts", join(dir, "prompts.jsonl"), "--out", out, "--generation-batch", "2", "--train-batch", "1", "--max-answer-tokens", "10", "--epochs", "2", "--seed", "3"], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        return readFileSync(join(out, PPO_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      });
      assert.equal(logs[1]!.length, 2);
      for (const key of ["reward", "kl", "policy_loss", "value_loss", "response_length"]) {
        const v = logs.map((log) => Float64Array.from(log, (l) => l[key] as number));
        assert.ok(v[0]!.every(Number.isFinite), `${key} logged`);
        assertClose(v[1]!, v[0]!, 1e-4, 1e-3, key);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("hybridchat train rm, dpo and pipeline --tensor-parallel", () => {
  it("log the losses of one rank, step for step", () => {
    const dir = mkdtempSync(join(tmpdir(), "hc-tp-pref-"));
    try {
      const pairs = [
        ["Tom had a pet", " dog. The dog was happy.", " box. The box was red."],
        ["One day, Lily saw a", " cat in the tree.", " car on the road."],
        ["Sam went to the farm and saw a", " cow and a pig.", " hill and a tree."],
        ["Mia found a", " little bird.", " little stone."],
      ].map(([prompt, chosen, rejected]) => JSON.stringify({ prompt, chosen, rejected }));
      writeFileSync(join(dir, "prefs.jsonl"), pairs.join("\n") + "\n");
      const stepLosses = (log: string) =>
        readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string; loss?: number }).filter((l) => l.type === "step").map((l) => l.loss!);
      for (const method of ["rm", "dpo", "pipeline"]) {
        const losses = [1, 2].map((tp) => {
          const out = join(dir, `${method}-tp${tp}`);
          const args = method === "pipeline"  // the pipeline's step 2 is train rm on its one loaded base
            ? ["pipeline", "--step", "2", "--preference-data", join(dir, "prefs.jsonl"), "--rm-epochs", "2", "--rm-batch-size", "2"]
            : ["train", method, "--data", join(dir, "prefs.jsonl"), "--epochs", "2", "--batch-size", "2"];
          const r = spawnSync(process.execPath, [CLI, ...args, "--model", storiesDir, "--out", out, "--threads", "2", "--tensor-parallel", String(tp)], { encoding: "utf8" });
          assert.equal(r.status, 0, r.stderr);
          return stepLosses(method === "pipeline" ? join(out, STEP_DIRS[2], TRAIN_LOG) : join(out, TRAIN_LOG));
        });
        assert.equal(losses[1]!.length, 4, method);
        assertClose(losses[1]!, losses[0]!, 1e-5, 1e-4, `${method} step losses`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
