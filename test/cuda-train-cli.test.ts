// --device cpu|cuda|auto on `train *`, `pipeline` and fine-tuning jobs, on the emulated device:
// `train sft --device cuda` loads the model there (saying so, and which GEMM serves, at
// start-up) and logs the losses and writes the adapter of a --device cpu run, `train ppo
// --device cuda` generates its rollouts there and logs its steps; cuda without
// a device is refused naming the library paths searched; the flag is in every --help; a
// fine-tuning job on a cuda server trains that model (its start event says where) and the
// device serves the result. The training steps run on the device (cuda-train.test.ts holds
// them to the CPU engine's math op by op).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createReadStream, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "../engine/model.js";
import { readF32Tensors } from "../engine/safetensors-writer.js";
import { PPO_LOG } from "../engine/train/ppo/ppo-run.js";
import { TRAIN_LOG } from "../engine/train/sft/sft-run.js";
import { greedy, MODEL, startServer, waitForJob } from "./fine-tuning-helpers.js";
import { writePpoInputs } from "./pref-helpers.js";
import { assertClose } from "./reference/check.js";
import { CLI } from "./serve-process.js";
import { HELD_OUT, nameChangeData } from "./sft-helpers.js";
import { storiesDir } from "./test-model.js";
import { emulatorSkip, useEmulator } from "./cuda-compare.js";

const skip = process.env.HYBRIDCHAT_CUDA_LIB ? false : emulatorSkip;
const dir = useEmulator("hc-cuda-train-");

describe("--device on the training commands and fine-tuning jobs", { skip }, () => {
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, ...env } });

  it("train sft --device cuda: the losses and adapter of --device cpu, the device said at start-up", async () => {
    const data = join(dir, "names.jsonl");
    const lm = await loadModel(storiesDir, { threads: 2, kvBlocks: 4 });
    try {
      await nameChangeData(lm, data, 8);
    } finally {
      lm.dispose();
    }
    const common = ["train", "sft", "--model", storiesDir, "--data", data, "--epochs", "1", "--batch-size", "4", "--lora-rank", "4", "--threads", "2"];
    const outs = { cpu: join(dir, "cpu"), cuda: join(dir, "cuda") };
    for (const [device, out] of Object.entries(outs)) {
      const r = run([...common, "--out", out, "--device", device]);
      assert.equal(r.status, 0, r.stderr);
      if (device === "cuda") {
        assert.match(r.stderr, /--device cuda: the model on CUDA device 0 \(host emulation\): generation and the training forward\/backward and optimizer steps run there/);
        assert.match(r.stderr, /--device cuda: GEMMs through cuBLASLt/);
      } else assert.doesNotMatch(r.stderr, /--device cuda/);
    }
    const losses = Object.values(outs).map((o) =>
      readFileSync(join(o, TRAIN_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string; loss?: number }).filter((l) => l.type === "step").map((l) => l.loss!),
    );
    assert.equal(losses[1]!.length, 2);
    assertClose(losses[1]!, losses[0]!, 1e-5, 1e-4, "step losses");
    const [a, b] = Object.values(outs).map((o) => readF32Tensors(join(o, "adapter_model.safetensors")).tensors);
    assert.deepEqual([...b!.keys()], [...a!.keys()]);
    for (const [name, t] of b!) assertClose(t.data, a!.get(name)!.data, 1e-5, 1e-4, name);
  });

  it("cuda without a device is refused by name, on train and pipeline alike; a bad value too; the flag is in every --help", () => {
    for (const cmd of [["train", "sft", "--model", storiesDir, "--data", join(dir, "names.jsonl"), "--out", join(dir, "x")], ["pipeline", "--model", storiesDir, "--sft-data", join(dir, "names.jsonl"), "--step", "1", "--out", join(dir, "y")]]) {
      const none = run([...cmd, "--device", "cuda"], { HYBRIDCHAT_EMU_DEVICES: "0" });
      assert.equal(none.status, 2, none.stderr);
      assert.match(none.stderr, /--device cuda: no usable CUDA device: .*\(library paths searched: /);
      const bad = run([...cmd, "--device", "gpu"]);
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /--device must be one of cpu, cuda, auto, got "gpu"/);
    }
    for (const cmd of [["train", "sft"], ["train", "rm"], ["train", "dpo"], ["train", "ppo"], ["pipeline"]])
      assert.match(run([...cmd, "--help"]).stdout, /--device D +where the (model|base) is loaded/, cmd.join(" "));
  });

  it("train ppo --device cuda: rollouts generated on the device, the steps logged", async () => {
    const { rm, prompts } = await writePpoInputs(storiesDir, dir);
    const logs = ["cuda"].map((device) => {
      const out = join(dir, `ppo-${device}`);
      const r = run(["train", "ppo", "--threads", "2", "--device", device, "--actor", storiesDir, "--reward-model", rm, "--prompts", prompts, "--out", out,
        "--generation-batch", "2", "--train-batch", "1", "--max-answer-tokens", "10", "--epochs", "2", "--seed", "3"]);
      assert.equal(r.status, 0, r.stderr);
      return readFileSync(join(out, PPO_LOG), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    });
    assert.equal(logs[0]!.length, 2);
    // The answers are sampled from the device's logits, whose bf16 KV cache moves them by a few
    // bf16 roundings: a sample may differ from the CPU's, so the run is held to what it logs,
    // not to the CPU's numbers (with an f32 cache both runs log the same to 1e-3).
    for (const key of ["reward", "kl", "policy_loss", "value_loss"]) {
      const v = Float64Array.from(logs[0]!, (l) => l[key] as number);
      assert.ok(v.every(Number.isFinite), `${key} logged: ${v.join(", ")}`);
    }
    for (const l of logs[0]!) assert.ok((l.response_length as number) >= 1 && (l.response_length as number) <= 10, `response_length ${String(l.response_length)}`);
  });

  it("a fine-tuning job on a cuda server trains the served model and the device serves the result", async () => {
    const s = await startServer(join(dir, "data"), { device: "cuda" });
    try {
      assert.equal(s.server.model!.native.device().kind, "cuda");
      const baseText = await greedy(s.client, MODEL, HELD_OUT);
      // the first test's data (made on the CPU: generating it on the emulator is slow)
      const fileId = (await s.client.files.create({ file: createReadStream(join(dir, "names.jsonl")), purpose: "fine-tune" })).id;
      const job = await s.client.fineTuning.jobs.create({
        model: MODEL,
        training_file: fileId,
        suffix: "dev",
        seed: 0,
        // a short job: learning the new name is sft-e2e's to show; here, where it runs
        method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 2, batch_size: 2, learning_rate_multiplier: "auto" } } },
      });
      const final = await waitForJob(s.client, job.id, ["succeeded", "failed", "cancelled"]);
      assert.equal(final.status, "succeeded", JSON.stringify(final.error));
      const events = (await s.client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data.map((e) => e.message);
      assert.ok(events.length < 100, "the start event is on the first page");
      assert.ok(events.some((m) => m.startsWith("Fine-tuning job started (on CUDA device 0, host emulation")), events.join("\n"));
      // the adapter serves from the device beside the unchanged base
      assert.notEqual(await greedy(s.client, final.fine_tuned_model!, HELD_OUT, 16), await greedy(s.client, MODEL, HELD_OUT, 16));
      assert.equal(await greedy(s.client, MODEL, HELD_OUT), baseText);
    } finally {
      await s.server.close();
      rmSync(join(dir, "data"), { recursive: true, force: true });
    }
  });
});
